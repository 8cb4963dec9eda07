//! `decode_index` (after the seal is opened), then the decoded file loaded into an
//! in-memory `Index`.
//!
//! Input: `mode (u8) || bytes`. Mode bit 0 clear: the bytes are the index object as stored
//! (version byte, zstd frame). Set: the bytes are the postcard body, compressed here, so
//! that the postcard decoder sees arbitrary input.
#![no_main]

use arca_core::format::BINARY_VERSION;
use arca_core::index::{Index, decode_index, encode_index};
use arca_fuzz::take;
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: arca_fuzz::write_seeds("index"),
    |data: &[u8]| {
    let (mode, rest) = take::<1>(data);
    let decoded = if mode[0] & 1 == 0 {
        decode_index(rest)
    } else {
        let mut obj = vec![BINARY_VERSION];
        obj.extend(zstd::bulk::compress(rest, 1).expect("zstd compress"));
        decode_index(&obj)
    };
    let Ok(file) = decoded else { return };
    assert_eq!(decode_index(&encode_index(&file)).expect("re-encoded index"), file);

    let mut ix = Index::new();
    let blobs: usize = file.packs.iter().map(|p| p.blobs.len()).sum();
    ix.reserve(blobs);
    for p in &file.packs {
        ix.insert_pack(p.id, &p.blobs);
    }
    assert!(ix.len() <= blobs);
    for p in &file.packs {
        assert!(ix.has_pack(&p.id));
        for b in &p.blobs {
            let loc = ix.get(&b.id).expect("inserted blob is found");
            assert_eq!(loc.entry.id, b.id);
        }
    }
    assert_eq!(ix.iter().count(), ix.len());
});
