//! The parallel part of a restore: blobs are fetched pack by pack (neighbours in one
//! ranged read), opened in place, and written at their offsets into files opened through
//! the confined target, leaving holes where content is zero. A file gets its metadata
//! through its own descriptor as soon as its last blob is written.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::confined::{self, FileAccess};
use crate::format::BlobEntry;
use crate::fsmeta::ApplyOptions;
use crate::id::Id;
use crate::pack::open_blob_in_place;
use crate::repo::{Repository, pack_name};

use super::plain_length;
use super::plan::Plan;
use super::target::Report;

/// Blobs needed from one pack, each with the (file, offset) pairs it is written to.
pub type PackBlobs = Vec<(BlobEntry, Vec<(usize, u64)>)>;

/// Most plaintext bytes one unit of restore work writes from a local repository: a pack of
/// very compressible data (a database's pages) holds hundreds of MiB, and whole packs as
/// units left one thread decompressing the last of them while the others idled.
pub const WORK_PLAIN_BYTES: u64 = 16 << 20;
/// The same from an object store, where each unit is one more request: only packs of very
/// compressible data are split (units of 16 MiB made an S3 restore of ordinary files 4%
/// slower).
pub const WORK_PLAIN_BYTES_REMOTE: u64 = 128 << 20;

/// Splits each pack's blobs (sorted by offset) into units of work of at most `max_plain`
/// bytes of plaintext (one blob at least), in the packs' order.
pub fn split_work(packs: Vec<(Id, PackBlobs)>, max_plain: u64) -> Vec<(Id, PackBlobs)> {
    let mut units = Vec::with_capacity(packs.len());
    for (pack, mut blobs) in packs {
        blobs.sort_by_key(|(e, _)| e.offset);
        let mut unit: PackBlobs = Vec::new();
        let mut plain = 0u64;
        for blob in blobs {
            let size = plain_length(&blob.0);
            if !unit.is_empty() && plain + size > max_plain {
                units.push((pack, std::mem::take(&mut unit)));
                plain = 0;
            }
            plain += size;
            unit.push(blob);
        }
        if !unit.is_empty() {
            units.push((pack, unit));
        }
    }
    units
}

/// Stripes of the per-file write locks.
pub const WRITE_LOCKS: usize = 64;
/// How far behind its newest write a file's restored pages are dropped from the page
/// cache. Each range's writeback starts as it is written; this much later it is done
/// (pages still being written are skipped: only advice), and the range is dropped. A
/// large restore then leaves at most this much of each file in memory instead of
/// filling the page cache: it does not push a server's working set out of memory, and
/// it reuses the same pages instead of taking fresh ones (3 GB written in 1 MiB pieces
/// with 3 GB of other files cached: 4.7 s with the pages kept, 1.1 s dropped behind).
const DROP_BEHIND: u64 = 64 << 20;

/// Largest gap between needed blobs that is read through rather than skipped.
const MAX_GAP: u64 = 1 << 20;

/// The buffers one restoring thread reuses from read to read: the sealed bytes of a range
/// of a pack (decrypted where they lie) and a blob's decompressed plaintext.
#[derive(Default)]
pub struct ReadBuffers {
    range: Vec<u8>,
    plain: Vec<u8>,
}

/// What the restoring threads share: the plan, per-file state, and where to report.
pub struct PackRestore<'a> {
    pub repo: &'a Repository,
    pub plan: &'a Plan,
    /// Files created by this restore (holes may be left in them).
    pub fresh: &'a [bool],
    /// Blob writes still to come per file.
    pub remaining: &'a [AtomicU64],
    /// Files in which a hole was left (their size is set when complete).
    pub holes: &'a [AtomicBool],
    /// Files whose metadata is set.
    pub meta_done: &'a [AtomicBool],
    /// Files that could not be restored whole.
    pub failed: &'a [AtomicBool],
    /// Striped by file index: held while writing to a file.
    pub write_locks: &'a [Mutex<()>],
    pub apply: &'a ApplyOptions,
    pub written: &'a AtomicU64,
    pub report: &'a Report<'a>,
}

