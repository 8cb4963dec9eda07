//! The blob saver: deduplicates, compresses, seals and packs blobs, uploads packs and
//! writes index files, on its own threads.
//!
//! Callers hand it plaintext blobs with their ids ([`BlobSaver::save`]); it drops those the
//! index or an earlier call already has. Compression and sealing run on `workers` threads,
//! one packer thread fills a pack per blob kind, uploaders write finished packs, and an
//! indexer writes an index file every [`INDEX_EVERY`] packs and at the end, so an
//! interrupted backup leaves most of its packs indexed and reusable. Queues between the
//! stages are bounded: memory stays flat whatever the input.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::error::{Error, Result};
use crate::format::{BlobKind, IndexFile, IndexPack};
use crate::id::Id;
use crate::index::Index;
use crate::pack::{BlobCompressor, PackWriter, seal_blob};
use crate::repo::Repository;

/// Packs per index file written during a backup.
pub const INDEX_EVERY: usize = 8;

/// Counters of what was added.
#[derive(Debug, Default)]
pub struct SaverStats {
    pub blobs_added: AtomicU64,
    pub bytes_added: AtomicU64,
    pub bytes_added_raw: AtomicU64,
    pub packs_written: AtomicU64,
}

/// What a finished saver added.
#[derive(Debug, Clone, Copy, Default)]
pub struct SaverTotals {
    pub blobs_added: u64,
    pub bytes_added: u64,
    pub bytes_added_raw: u64,
}

struct Job {
    kind: BlobKind,
    id: Id,
    data: Vec<u8>,
}

struct Sealed {
    kind: BlobKind,
    id: Id,
    sealed: Vec<u8>,
    raw_length: u32,
    plain_len: usize,
}

/// The saving pipeline of one backup (or copy, or repack).
pub struct BlobSaver {
    job_tx: Option<Sender<Job>>,
    index: Arc<Index>,
    pending: Mutex<HashSet<Id>>,
    failed: Arc<AtomicBool>,
    error: Arc<Mutex<Option<Error>>>,
    stats: Arc<SaverStats>,
    dry_run: bool,
    workers: Vec<JoinHandle<()>>,
    packer: Option<JoinHandle<()>>,
    uploaders: Vec<JoinHandle<()>>,
    indexer: Option<JoinHandle<Vec<IndexPack>>>,
}

impl BlobSaver {
    /// Starts the pipeline. `index` is the repository's index as loaded (read-only).
    pub fn new(repo: Arc<Repository>, index: Arc<Index>, workers: usize) -> BlobSaver {
        let workers = workers.max(1);
        let (job_tx, job_rx) = bounded::<Job>(workers);
        let (sealed_tx, sealed_rx) = bounded::<Sealed>(workers);
        let (pack_tx, pack_rx) = bounded::<(Vec<u8>, Id, IndexPack)>(0);
        let (done_tx, done_rx) = bounded::<IndexPack>(64);
        let failed = Arc::new(AtomicBool::new(false));
        let error: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));
        let stats = Arc::new(SaverStats::default());
        let record = {
            let failed = failed.clone();
            let error = error.clone();
            move |e: Error| {
                failed.store(true, Ordering::SeqCst);
                let mut slot = error.lock().unwrap_or_else(|p| p.into_inner());
                if slot.is_none() {
                    *slot = Some(e);
                }
            }
        };

        let level = repo.config().compression_level;
        let worker_handles = (0..workers)
            .map(|_| {
                let rx = job_rx.clone();
                let tx = sealed_tx.clone();
                let repo = repo.clone();
                std::thread::spawn(move || {
                    let mut compressor = BlobCompressor::new(level);
                    for job in rx {
                        let (sealed, raw_length) =
                            seal_blob(repo.crypto(), &mut compressor, &job.id, &job.data);
                        let s = Sealed {
                            kind: job.kind,
                            id: job.id,
                            sealed,
                            raw_length,
                            plain_len: job.data.len(),
                        };
                        if tx.send(s).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        drop(sealed_tx);

        let pack_size = repo.config().pack_size as usize;
        let packer = {
            let repo = repo.clone();
            let stats = stats.clone();
            std::thread::spawn(move || packer_loop(&repo, sealed_rx, pack_tx, pack_size, &stats))
        };

        // One uploader per connection the storage wants (`--connections`), within reason.
        let connections = repo.storage().properties().connections.clamp(1, 64);
        let uploaders = (0..connections)
            .map(|_| {
                let rx = pack_rx.clone();
                let tx = done_tx.clone();
                let repo = repo.clone();
                let record = record.clone();
                let failed = failed.clone();
                let stats = stats.clone();
                std::thread::spawn(move || {
                    for (bytes, id, entry) in rx {
                        if failed.load(Ordering::SeqCst) {
                            continue;
                        }
                        match repo.write_pack(&id, &bytes) {
                            Ok(()) => {
                                stats.packs_written.fetch_add(1, Ordering::Relaxed);
                                let _ = tx.send(entry);
                            }
                            Err(e) => record(e),
                        }
                    }
                })
            })
            .collect();
        drop(done_tx);

        let indexer = {
            let repo = repo.clone();
            let record = record.clone();
            std::thread::spawn(move || indexer_loop(&repo, done_rx, record))
        };

        BlobSaver {
            job_tx: Some(job_tx),
            index,
            pending: Mutex::new(HashSet::new()),
            failed,
            error,
            stats,
            dry_run: false,
            workers: worker_handles,
            packer: Some(packer),
            uploaders,
            indexer: Some(indexer),
        }
    }

    /// In a dry run blobs are counted as if stored, but nothing is written.
    pub fn set_dry_run(&mut self, dry_run: bool) {
        self.dry_run = dry_run;
    }

    pub fn stats(&self) -> &SaverStats {
        &self.stats
    }

    /// Whether the repository (or an earlier call) already has this blob.
    pub fn is_known(&self, id: &Id) -> bool {
        self.index.contains(id)
            || self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(id)
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Queues a blob unless it is known. Returns whether it was new. Fails once the
    /// pipeline has failed (e.g. the storage is full), so callers stop early.
    pub fn save(&self, kind: BlobKind, id: Id, data: Vec<u8>) -> Result<bool> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(self.take_error());
        }
        if self.index.contains(&id)
            || !self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id)
        {
            return Ok(false);
        }
        if self.dry_run {
            self.stats.blobs_added.fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes_added_raw
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            return Ok(true);
        }
        let tx = self
            .job_tx
            .as_ref()
            .ok_or_else(|| Error::Invalid("saver already finished".into()))?;
        if tx.send(Job { kind, id, data }).is_err() {
            return Err(self.take_error());
        }
        Ok(true)
    }

    fn take_error(&self) -> Error {
        self.error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| Error::Invalid("the saving pipeline stopped".into()))
    }

    /// Flushes every pack and the final index file. Returns the packs written and the
    /// final counters.
    pub fn finish(mut self) -> Result<(Vec<IndexPack>, SaverTotals)> {
        let packs = self.drain();
        if self.failed.load(Ordering::SeqCst) {
            return Err(self.take_error());
        }
        let totals = SaverTotals {
            blobs_added: self.stats.blobs_added.load(Ordering::SeqCst),
            bytes_added: self.stats.bytes_added.load(Ordering::SeqCst),
            bytes_added_raw: self.stats.bytes_added_raw.load(Ordering::SeqCst),
        };
        Ok((packs, totals))
    }
}

