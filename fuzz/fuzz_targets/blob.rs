//! `open_blob` on raw bytes with an entry (kind, raw length, id) from the input: whatever
//! the entry claims, the blob is refused cleanly unless it authenticates, and then only
//! what hashes to the id comes back. (The seed is a blob sealed with this process's key,
//! so mutating its raw length reaches decompression with a lying index entry.)
//!
//! Input: `kind (u8) || raw_length (u32 LE) || id (32) || sealed bytes`.
#![no_main]

use arca_core::format::{BlobEntry, BlobKind};
use arca_core::id::Id;
use arca_core::pack::{PackError, open_blob};
use arca_fuzz::{crypto, take};
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: arca_fuzz::write_seeds("blob"),
    |data: &[u8]| {
    let (kind, rest) = take::<1>(data);
    let (raw, rest) = take::<4>(rest);
    let (id, sealed) = take::<32>(rest);
    let entry = BlobEntry {
        kind: if kind[0] & 1 == 0 { BlobKind::Data } else { BlobKind::Tree },
        id: Id(id),
        offset: 0,
        length: sealed.len() as u32,
        raw_length: u32::from_le_bytes(raw),
    };
    let c = crypto();
    let authentic = c.open(sealed, &entry.id.0).is_ok();
    match open_blob(c, &entry, sealed) {
        Ok(plain) => {
            assert!(authentic, "unauthenticated blob got past the seal");
            assert_eq!(c.blob_id(&plain), entry.id);
            assert!(entry.raw_length == 0 || plain.len() == entry.raw_length as usize);
        }
        Err(PackError::BlobCrypto(..)) => assert!(!authentic),
        Err(e) => assert!(authentic, "{e}"),
    }
});
