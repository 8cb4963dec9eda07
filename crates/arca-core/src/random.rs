//! Randomness from the operating system, for keys, nonces and random ids (its own module
//! so that ids and cryptography both use it without depending on each other).

/// Fills `buf` from the operating system's random source.
pub fn fill_random(buf: &mut [u8]) {
    if let Err(e) = getrandom::fill(buf) {
        // Without randomness no key or nonce is safe; there is nothing sensible to go on with.
        panic!("operating system random source failed: {e}");
    }
}
