//! Memory and speed of the in-memory blob index at repository scale.
//!
//! Builds an [`Index`] of N synthetic blobs (default 10,000,000; N from the first argument)
//! in packs of 500, the way `Repository::load_index` does (one `reserve` for all, then
//! `insert_pack` per pack), and prints one JSON line: bytes per blob by
//! `Index::memory_bytes` and by the growth of the process's resident memory, the build
//! time, and single-thread lookups per second for random hits and misses.
//!
//! Run: `cargo run --release -p arca-core --example index_bench [N]`.

use std::hint::black_box;
use std::time::Instant;

use arca_core::format::{BlobEntry, BlobKind};
use arca_core::id::Id;
use arca_core::index::Index;

const PACK_BLOBS: usize = 500;
const LOOKUPS: usize = 1_000_000;

/// xorshift64 seeded through splitmix64, so any blob's id can be recomputed from its number.
fn xorshift_id(seed: u64) -> Id {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let mut x = (z ^ (z >> 31)) | 1;
    let mut b = [0u8; 32];
    for c in b.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes());
    }
    Id(b)
}

/// Blob `i` of the index (hits); misses use numbers from a disjoint range.
fn blob_id(i: u64) -> Id {
    xorshift_id(i)
}

fn pack_id(p: u64) -> Id {
    xorshift_id(p | 1 << 62)
}

fn miss_id(i: u64) -> Id {
    xorshift_id(i | 1 << 63)
}

/// Resident set size in bytes, from /proc/self/status.
fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

fn main() {
    let n: usize = match std::env::args().nth(1) {
        Some(a) => a.replace('_', "").parse().expect("N must be a number"),
        None => 10_000_000,
    };
    assert!(n > 0, "N must be positive");

    // The per-pack entry buffer and the query lists are made outside the measured span.
    let mut blobs: Vec<BlobEntry> = Vec::with_capacity(PACK_BLOBS);
    let rss_before = rss_bytes();
    let start = Instant::now();
    let mut ix = Index::new();
    ix.reserve(n);
    let mut i = 0u64;
    let mut p = 0u64;
    while (i as usize) < n {
        blobs.clear();
        let mut offset = 0u32;
        while blobs.len() < PACK_BLOBS && (i as usize) < n {
            let length = 1_000 + (i as u32 % 4_000_000);
            blobs.push(BlobEntry {
                kind: if i.is_multiple_of(50) {
                    BlobKind::Tree
                } else {
                    BlobKind::Data
                },
                id: blob_id(i),
                offset,
                length,
                raw_length: if i.is_multiple_of(3) { length * 2 } else { 0 },
            });
            offset = offset.wrapping_add(length);
            i += 1;
        }
        ix.insert_pack(pack_id(p), &blobs);
        p += 1;
    }
    let build = start.elapsed();
    let rss_after = rss_bytes();
    assert_eq!(ix.len(), n);
    let memory = ix.memory_bytes();

    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let hits: Vec<Id> = (0..LOOKUPS)
        .map(|_| blob_id(rng.next() % n as u64))
        .collect();
    let misses: Vec<Id> = (0..LOOKUPS).map(|k| miss_id(k as u64)).collect();

    let t = Instant::now();
    let mut found = 0usize;
    for id in &hits {
        if let Some(loc) = ix.get(id) {
            found += 1;
            black_box(loc);
        }
    }
    let hit_secs = t.elapsed().as_secs_f64();
    assert_eq!(found, LOOKUPS);

    let t = Instant::now();
    let mut found = 0usize;
    for id in &misses {
        if let Some(loc) = ix.get(id) {
            found += 1;
            black_box(loc);
        }
    }
    let miss_secs = t.elapsed().as_secs_f64();
    assert_eq!(found, 0);

    let rss_growth = rss_after.saturating_sub(rss_before);
    println!(
        "{{\"blobs\":{n},\"packs\":{p},\"memory_bytes\":{memory},\
         \"bytes_per_blob_memory\":{:.2},\"rss_before\":{rss_before},\"rss_after\":{rss_after},\
         \"bytes_per_blob_rss\":{:.2},\"build_secs\":{:.3},\"build_blobs_per_sec\":{:.0},\
         \"lookups\":{LOOKUPS},\"hit_lookups_per_sec\":{:.0},\"miss_lookups_per_sec\":{:.0}}}",
        memory as f64 / n as f64,
        rss_growth as f64 / n as f64,
        build.as_secs_f64(),
        n as f64 / build.as_secs_f64(),
        LOOKUPS as f64 / hit_secs,
        LOOKUPS as f64 / miss_secs,
    );
}