impl PackRestore<'_> {
    fn fail(&self, fi: usize, reason: String) {
        self.failed[fi].store(true, Ordering::Relaxed);
        self.report.fail(&self.plan.files[fi].rel, reason);
    }

    /// Fetches the needed blobs of one pack (neighbours in one ranged read) and writes
    /// them to their files; completes the files whose last blob this was.
    pub fn restore_pack(
        &self,
        pack: &Id,
        blobs: &[(BlobEntry, Vec<(usize, u64)>)],
        open_files: &mut HashMap<usize, File>,
        buffers: &mut ReadBuffers,
    ) {
        let repo = self.repo;
        let name = pack_name(pack);
        let mut i = 0;
        while i < blobs.len() {
            // Coalesce neighbouring blobs into one read.
            let start = blobs[i].0.offset as u64;
            let mut end = start + blobs[i].0.length as u64;
            let mut j = i + 1;
            while j < blobs.len()
                && (blobs[j].0.offset as u64) <= end + MAX_GAP
                && end - start < (32 << 20)
            {
                end = end.max(blobs[j].0.offset as u64 + blobs[j].0.length as u64);
                j += 1;
            }
            let read =
                repo.storage()
                    .read_range_into(&name, start, end - start, &mut buffers.range);
            for (entry, targets) in &blobs[i..j] {
                let mut single = Vec::new();
                let sealed = match &read {
                    Ok(()) => {
                        let o = (entry.offset as u64 - start) as usize;
                        Ok(&mut buffers.range[o..o + entry.length as usize])
                    }
                    // The read of several blobs failed (e.g. a truncated pack): each blob that
                    // can still be read on its own is restored.
                    Err(_) if j - i > 1 => repo
                        .storage()
                        .read_range_into(
                            &name,
                            entry.offset as u64,
                            entry.length as u64,
                            &mut single,
                        )
                        .map(|()| &mut single[..])
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let plain = sealed.and_then(|sealed| {
                    open_blob_in_place(repo.crypto(), entry, sealed, &mut buffers.plain)
                        .map_err(|e| format!("{name}: {e}"))
                });
                match plain {
                    Ok(plain) => {
                        let zero = plain.iter().all(|&b| b == 0);
                        for &(fi, off) in targets {
                            self.write_blob(fi, off, plain, zero, open_files);
                        }
                    }
                    Err(e) => {
                        for &(fi, _) in targets {
                            self.fail(fi, format!("cannot restore blob {}: {e}", entry.id));
                        }
                    }
                }
            }
            i = j;
        }
    }

    /// Writes one blob's plaintext at `off` of file `fi`, opening the file (through the
    /// confined target) when this thread has not yet; completes the file after its last.
    fn write_blob(
        &self,
        fi: usize,
        off: u64,
        plain: &[u8],
        zero: bool,
        open_files: &mut HashMap<usize, File>,
    ) {
        let (fresh, holes) = (self.fresh[fi], &self.holes[fi]);
        self.report.progress.add_bytes(plain.len() as u64);
        let file = match open_files.entry(fi) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let access = if fresh {
                    FileAccess::WriteCreate
                } else {
                    FileAccess::ReadWrite
                };
                match self
                    .report
                    .target
                    .open_file(&self.plan.files[fi].rel, access)
                {
                    Ok(f) => v.insert(f),
                    Err(e) => {
                        self.fail(fi, format!("open for writing: {e}"));
                        return;
                    }
                }
            }
        };
        if zero && fresh {
            // Leave a hole; the size is set when the file is complete.
            holes.store(true, Ordering::Relaxed);
        } else {
            // One writer per file at a time: the file system serialises writes to one
            // file anyway (ext4 holds the inode's lock for the copy), and a second writer
            // would spin on that lock in the kernel, burning the core another thread
            // could decompress on.
            let _writing = self.write_locks[fi % WRITE_LOCKS]
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let r = if fresh {
                write_sparse(file, plain, off, holes)
            } else {
                file.write_all_at(plain, off)
            };
            if let Err(e) = r {
                self.fail(fi, format!("write: {e}"));
                return;
            }
            // Start writing this range to disk now (DONTNEED on dirty pages starts their
            // writeback and drops nothing yet): the disk works while later blobs are
            // decrypted, and a final sync finds little left (a synced database restore
            // 15-25% faster on disk). Only advice: a failure changes nothing.
            let _ = nix::fcntl::posix_fadvise(
                &*file,
                off as i64,
                plain.len() as i64,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
            );
            // And drop the range written DROP_BEHIND earlier, on disk by now.
            if off >= DROP_BEHIND {
                let _ = nix::fcntl::posix_fadvise(
                    &*file,
                    (off - DROP_BEHIND) as i64,
                    plain.len() as i64,
                    nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
                );
            }
            self.written
                .fetch_add(plain.len() as u64, Ordering::Relaxed);
        }
        if self.remaining[fi].fetch_sub(1, Ordering::AcqRel) == 1 {
            self.complete(fi, open_files);
        }
    }

    /// The last blob of file `fi` is written: sets its size (after a trailing hole) and
    /// its metadata, through this thread's descriptor when it has one.
    fn complete(&self, fi: usize, open_files: &mut HashMap<usize, File>) {
        let f = &self.plan.files[fi];
        let file = open_files.remove(&fi);
        let sized = match &file {
            Some(file) if self.holes[fi].load(Ordering::Relaxed) => file.set_len(f.node.size),
            _ => Ok(()),
        };
        let shown = self.report.target.display(&f.rel);
        if let Err(e) = sized {
            self.fail(fi, format!("set size: {e}"));
        } else if self.failed[fi].load(Ordering::Relaxed) {
            // Its metadata would claim a complete file.
        } else {
            let applied = match &file {
                Some(file) => confined::apply_to_file(file, &shown, &f.node, self.apply),
                None => self
                    .report
                    .target
                    .apply_metadata(&f.rel, &f.node, self.apply),
            };
            match applied {
                Ok(()) => self.meta_done[fi].store(true, Ordering::Relaxed),
                Err(e) => self.fail(fi, e.to_string()),
            }
        }
        self.report.progress.add_files(1);
    }
}

/// Writes `data` at `off`, leaving holes for runs of zero pages (sparse files stay
/// sparse); marks `hole` when something was skipped.
fn write_sparse(file: &File, data: &[u8], off: u64, hole: &AtomicBool) -> std::io::Result<()> {
    const PAGE: usize = 4096;
    let zero_page = |p: &[u8]| p.len() == PAGE && p.iter().all(|&b| b == 0);
    let mut start = 0;
    while start < data.len() {
        // Skip zero pages.
        let mut i = start;
        while i < data.len() && zero_page(&data[i..(i + PAGE).min(data.len())]) {
            i += PAGE;
        }
        if i > start {
            hole.store(true, Ordering::Relaxed);
        }
        // Write up to the next zero page.
        let mut j = i;
        while j < data.len() && !zero_page(&data[j..(j + PAGE).min(data.len())]) {
            j += PAGE;
        }
        let j = j.min(data.len());
        if j > i {
            file.write_all_at(&data[i..j], off + i as u64)?;
        }
        start = j;
    }
    Ok(())
}
