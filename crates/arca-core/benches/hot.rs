//! Micro-benchmarks of the hot paths of a backup and a restore: chunking, blob ids,
//! sealing, compression and index lookups. See docs/BENCHMARKS.md for the numbers and the
//! machine limits they are compared with.
//!
//! Run: `cargo bench -p arca-core --bench hot`.
//!
//! With `ARCA_BENCH_WRITE_TEXT=PATH` set, the binary instead writes 100 MiB of the same
//! text-like data to PATH and exits (`ARCA_BENCH_TEXT_MIB` changes the size), so command-line
//! tools such as `zstd -b3` can be measured on identical input.

use std::hint::black_box;
use std::time::Duration;

use arca_core::chunker::Chunker;
use arca_core::crypto::{Crypto, MasterKey};
use arca_core::format::{BlobEntry, BlobKind, ChunkerParams};
use arca_core::id::Id;
use arca_core::index::Index;
use arca_core::pack::{self, BlobCompressor};
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use criterion::{BatchSize, BenchmarkGroup, Criterion, Throughput, measurement::WallTime};

const MIB: usize = 1 << 20;

/// xorshift64: deterministic, fast, good enough for benchmark data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn id(&mut self) -> Id {
        let mut b = [0u8; 32];
        for c in b.chunks_exact_mut(8) {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        Id(b)
    }
}

/// Incompressible bytes.
fn random_data(n: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        v.extend_from_slice(&r.next().to_le_bytes());
    }
    v.truncate(n);
    v
}

/// Log-like lines built from a small vocabulary (compresses about 5-10x with zstd -3).
fn text_data(n: usize, seed: u64) -> Vec<u8> {
    const LEVELS: &[&str] = &["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"];
    const SERVICES: &[&str] = &[
        "api",
        "db",
        "auth",
        "cache",
        "worker",
        "scheduler",
        "gateway",
        "backup",
    ];
    const WORDS: &[&str] = &[
        "request",
        "handled",
        "user",
        "session",
        "opened",
        "closed",
        "timeout",
        "retry",
        "connection",
        "from",
        "to",
        "upstream",
        "latency",
        "bytes",
        "written",
        "read",
        "query",
        "slow",
        "cache",
        "miss",
        "hit",
        "token",
        "refreshed",
        "job",
        "started",
        "finished",
        "failed",
        "queue",
        "depth",
        "pool",
        "exhausted",
        "ok",
        "status",
        "path",
        "/api/v1/items",
        "/api/v1/users",
        "/healthz",
        "/login",
        "GET",
        "POST",
        "PUT",
        "DELETE",
    ];
    let mut r = Rng::new(seed);
    let mut v = Vec::with_capacity(n + 256);
    let mut t: u64 = 1_700_000_000;
    while v.len() < n {
        t += r.next() % 3;
        let (h, m, s) = ((t / 3600) % 24, (t / 60) % 60, t % 60);
        let line = format!(
            "2024-03-{:02}T{h:02}:{m:02}:{s:02}.{:03}Z {:5} [{}] pid={} ",
            1 + (t / 86400) % 28,
            r.next() % 1000,
            LEVELS[r.below(LEVELS.len())],
            SERVICES[r.below(SERVICES.len())],
            1000 + r.below(64),
        );
        v.extend_from_slice(line.as_bytes());
        for i in 0..4 + r.below(8) {
            if i > 0 {
                v.push(b' ');
            }
            v.extend_from_slice(WORDS[r.below(WORDS.len())].as_bytes());
        }
        v.extend_from_slice(
            format!(" ms={} id={:08x}\n", r.below(500), r.next() as u32).as_bytes(),
        );
    }
    v.truncate(n);
    v
}

fn configure(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
}

fn crypto() -> Crypto {
    Crypto::new(MasterKey::generate())
}

fn bench_chunker(c: &mut Criterion) {
    let key = [7u8; 32];
    let chunker = Chunker::new(ChunkerParams::default(), &key);
    let mut g = c.benchmark_group("chunk_8MiB");
    configure(&mut g);
    g.throughput(Throughput::Bytes(8 * MIB as u64));
    for (name, data) in [
        ("random", random_data(8 * MIB, 1)),
        ("text", text_data(8 * MIB, 2)),
    ] {
        let mut cuts = Vec::new();
        let mut rest = &data[..];
        while !rest.is_empty() {
            let n = chunker.next_cut(rest);
            cuts.push(n);
            rest = &rest[n..];
        }
        eprintln!("chunk_8MiB/{name}: {} chunks, sizes {cuts:?}", cuts.len());
        // Reference: the cut-point search alone, on a slice (no reads, no copies).
        g.bench_function(format!("{name}/next_cut_only"), |b| {
            b.iter(|| {
                let mut rest = black_box(&data[..]);
                let mut k = 0usize;
                while !rest.is_empty() {
                    let n = chunker.next_cut(rest);
                    rest = &rest[n..];
                    k += 1;
                }
                k
            })
        });
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut s = chunker.stream(&data[..]);
                let mut n = 0usize;
                while let Some(ch) = s.next_chunk().unwrap() {
                    n += ch.len();
                }
                assert_eq!(n, data.len());
                black_box(n)
            })
        });
    }
    g.finish();
}

