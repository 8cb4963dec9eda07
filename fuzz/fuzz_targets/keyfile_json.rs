//! Key files (plaintext JSON that anyone with write access to the storage can plant), and
//! the key derivation they configure: parameters beyond the documented limits must be
//! refused at once; small ones are run.
#![no_main]

use std::time::{Duration, Instant};

use arca_core::crypto::derive_key;
use arca_core::format::{KdfParams, KeyFile};
use libfuzzer_sys::fuzz_target;

/// The limits documented in `crypto::derive_key`.
const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
const MAX_ITERATIONS: u32 = 100;
const MAX_PARALLELISM: u32 = 64;

fn over_limits(p: &KdfParams) -> bool {
    p.memory_kib > MAX_MEMORY_KIB
        || p.iterations > MAX_ITERATIONS
        || p.parallelism > MAX_PARALLELISM
}

fn refused_quickly(p: &KdfParams) {
    let start = Instant::now();
    let r = derive_key(b"password", p);
    assert!(
        r.is_err(),
        "derive_key accepted parameters beyond its limits: {p:?}"
    );
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "refusing {p:?} took {:?}",
        start.elapsed()
    );
}

fuzz_target!(
    init: arca_fuzz::write_seeds("keyfile_json"),
    |data: &[u8]| {
    let Ok(kf) = serde_json::from_slice::<KeyFile>(data) else { return };
    let once = serde_json::to_vec(&kf).expect("key file to JSON");
    let again: KeyFile = serde_json::from_slice(&once).expect("key file JSON re-parses");
    assert_eq!(again.kdf, kf.kdf);

    let p = &kf.kdf;
    if over_limits(p) {
        refused_quickly(p);
    } else if p.memory_kib <= 1024 && p.iterations <= 2 {
        let _ = derive_key(b"password", p);
    }
    // Each limit on its own, with the rest of the parsed parameters.
    let argon = KdfParams { algorithm: "argon2id".into(), ..p.clone() };
    refused_quickly(&KdfParams { memory_kib: p.memory_kib.max(MAX_MEMORY_KIB + 1), ..argon.clone() });
    refused_quickly(&KdfParams { iterations: p.iterations.max(MAX_ITERATIONS + 1), ..argon.clone() });
    refused_quickly(&KdfParams { parallelism: p.parallelism.max(MAX_PARALLELISM + 1), ..argon });
});
