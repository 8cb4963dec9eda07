//! `open_blob` on the input sealed with the process key, so that zstd decompression of
//! arbitrary bytes (and the raw-length bound) is reached.
//!
//! Input: `flags (u8) || raw_length (u32 LE) || payload`. Flags: bit 0 — the entry's id is
//! the hash of what an independent decoder gets from the payload (so the Ok path is
//! reached); bit 1 — raw_length is taken modulo 64 KiB (small outputs), else it is used as
//! given (up to 4 GiB, so both sides of `MAX_BLOB_RAW` are tried).
#![no_main]

use std::io::Read;

use arca_core::format::{BlobEntry, BlobKind};
use arca_core::id::Id;
use arca_core::pack::{MAX_BLOB_RAW, PackError, open_blob};
use arca_fuzz::{crypto, take};
use libfuzzer_sys::fuzz_target;

/// What another decoder (the streaming one) makes of the payload, up to `limit` bytes.
fn reference_decode(payload: &[u8], limit: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(payload)
        .ok()?
        .take(limit)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

fuzz_target!(
    init: arca_fuzz::write_seeds("blob_sealed"),
    |data: &[u8]| {
    let c = crypto();
    let (flags, rest) = take::<1>(data);
    let (raw, payload) = take::<4>(rest);
    let mut raw_length = u32::from_le_bytes(raw);
    if flags[0] & 2 != 0 {
        raw_length %= 64 * 1024;
    }
    let expected = if raw_length == 0 {
        Some(payload.to_vec())
    } else if raw_length <= 1 << 20 {
        reference_decode(payload, raw_length as u64 + 1).filter(|o| o.len() == raw_length as usize)
    } else {
        None
    };
    let id = match (&expected, flags[0] & 1 != 0) {
        (Some(e), true) => c.blob_id(e),
        _ => Id([0x5a; 32]),
    };
    let entry = BlobEntry {
        kind: BlobKind::Data,
        id,
        offset: 0,
        length: 0,
        raw_length,
    };
    let sealed = c.seal(payload, &id.0);
    match open_blob(c, &entry, &sealed) {
        Ok(plain) => {
            assert_eq!(c.blob_id(&plain), id);
            if raw_length > 0 {
                assert!(raw_length <= MAX_BLOB_RAW);
                assert_eq!(plain.len(), raw_length as usize);
            } else {
                assert_eq!(plain, payload);
            }
        }
        Err(PackError::BlobCrypto(..)) => panic!("a blob sealed with the right key was refused"),
        Err(e) => {
            assert!(raw_length > MAX_BLOB_RAW || !matches!(e, PackError::Decompress(_, ref m) if m == "raw length too large"));
            if let (Some(_), true) = (&expected, flags[0] & 1 != 0) {
                panic!("open_blob refused a blob that the streaming decoder reads: {e}");
            }
        }
    }
});
