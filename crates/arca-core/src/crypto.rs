//! Keys and encryption: Argon2id key derivation, the master key, AEAD seal/open of every
//! stored object and blob, and the keyed hash that names blobs.
//!
//! Sealed layout: `nonce (24) || ciphertext || tag (16)`, XChaCha20-Poly1305 with a random
//! nonce. Blobs are sealed with their id as associated data, so a blob cannot be moved
//! under another id without failing authentication.

use chacha20poly1305::aead::{Aead, AeadInOut, KeyInit, Payload};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::format::KdfParams;
use crate::id::Id;

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed object has beyond its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

pub use crate::random::fill_random;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("authentication failed (wrong key, or the data was modified)")]
    Authentication,
    #[error("sealed data too short ({0} bytes)")]
    TooShort(usize),
    #[error("key derivation failed: {0}")]
    Kdf(String),
}

/// The secrets of a repository, created at init and wrapped by every key file.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    /// Encrypts every object and blob.
    #[serde(with = "hex_key")]
    encryption: [u8; 32],
    /// Keys the BLAKE3 hash that names blobs.
    #[serde(with = "hex_key")]
    id_key: [u8; 32],
    /// Seeds the chunker's gear table.
    #[serde(with = "hex_key")]
    chunker_key: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

mod hex_key {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(k: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(k))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut k = [0u8; 32];
        hex::decode_to_slice(&s, &mut k).map_err(D::Error::custom)?;
        Ok(k)
    }
}

/// A master key ready to use: the cipher is set up once.
#[derive(Clone)]
pub struct Crypto {
    key: MasterKey,
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Crypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Crypto(..)")
    }
}

impl MasterKey {
    pub fn generate() -> MasterKey {
        let mut k = MasterKey {
            encryption: [0; 32],
            id_key: [0; 32],
            chunker_key: [0; 32],
        };
        fill_random(&mut k.encryption);
        fill_random(&mut k.id_key);
        fill_random(&mut k.chunker_key);
        k
    }

    /// The same key with another chunker secret (to deduplicate like another repository).
    pub fn with_chunker_key(mut self, key: [u8; 32]) -> MasterKey {
        self.chunker_key = key;
        self
    }

    /// The same key with another id key (to share blob ids with another repository).
    pub fn with_id_key(mut self, key: [u8; 32]) -> MasterKey {
        self.id_key = key;
        self
    }

    pub fn id_key(&self) -> &[u8; 32] {
        &self.id_key
    }

    pub fn chunker_key(&self) -> &[u8; 32] {
        &self.chunker_key
    }
}

impl Crypto {
    pub fn new(key: MasterKey) -> Crypto {
        let cipher = XChaCha20Poly1305::new(&key.encryption.into());
        Crypto { key, cipher }
    }

    pub fn master_key(&self) -> &MasterKey {
        &self.key
    }

    /// The id of a blob: BLAKE3 keyed with the repository's id key.
    pub fn blob_id(&self, plaintext: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.key.id_key, plaintext).as_bytes())
    }

    /// A hasher that gives [`Crypto::blob_id`] of everything fed to it, for content read
    /// in pieces.
    pub fn blob_hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.key.id_key)
    }

    /// Seals `plaintext` with associated data `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&nonce);
        let ct = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // Encryption fails only for messages beyond the cipher's 256 GiB limit.
            .unwrap_or_default();
        out.extend_from_slice(&ct);
        out
    }

    /// Opens data sealed by [`Crypto::seal`] with the same `aad` where it lies: the
    /// plaintext is decrypted over the ciphertext and returned as that part of `sealed`
    /// (nothing is allocated or copied; the restorer's hot path).
    pub fn open_in_place<'a>(
        &self,
        sealed: &'a mut [u8],
        aad: &[u8],
    ) -> Result<&'a mut [u8], CryptoError> {
        let len = sealed.len();
        if len < SEAL_OVERHEAD {
            return Err(CryptoError::TooShort(len));
        }
        let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
        let (ct, tag) = rest.split_at_mut(len - SEAL_OVERHEAD);
        let nonce = XNonce::try_from(&*nonce).map_err(|_| CryptoError::TooShort(len))?;
        let tag = Tag::try_from(&*tag).map_err(|_| CryptoError::TooShort(len))?;
        self.cipher
            .decrypt_inout_detached(&nonce, aad, ct.into(), &tag)
            .map_err(|_| CryptoError::Authentication)?;
        Ok(ct)
    }

    /// Opens data sealed by [`Crypto::seal`] with the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(CryptoError::TooShort(sealed.len()));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| CryptoError::TooShort(sealed.len()))?;
        self.cipher
            .decrypt(&nonce, Payload { msg: ct, aad })
            .map_err(|_| CryptoError::Authentication)
    }
}

