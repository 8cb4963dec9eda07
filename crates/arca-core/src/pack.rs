//! Packs: many sealed blobs in one stored object, with an encrypted header at the end.
//!
//! Layout: `blob* || sealed header || header length (u32 LE)`. The header plaintext is
//! `version (u8) || count (u32 LE) || entries`, each entry `kind (u8) || id (32) ||
//! length (u32 LE) || raw length (u32 LE)`; blob offsets follow from the lengths. A blob is
//! `seal(zstd(plaintext))` or `seal(plaintext)` (raw length 0), with the blob id as
//! associated data. The pack's name is the BLAKE3 hash of all its bytes.

use crate::crypto::{Crypto, SEAL_OVERHEAD};
use crate::format::{BINARY_VERSION, BlobEntry, BlobKind};
use crate::id::Id;

/// Associated data of sealed pack headers.
pub const HEADER_AAD: &[u8] = b"arca pack header v1";
const ENTRY_LEN: usize = 1 + 32 + 4 + 4;
/// The largest plaintext a blob may claim (bounds decompression of untrusted data).
pub const MAX_BLOB_RAW: u32 = 512 << 20;
/// The largest pack header accepted when reading.
const MAX_HEADER: u64 = 64 << 20;
/// Bytes read from the end of a pack to get the header in one request, usually.
pub const HEADER_PROBE: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("pack is too short ({0} bytes)")]
    TooShort(u64),
    #[error("pack header length {0} is out of range")]
    HeaderLength(u64),
    #[error("pack header cannot be decrypted: {0}")]
    HeaderCrypto(crate::crypto::CryptoError),
    #[error("pack header is malformed: {0}")]
    Malformed(String),
    #[error("blob {0} cannot be decrypted: {1}")]
    BlobCrypto(Id, crate::crypto::CryptoError),
    #[error("blob {0} cannot be decompressed: {1}")]
    Decompress(Id, String),
    #[error("blob {id} has the wrong content: its hash is {actual}")]
    BlobHash { id: Id, actual: Id },
}

/// A reusable zstd context at a fixed level (creating one per blob costs more than
/// compressing a small blob).
pub struct BlobCompressor {
    level: i32,
    inner: Option<zstd::bulk::Compressor<'static>>,
    sample: Option<zstd::bulk::Compressor<'static>>,
}

impl BlobCompressor {
    /// `level` 0 disables compression.
    pub fn new(level: i32) -> BlobCompressor {
        let make = |l: i32| {
            if level > 0 {
                zstd::bulk::Compressor::new(l).ok()
            } else {
                None
            }
        };
        BlobCompressor {
            level,
            inner: make(level),
            sample: make(level.min(1)),
        }
    }

    /// Compressed bytes when compression pays, else `None`.
    fn compress(&mut self, plaintext: &[u8]) -> Option<Vec<u8>> {
        if self.level <= 0 || plaintext.len() < 64 || !self.looks_compressible(plaintext) {
            return None;
        }
        let c = self.inner.as_mut()?.compress(plaintext).ok()?;
        (c.len() + c.len() / 32 < plaintext.len()).then_some(c)
    }

    /// For large chunks, compress a sample first: random data passes through quickly.
    fn looks_compressible(&mut self, data: &[u8]) -> bool {
        const SAMPLE: usize = 64 * 1024;
        if data.len() < 4 * SAMPLE {
            return true;
        }
        let mid = data.len() / 2;
        let sample = &data[mid..mid + SAMPLE];
        match self.sample.as_mut().map(|c| c.compress(sample)) {
            Some(Ok(c)) => c.len() < SAMPLE - SAMPLE / 20,
            _ => true,
        }
    }
}

/// Compresses (when it pays) and seals one blob. Returns the sealed bytes and the raw
/// length to record (0 when stored uncompressed).
pub fn seal_blob(
    crypto: &Crypto,
    compressor: &mut BlobCompressor,
    id: &Id,
    plaintext: &[u8],
) -> (Vec<u8>, u32) {
    match compressor.compress(plaintext) {
        Some(c) => (crypto.seal(&c, &id.0), plaintext.len() as u32),
        None => (crypto.seal(plaintext, &id.0), 0),
    }
}