impl BlobSaver {
    /// Closes the queue and waits for every stage in order; returns the packs written.
    fn drain(&mut self) -> Vec<IndexPack> {
        self.job_tx.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(p) = self.packer.take() {
            let _ = p.join();
        }
        for u in self.uploaders.drain(..) {
            let _ = u.join();
        }
        self.indexer
            .take()
            .and_then(|i| i.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for BlobSaver {
    fn drop(&mut self) {
        self.drain();
    }
}

fn packer_loop(
    repo: &Repository,
    rx: Receiver<Sealed>,
    tx: Sender<(Vec<u8>, Id, IndexPack)>,
    pack_size: usize,
    stats: &SaverStats,
) {
    let mut data_pack: Option<PackWriter> = None;
    let mut tree_pack: Option<PackWriter> = None;
    let flush = |w: PackWriter| {
        let (bytes, id, entries) = w.finish(repo.crypto());
        let _ = tx.send((bytes, id, IndexPack { id, blobs: entries }));
    };
    for s in rx {
        stats.blobs_added.fetch_add(1, Ordering::Relaxed);
        stats
            .bytes_added
            .fetch_add(s.sealed.len() as u64, Ordering::Relaxed);
        stats
            .bytes_added_raw
            .fetch_add(s.plain_len as u64, Ordering::Relaxed);
        let slot = match s.kind {
            BlobKind::Data => &mut data_pack,
            BlobKind::Tree => &mut tree_pack,
        };
        let w = slot.get_or_insert_with(|| {
            let cap = match s.kind {
                BlobKind::Data => pack_size + s.sealed.len(),
                BlobKind::Tree => 0,
            };
            PackWriter::new(s.kind, cap)
        });
        w.add(s.id, &s.sealed, s.raw_length);
        if w.len() >= pack_size
            && let Some(w) = slot.take()
        {
            flush(w);
        }
    }
    for w in [data_pack, tree_pack].into_iter().flatten() {
        if !w.is_empty() {
            flush(w);
        }
    }
}

fn indexer_loop(
    repo: &Repository,
    rx: Receiver<IndexPack>,
    record: impl Fn(Error),
) -> Vec<IndexPack> {
    let mut all = Vec::new();
    let mut batch = Vec::new();
    for p in rx {
        all.push(p.clone());
        batch.push(p);
        if batch.len() >= INDEX_EVERY {
            let file = IndexFile {
                packs: std::mem::take(&mut batch),
                supersedes: Vec::new(),
            };
            if let Err(e) = repo.save_index_file(&file) {
                record(e);
            }
        }
    }
    if !batch.is_empty() {
        let file = IndexFile {
            packs: batch,
            supersedes: Vec::new(),
        };
        if let Err(e) = repo.save_index_file(&file) {
            record(e);
        }
    }
    all
}
