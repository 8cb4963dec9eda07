//! Pack headers: `decode_header` on the (decrypted) header bytes, `header_span` on the
//! trailer, and `parse_header_from_tail` both on raw bytes (stops at authentication) and
//! on the input sealed as a header with the process key (reaches the parser).
//!
//! Input: `data_len (u64 LE) || header bytes`.
#![no_main]

use arca_core::crypto::SEAL_OVERHEAD;
use arca_core::format::{BINARY_VERSION, BlobKind};
use arca_core::pack::{
    MAX_BLOB_RAW, PackError, decode_header, header_span, parse_header_from_tail,
};
use arca_fuzz::{PACK_HEADER_AAD, crypto, encode_header, take};
use libfuzzer_sys::fuzz_target;

const ENTRY_LEN: usize = 41;
const MAX_HEADER: u64 = 64 << 20;

fn check_decoded(h: &[u8], data_len: u64) -> Result<Vec<arca_core::format::BlobEntry>, String> {
    match decode_header(h, data_len) {
        Err(e) => Err(e.to_string()),
        Ok(entries) => {
            // Everything the parser accepted must be consistent with the bytes and bounds.
            assert_eq!(h[0], BINARY_VERSION);
            assert_eq!(h.len(), 5 + entries.len() * ENTRY_LEN);
            assert_eq!(
                u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize,
                entries.len()
            );
            assert_eq!(encode_header(&entries), h);
            let mut offset = 0u64;
            for e in &entries {
                assert!(matches!(e.kind, BlobKind::Data | BlobKind::Tree));
                assert_eq!(e.offset as u64, offset, "blob offset truncated");
                assert!(e.length as usize >= SEAL_OVERHEAD);
                assert!(e.raw_length <= MAX_BLOB_RAW);
                offset += e.length as u64;
            }
            assert!(offset <= data_len);
            Ok(entries)
        }
    }
}

fuzz_target!(
    init: {
        arca_fuzz::write_seeds("pack_header");
        // The duplicated header AAD must still be the one pack.rs uses.
        let c = crypto();
        let mut w = arca_core::pack::PackWriter::new(BlobKind::Tree, 0);
        let id = c.blob_id(b"x");
        w.add(id, &c.seal(b"x", &id.0), 0);
        let (bytes, _, entries) = w.finish(c);
        let area = entries[0].length as usize;
        let tail = &bytes[area..];
        let sealed = &tail[..tail.len() - 4];
        let header = c.open(sealed, PACK_HEADER_AAD).expect("PACK_HEADER_AAD is out of date");
        assert_eq!(header, encode_header(&entries));
    },
    |data: &[u8]| {
    let (n, h) = take::<8>(data);
    let n = u64::from_le_bytes(n);
    let c = crypto();

    // 1. The plaintext parser, with the blob area size from the input.
    let decoded = check_decoded(h, n);

    // 2. Where the header sits.
    if h.len() >= 4 {
        let t = [h[h.len() - 4], h[h.len() - 3], h[h.len() - 2], h[h.len() - 1]];
        if let Ok((start, len)) = header_span(n, t) {
            assert!(len >= SEAL_OVERHEAD as u64 && len <= MAX_HEADER);
            assert_eq!(start + len + 4, n);
        }
    }

    // 3. The input as the tail of a pack (authentication fails; nothing may panic). The
    // tail is never longer than the pack (the documented precondition).
    let size = n.max(h.len() as u64);
    let r = parse_header_from_tail(c, size, h);
    assert!(r.is_err(), "forged pack header accepted");
    let _ = parse_header_from_tail(c, h.len() as u64, h);

    // 4. The input sealed as a header behind a blob area of n bytes: the parser is
    // reached and must agree with `decode_header`.
    let sealed = c.seal(h, PACK_HEADER_AAD);
    let mut tail = sealed;
    tail.extend_from_slice(&(tail.len() as u32).to_le_bytes());
    if let Some(size) = n.checked_add(tail.len() as u64) {
        match parse_header_from_tail(c, size, &tail) {
            Ok(entries) => assert_eq!(Ok(entries), decoded),
            Err(PackError::Malformed(m)) => {
                assert!(decoded.is_err(), "tail parse failed ({m}) but decode_header succeeded")
            }
            Err(e) => {
                // Only a header beyond the size limit may be refused before parsing.
                assert!(tail.len() as u64 - 4 > MAX_HEADER, "unexpected error: {e}");
            }
        }
    }
});