thread_local! {
    /// One zstd decompression context per thread (creating one per blob is costly).
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        std::cell::RefCell::new(zstd::bulk::Decompressor::new().ok());
}

/// Opens one sealed blob and checks that its plaintext hashes to its id.
pub fn open_blob(crypto: &Crypto, entry: &BlobEntry, sealed: &[u8]) -> Result<Vec<u8>, PackError> {
    let id = entry.id;
    let data = crypto
        .open(sealed, &id.0)
        .map_err(|e| PackError::BlobCrypto(id, e))?;
    let plain = if entry.raw_length > 0 {
        let mut out = Vec::new();
        decompress_blob(entry, &data, &mut out)?;
        out
    } else {
        data
    };
    check_blob_id(crypto, &id, &plain)?;
    Ok(plain)
}

/// [`open_blob`] without allocating: decrypts `sealed` where it lies and decompresses into
/// `scratch` (reused from blob to blob); returns the checked plaintext, which borrows from
/// one of the two.
pub fn open_blob_in_place<'a>(
    crypto: &Crypto,
    entry: &BlobEntry,
    sealed: &'a mut [u8],
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], PackError> {
    let id = entry.id;
    let data = crypto
        .open_in_place(sealed, &id.0)
        .map_err(|e| PackError::BlobCrypto(id, e))?;
    let plain: &[u8] = if entry.raw_length > 0 {
        decompress_blob(entry, data, scratch)?;
        scratch
    } else {
        data
    };
    check_blob_id(crypto, &id, plain)?;
    Ok(plain)
}

/// Decompresses a blob's data into `out` (replacing its content), exactly `raw_length` bytes.
fn decompress_blob(entry: &BlobEntry, data: &[u8], out: &mut Vec<u8>) -> Result<(), PackError> {
    let id = entry.id;
    if entry.raw_length > MAX_BLOB_RAW {
        return Err(PackError::Decompress(id, "raw length too large".into()));
    }
    let raw = entry.raw_length as usize;
    out.clear();
    out.reserve(raw);
    DECOMPRESSOR
        .with(|d| match &mut *d.borrow_mut() {
            Some(d) => d.decompress_to_buffer(data, out),
            None => zstd::bulk::Decompressor::new()?.decompress_to_buffer(data, out),
        })
        .map_err(|e| PackError::Decompress(id, e.to_string()))?;
    if out.len() != raw {
        return Err(PackError::Decompress(
            id,
            format!("expected {raw} bytes, got {}", out.len()),
        ));
    }
    Ok(())
}

fn check_blob_id(crypto: &Crypto, id: &Id, plain: &[u8]) -> Result<(), PackError> {
    let actual = crypto.blob_id(plain);
    if actual != *id {
        return Err(PackError::BlobHash { id: *id, actual });
    }
    Ok(())
}

/// Builds one pack in memory.
pub struct PackWriter {
    kind: BlobKind,
    data: Vec<u8>,
    entries: Vec<BlobEntry>,
}

impl PackWriter {
    pub fn new(kind: BlobKind, capacity: usize) -> PackWriter {
        PackWriter {
            kind,
            data: Vec::with_capacity(capacity),
            entries: Vec::new(),
        }
    }

    pub fn kind(&self) -> BlobKind {
        self.kind
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn count(&self) -> usize {
        self.entries.len()
    }

    /// Appends a sealed blob.
    pub fn add(&mut self, id: Id, sealed: &[u8], raw_length: u32) {
        self.entries.push(BlobEntry {
            kind: self.kind,
            id,
            offset: self.data.len() as u32,
            length: sealed.len() as u32,
            raw_length,
        });
        self.data.extend_from_slice(sealed);
    }

    /// Appends the header; returns the pack bytes, its id and its entries.
    pub fn finish(mut self, crypto: &Crypto) -> (Vec<u8>, Id, Vec<BlobEntry>) {
        let header = encode_header(&self.entries);
        let sealed = crypto.seal(&header, HEADER_AAD);
        self.data.extend_from_slice(&sealed);
        self.data
            .extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        let id = Id::of_object(&self.data);
        (self.data, id, self.entries)
    }
}

/// The plaintext header of a pack holding `entries` (before sealing).
pub fn encode_header(entries: &[BlobEntry]) -> Vec<u8> {
    let mut h = Vec::with_capacity(5 + entries.len() * ENTRY_LEN);
    h.push(BINARY_VERSION);
    h.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        h.push(e.kind.to_byte());
        h.extend_from_slice(&e.id.0);
        h.extend_from_slice(&e.length.to_le_bytes());
        h.extend_from_slice(&e.raw_length.to_le_bytes());
    }
    h
}