/// Default Argon2id parameters for new keys (about 0.1 s on the reference machine).
pub fn default_kdf_params() -> KdfParams {
    let mut salt = [0u8; 32];
    fill_random(&mut salt);
    KdfParams {
        algorithm: "argon2id".into(),
        memory_kib: 64 * 1024,
        iterations: 2,
        // Four lanes, computed on as many cores (RFC 9106's recommended p): the same memory
        // and passes for an attacker, a quarter to a half of the wait for the user.
        parallelism: 4,
        salt: hex::encode(salt),
    }
}

/// Cheap parameters for tests (ARCA_TEST_FAST_KDF=1): never use for real data.
pub fn test_kdf_params() -> KdfParams {
    KdfParams {
        memory_kib: 64,
        iterations: 1,
        ..default_kdf_params()
    }
}

/// Derives the key-wrapping key from a password.
pub fn derive_key(password: &[u8], p: &KdfParams) -> Result<[u8; 32], CryptoError> {
    if p.algorithm != "argon2id" {
        return Err(CryptoError::Kdf(format!(
            "unknown key derivation '{}'",
            p.algorithm
        )));
    }
    // Refuse parameters that would let a crafted key file exhaust memory or time.
    // Also bound memory x iterations: a planted key file must not make every open of the
    // repository take minutes (the default costs 64 MiB x 2).
    let cost = u64::from(p.memory_kib) * u64::from(p.iterations);
    if p.memory_kib > 4 * 1024 * 1024
        || p.iterations > 100
        || p.parallelism > 64
        || cost > 4 * 1024 * 1024
    {
        return Err(CryptoError::Kdf(
            "key derivation parameters out of range".into(),
        ));
    }
    let salt = hex::decode(&p.salt).map_err(|e| CryptoError::Kdf(format!("salt: {e}")))?;
    let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    let mut memory = KdfMemory::new(params.block_count());
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    a.hash_password_into_with_memory(password, &salt, &mut out, memory.blocks())
        .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    Ok(out)
}

/// Asks for transparent huge pages under `bytes` (where the system offers them on request):
/// 32 page faults instead of 16,384 for the default 64 MiB. Only advice.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn advise_huge_pages(bytes: &mut [u8]) {
    const PAGE: usize = 4096;
    let start = bytes.as_mut_ptr() as usize;
    let aligned = start.next_multiple_of(PAGE);
    let end = (start + bytes.len()) & !(PAGE - 1);
    if let Some(ptr) = std::ptr::NonNull::new(aligned as *mut std::ffi::c_void)
        && end > aligned
    {
        // SAFETY: the range lies inside `bytes`, which this function borrows mutably;
        // MADV_HUGEPAGE changes how the pages are backed, never their content.
        let _ = unsafe {
            nix::sys::mman::madvise(
                ptr,
                end - aligned,
                nix::sys::mman::MmapAdvise::MADV_HUGEPAGE,
            )
        };
    }
}
#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_: &mut [u8]) {}

/// The Argon2 memory of one key derivation (64 MiB by default), as zeroed pages fresh from
/// the kernel. `hash_password_into` allocates it 64-byte aligned, which the system
/// allocator serves by clearing every byte on the calling thread: 40-50 ms of page faults
/// and memset before the lanes start, a tenth of a database restore. Here the buffer comes
/// from `calloc` (byte-aligned, so already-zero pages are not cleared again) and each lane
/// faults in its own pages on its own core as it writes them.
struct KdfMemory {
    bytes: Vec<u8>,
    block_count: usize,
}

impl KdfMemory {
    fn new(block_count: usize) -> KdfMemory {
        // One block more, to align the first to a block boundary.
        let len = (block_count + 1) * argon2::Block::SIZE;
        let mut bytes = vec![0u8; len];
        advise_huge_pages(&mut bytes);
        KdfMemory { bytes, block_count }
    }

    #[allow(unsafe_code)]
    fn blocks(&mut self) -> &mut [argon2::Block] {
        // SAFETY: `align_to_mut` yields only correctly aligned, in-bounds `Block`s, and every
        // byte of them is zero: a `Block` is an array of `u64` (no padding, no invariants),
        // for which all-zero bytes are a valid value.
        let (_, blocks, _) = unsafe { self.bytes.align_to_mut::<argon2::Block>() };
        let n = self.block_count.min(blocks.len());
        &mut blocks[..n]
    }
}