fn bench_crypto(c: &mut Criterion) {
    let cr = crypto();
    let data = random_data(MIB, 3);
    let aad = [9u8; 32];
    let sealed = cr.seal(&data, &aad);
    let mut g = c.benchmark_group("crypto_1MiB");
    configure(&mut g);
    g.throughput(Throughput::Bytes(MIB as u64));
    g.bench_function("blob_id", |b| b.iter(|| cr.blob_id(black_box(&data))));
    g.bench_function("seal", |b| b.iter(|| cr.seal(black_box(&data), &aad)));
    g.bench_function("open", |b| {
        b.iter(|| cr.open(black_box(&sealed), &aad).unwrap())
    });
    // Reference: the same AEAD in place on a reused buffer (no allocation, no copies, no
    // random nonce), i.e. what the cipher crate itself can do.
    let cipher = XChaCha20Poly1305::new(&[3u8; 32].into());
    let nonce = XNonce::from([4u8; 24]);
    let mut buf = data.clone();
    g.bench_function("aead_in_place_reference", |b| {
        b.iter(|| {
            cipher
                .encrypt_inout_detached(&nonce, &aad, buf.as_mut_slice().into())
                .unwrap()
        })
    });
    g.finish();
}

fn bench_blobs(c: &mut Criterion) {
    let cr = crypto();
    let mut g = c.benchmark_group("blob_1MiB");
    configure(&mut g);
    g.throughput(Throughput::Bytes(MIB as u64));
    for (name, data) in [("text", text_data(MIB, 4)), ("random", random_data(MIB, 5))] {
        let id = cr.blob_id(&data);
        let mut comp = BlobCompressor::new(3);
        g.bench_function(format!("seal_blob_zstd3/{name}"), |b| {
            b.iter(|| pack::seal_blob(&cr, &mut comp, &id, black_box(&data)))
        });
        let (sealed, raw_length) = pack::seal_blob(&cr, &mut comp, &id, &data);
        let entry = BlobEntry {
            kind: BlobKind::Data,
            id,
            offset: 0,
            length: sealed.len() as u32,
            raw_length,
        };
        eprintln!(
            "blob_1MiB/{name}: sealed {} bytes of {} (raw_length {raw_length})",
            sealed.len(),
            data.len()
        );
        g.bench_function(format!("open_blob/{name}"), |b| {
            b.iter(|| pack::open_blob(&cr, &entry, black_box(&sealed)).unwrap())
        });
    }
    g.finish();
}

fn bench_index(c: &mut Criterion) {
    const N: usize = 1_000_000;
    const PACK: usize = 500;
    const LOOKUPS: usize = 1000;
    let mut r = Rng::new(11);
    let mut ids = Vec::with_capacity(N);
    let mut ix = Index::new();
    ix.reserve(N);
    let mut blobs = Vec::with_capacity(PACK);
    for p in 0..N / PACK {
        blobs.clear();
        let mut offset = 0u32;
        for _ in 0..PACK {
            let id = r.id();
            ids.push(id);
            let length = 100_000 + (r.next() % 1_000_000) as u32;
            blobs.push(BlobEntry {
                kind: BlobKind::Data,
                id,
                offset,
                length,
                raw_length: 0,
            });
            offset += length;
        }
        ix.insert_pack(r.id(), &blobs);
        black_box(p);
    }
    assert_eq!(ix.len(), N);
    let mut g = c.benchmark_group("index_1M");
    configure(&mut g);
    g.throughput(Throughput::Elements(LOOKUPS as u64));
    let mut pick = Rng::new(12);
    g.bench_function("get_hit", |b| {
        b.iter_batched_ref(
            || (0..LOOKUPS).map(|_| ids[pick.below(N)]).collect::<Vec<_>>(),
            |q| {
                for id in q.iter() {
                    black_box(ix.get(id).unwrap());
                }
            },
            BatchSize::SmallInput,
        )
    });
    let mut miss = Rng::new(13);
    g.bench_function("get_miss", |b| {
        b.iter_batched_ref(
            || (0..LOOKUPS).map(|_| miss.id()).collect::<Vec<_>>(),
            |q| {
                for id in q.iter() {
                    assert!(ix.get(id).is_none());
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn write_text(path: &str) {
    let mib: usize = std::env::var("ARCA_BENCH_TEXT_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let mut out = Vec::with_capacity(mib * MIB);
    for i in 0..mib.div_ceil(8) {
        out.extend_from_slice(&text_data(8 * MIB, 100 + i as u64));
    }
    out.truncate(mib * MIB);
    std::fs::write(path, &out).expect("write text");
    eprintln!("wrote {} bytes of text-like data to {path}", out.len());
}

fn main() {
    if let Ok(path) = std::env::var("ARCA_BENCH_WRITE_TEXT") {
        write_text(&path);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench_chunker(&mut c);
    bench_crypto(&mut c);
    bench_blobs(&mut c);
    bench_index(&mut c);
    c.final_summary();
}