/// Parses a decrypted header; `data_len` is the length of the blob area it must fit in.
pub fn decode_header(h: &[u8], data_len: u64) -> Result<Vec<BlobEntry>, PackError> {
    let bad = |m: &str| PackError::Malformed(m.to_string());
    if h.len() < 5 {
        return Err(bad("header too short"));
    }
    if h[0] != BINARY_VERSION {
        return Err(PackError::Malformed(format!(
            "unknown pack header version {}",
            h[0]
        )));
    }
    let count = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
    if h.len() != 5 + count.saturating_mul(ENTRY_LEN) {
        return Err(bad("header length does not match its entry count"));
    }
    let mut entries = Vec::with_capacity(count);
    let mut offset: u64 = 0;
    for e in h[5..].chunks_exact(ENTRY_LEN) {
        let kind = BlobKind::from_byte(e[0]).ok_or_else(|| bad("unknown blob kind"))?;
        let mut id = [0u8; 32];
        id.copy_from_slice(&e[1..33]);
        let length = u32::from_le_bytes([e[33], e[34], e[35], e[36]]);
        let raw_length = u32::from_le_bytes([e[37], e[38], e[39], e[40]]);
        if (length as usize) < SEAL_OVERHEAD {
            return Err(bad("blob shorter than its seal"));
        }
        if raw_length > MAX_BLOB_RAW {
            return Err(bad("blob raw length too large"));
        }
        if offset > u64::from(u32::MAX) {
            return Err(bad("blob offset beyond 4 GiB"));
        }
        entries.push(BlobEntry {
            kind,
            id: Id(id),
            offset: offset as u32,
            length,
            raw_length,
        });
        offset += length as u64;
        if offset > data_len {
            return Err(bad("blob lengths run past the header"));
        }
    }
    Ok(entries)
}

/// Where the sealed header sits, given the pack size and the last 4 bytes of the pack.
pub fn header_span(pack_size: u64, trailer: [u8; 4]) -> Result<(u64, u64), PackError> {
    if pack_size < 4 + SEAL_OVERHEAD as u64 {
        return Err(PackError::TooShort(pack_size));
    }
    let len = u32::from_le_bytes(trailer) as u64;
    if len < SEAL_OVERHEAD as u64 || len > MAX_HEADER || len > pack_size - 4 {
        return Err(PackError::HeaderLength(len));
    }
    Ok((pack_size - 4 - len, len))
}

