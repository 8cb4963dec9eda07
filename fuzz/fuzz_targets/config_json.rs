//! The plaintext `config` object (unauthenticated: anyone with write access to the storage
//! can change it), read as `read_config` does (version first, then all), and what opening
//! a repository builds from it: the chunker (parameters clamped) and the blob compressor
//! at the configured level (round trip through seal/open of a blob).
#![no_main]

use arca_core::chunker::Chunker;
use arca_core::format::Config;
use arca_core::pack::{BlobCompressor, open_blob, seal_blob};
use arca_fuzz::crypto;
use libfuzzer_sys::fuzz_target;

#[derive(serde::Deserialize)]
struct Versioned {
    #[allow(dead_code)]
    version: u32,
}

fuzz_target!(
    init: arca_fuzz::write_seeds("config_json"),
    |data: &[u8]| {
    let _ = serde_json::from_slice::<Versioned>(data);
    let Ok(cfg) = serde_json::from_slice::<Config>(data) else { return };
    let once = serde_json::to_vec(&cfg).expect("config to JSON");
    let again: Config = serde_json::from_slice(&once).expect("config JSON re-parses");
    assert_eq!(serde_json::to_vec(&again).expect("config to JSON"), once);

    let chunker = Chunker::new(cfg.chunker, &[7; 32]);
    let p = chunker.params();
    assert!(p.min_size <= p.avg_size && p.avg_size <= p.max_size, "{p:?}");
    let mut rest = data;
    while !rest.is_empty() {
        let n = chunker.next_cut(rest);
        assert!(n >= 1 && n <= rest.len() && n <= p.max_size as usize);
        rest = &rest[n..];
    }

    // The configured zstd level, on the input itself (compressible: it is JSON).
    let c = crypto();
    let id = c.blob_id(data);
    let (sealed, raw) = seal_blob(c, &mut BlobCompressor::new(cfg.compression_level), &id, data);
    let entry = arca_core::format::BlobEntry {
        kind: arca_core::format::BlobKind::Data,
        id,
        offset: 0,
        length: sealed.len() as u32,
        raw_length: raw,
    };
    assert_eq!(open_blob(c, &entry, &sealed).expect("blob round trip"), data);
});