/// Wraps (seals) the master key with a key derived from a password.
pub fn wrap_master_key(master: &MasterKey, wrapping_key: &[u8; 32], aad: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(master).unwrap_or_default();
    let c = Crypto::new(MasterKey {
        encryption: *wrapping_key,
        id_key: [0; 32],
        chunker_key: [0; 32],
    });
    c.seal(&json, aad)
}

/// Unwraps a master key; fails with `Authentication` for a wrong password.
pub fn unwrap_master_key(
    sealed: &[u8],
    wrapping_key: &[u8; 32],
    aad: &[u8],
) -> Result<MasterKey, CryptoError> {
    let c = Crypto::new(MasterKey {
        encryption: *wrapping_key,
        id_key: [0; 32],
        chunker_key: [0; 32],
    });
    let mut json = c.open(sealed, aad)?;
    let key = serde_json::from_slice(&json).map_err(|_| CryptoError::Authentication);
    json.zeroize();
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The derivation over arca's own memory gives the key argon2's allocating entry point
    /// gives, for the default cost, several lane counts and memory sizes that do not divide
    /// evenly (existing key files must keep opening).
    #[test]
    fn derive_key_matches_the_reference_derivation() {
        for (memory_kib, iterations, parallelism) in [
            (64 * 1024, 2, 4),
            (64 * 1024, 2, 1),
            (8 * 1024 + 72, 3, 3),
            (64, 1, 1),
        ] {
            let p = KdfParams {
                memory_kib,
                iterations,
                parallelism,
                ..default_kdf_params()
            };
            let salt = hex::decode(&p.salt).unwrap();
            let params =
                argon2::Params::new(memory_kib, iterations, parallelism, Some(32)).unwrap();
            let mut want = [0u8; 32];
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_into(b"correct horse", &salt, &mut want)
                .unwrap();
            assert_eq!(derive_key(b"correct horse", &p).unwrap(), want, "{p:?}");
        }
    }

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let c = Crypto::new(MasterKey::generate());
        let s = c.seal(b"hello", b"aad");
        assert_eq!(c.open(&s, b"aad").unwrap(), b"hello");
        assert!(c.open(&s, b"other").is_err());
        let mut t = s.clone();
        t[30] ^= 1;
        assert!(matches!(
            c.open(&t, b"aad"),
            Err(CryptoError::Authentication)
        ));
        assert!(matches!(
            c.open(&s[..10], b"aad"),
            Err(CryptoError::TooShort(10))
        ));
        let other = Crypto::new(MasterKey::generate());
        assert!(other.open(&s, b"aad").is_err());
    }

    #[test]
    fn open_in_place_matches_open_and_refuses_what_open_refuses() {
        let c = Crypto::new(MasterKey::generate());
        for msg in [&b""[..], b"x", &[7u8; 100_000]] {
            let s = c.seal(msg, b"aad");
            let mut buf = s.clone();
            assert_eq!(c.open_in_place(&mut buf, b"aad").unwrap(), msg);
            assert!(c.open_in_place(&mut s.clone(), b"other").is_err());
            let mut t = s.clone();
            let last = t.len() - 1;
            t[last] ^= 1;
            assert!(matches!(
                c.open_in_place(&mut t, b"aad"),
                Err(CryptoError::Authentication)
            ));
        }
        assert!(matches!(
            c.open_in_place(&mut [0u8; 39], b"aad"),
            Err(CryptoError::TooShort(39))
        ));
    }

    #[test]
    fn wrap_unwrap() {
        let m = MasterKey::generate();
        let p = test_kdf_params();
        let k = derive_key(b"pw", &p).unwrap();
        let w = wrap_master_key(&m, &k, b"repo");
        let back = unwrap_master_key(&w, &k, b"repo").unwrap();
        assert_eq!(back.id_key, m.id_key);
        let wrong = derive_key(b"pw2", &p).unwrap();
        assert!(unwrap_master_key(&w, &wrong, b"repo").is_err());
    }

    #[test]
    fn blob_hasher_in_pieces_gives_the_blob_id() {
        let c = Crypto::new(MasterKey::generate());
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut h = c.blob_hasher();
        for piece in data.chunks(1 << 20) {
            h.update(piece);
        }
        assert_eq!(Id(*h.finalize().as_bytes()), c.blob_id(&data));
    }

    #[test]
    fn blob_ids_are_keyed() {
        let a = Crypto::new(MasterKey::generate());
        let b = Crypto::new(MasterKey::generate());
        assert_ne!(a.blob_id(b"x"), b.blob_id(b"x"));
        assert_eq!(a.blob_id(b"x"), a.blob_id(b"x"));
    }
}