/// Decrypts and parses the header from the tail of a pack. `tail` holds the last
/// `tail.len()` bytes of a pack of `pack_size` bytes; it must include the whole header
/// (see [`header_span`]).
pub fn parse_header_from_tail(
    crypto: &Crypto,
    pack_size: u64,
    tail: &[u8],
) -> Result<Vec<BlobEntry>, PackError> {
    if tail.len() < 4 {
        return Err(PackError::TooShort(pack_size));
    }
    let t = &tail[tail.len() - 4..];
    let (start, len) = header_span(pack_size, [t[0], t[1], t[2], t[3]])?;
    let tail_start = pack_size
        .checked_sub(tail.len() as u64)
        .ok_or(PackError::TooShort(pack_size))?;
    if start < tail_start {
        return Err(PackError::HeaderLength(len));
    }
    let off = (start - tail_start) as usize;
    let sealed = &tail[off..off + len as usize];
    let header = crypto
        .open(sealed, HEADER_AAD)
        .map_err(PackError::HeaderCrypto)?;
    decode_header(&header, start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pack_round_trip(blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..20), level in 0i32..4) {
            let c = Crypto::new(MasterKey::generate());
            let mut w = PackWriter::new(BlobKind::Data, 0);
            let mut ids = Vec::new();
            for b in &blobs {
                let id = c.blob_id(b);
                let (sealed, raw) = seal_blob(&c, &mut BlobCompressor::new(level), &id, b);
                w.add(id, &sealed, raw);
                ids.push(id);
            }
            let (bytes, pid, entries) = w.finish(&c);
            prop_assert_eq!(pid, Id::of_object(&bytes));
            let parsed = parse_header_from_tail(&c, bytes.len() as u64, &bytes).unwrap();
            prop_assert_eq!(&parsed, &entries);
            for (e, b) in parsed.iter().zip(&blobs) {
                let s = &bytes[e.offset as usize..(e.offset + e.length) as usize];
                prop_assert_eq!(&open_blob(&c, e, s).unwrap(), b);
            }
            // In place, with one pack buffer and one scratch buffer reused across blobs of
            // every size (the restorer's way): the same plaintexts.
            let mut opened = bytes.clone();
            let mut scratch = vec![0xAA; 5000];
            for (e, b) in parsed.iter().zip(&blobs) {
                let s = &mut opened[e.offset as usize..(e.offset + e.length) as usize];
                let plain = open_blob_in_place(&c, e, s, &mut scratch).unwrap();
                prop_assert_eq!(plain, &b[..]);
            }
        }

        #[test]
        fn header_parser_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400), size in 0u64..1000) {
            let _ = decode_header(&data, size);
        }
    }

    /// Found by the pack_header fuzz target: offsets past 4 GiB wrapped around.
    #[test]
    fn header_with_offsets_beyond_4_gib_is_refused() {
        let mut h = vec![BINARY_VERSION, 3, 0, 0, 0];
        for _ in 0..3 {
            h.push(0);
            h.extend_from_slice(&[0u8; 32]);
            h.extend_from_slice(&u32::MAX.to_le_bytes());
            h.extend_from_slice(&0u32.to_le_bytes());
        }
        assert!(decode_header(&h, 1 << 34).is_err());
    }

    /// Found by hand while fuzzing: a tail longer than the pack underflowed.
    #[test]
    fn tail_longer_than_pack_is_an_error() {
        let c = Crypto::new(MasterKey::generate());
        let mut tail = vec![0u8; 41];
        tail.extend_from_slice(&40u32.to_le_bytes());
        assert!(parse_header_from_tail(&c, 44, &tail).is_err());
    }

    #[test]
    fn compressible_blobs_shrink_and_random_ones_do_not() {
        let c = Crypto::new(MasterKey::generate());
        let text = b"hello world ".repeat(10_000);
        let id = c.blob_id(&text);
        let (s, raw) = seal_blob(&c, &mut BlobCompressor::new(3), &id, &text);
        assert!(s.len() < text.len() / 10);
        assert_eq!(raw as usize, text.len());
        let mut rnd = vec![0u8; 300_000];
        crate::crypto::fill_random(&mut rnd);
        let id = c.blob_id(&rnd);
        let (s, raw) = seal_blob(&c, &mut BlobCompressor::new(3), &id, &rnd);
        assert_eq!(raw, 0);
        assert_eq!(s.len(), rnd.len() + SEAL_OVERHEAD);
    }

    #[test]
    fn swapped_or_flipped_blob_is_detected() {
        let c = Crypto::new(MasterKey::generate());
        let a = b"aaaa".repeat(100);
        let id = c.blob_id(&a);
        let (mut s, raw) = seal_blob(&c, &mut BlobCompressor::new(3), &id, &a);
        let e = BlobEntry {
            kind: BlobKind::Data,
            id,
            offset: 0,
            length: s.len() as u32,
            raw_length: raw,
        };
        let other = BlobEntry {
            id: c.blob_id(b"x"),
            ..e
        };
        assert!(open_blob(&c, &other, &s).is_err());
        let mut scratch = Vec::new();
        assert!(open_blob_in_place(&c, &other, &mut s.clone(), &mut scratch).is_err());
        // A raw length that lies (shorter or longer than the content) is refused in place.
        for raw_length in [raw - 1, raw + 1] {
            let lying = BlobEntry { raw_length, ..e };
            assert!(matches!(
                open_blob_in_place(&c, &lying, &mut s.clone(), &mut scratch),
                Err(PackError::Decompress(..))
            ));
        }
        s[30] ^= 0x40;
        assert!(open_blob(&c, &e, &s).is_err());
        assert!(open_blob_in_place(&c, &e, &mut s.clone(), &mut scratch).is_err());
    }
}
