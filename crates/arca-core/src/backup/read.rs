//! Reading one source file: opened without touching its access time, cut into chunks,
//! hashed, and its new blobs handed to the saver; and the node of an entry from its
//! metadata.

use super::*;

/// Opens for reading without updating the access time where the kernel allows it (the
/// owner or root), so a backup does not change what the next backup sees.
pub(super) fn open_noatime(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let resolved = lp(path)?;
    let path = resolved.path();
    match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path)
    {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => File::open(path),
        r => r,
    }
}

pub(super) fn read_file(
    repo: &Repository,
    saver: &BlobSaver,
    job: &FileJob,
    progress: &dyn Progress,
    buf: Vec<u8>,
    fixed_chunk_size: Option<usize>,
) -> (FileResult, Vec<u8>) {
    let mut res = FileResult {
        content: Vec::new(),
        bytes_read: 0,
        error: None,
        vanished: false,
        changed: None,
    };
    progress.file_started(&job.path);
    let file = match open_noatime(&job.path) {
        Ok(f) => f,
        Err(e) => {
            res.vanished = e.kind() == std::io::ErrorKind::NotFound;
            res.error = Some(e.to_string());
            return (res, buf);
        }
    };
    let mut stream = repo.chunker().stream_with_buffer(&file, buf);
    let next_fixed = |size: usize| -> std::io::Result<Option<Vec<u8>>> {
        let mut chunk = Vec::with_capacity(size);
        (&file).take(size as u64).read_to_end(&mut chunk)?;
        Ok((!chunk.is_empty()).then_some(chunk))
    };
    loop {
        if progress.should_stop() {
            res.error = Some("interrupted".into());
            break;
        }
        let next = match fixed_chunk_size {
            Some(size) => next_fixed(size),
            None => stream.next_chunk(),
        };
        match next {
            Ok(Some(chunk)) => {
                res.bytes_read += chunk.len() as u64;
                progress.add_bytes(chunk.len() as u64);
                let id = repo.crypto().blob_id(&chunk);
                if let Err(e) = saver.save(BlobKind::Data, id, chunk) {
                    res.error = Some(e.to_string());
                    break;
                }
                res.content.push(id);
            }
            Ok(None) => break,
            Err(e) => {
                res.error = Some(e.to_string());
                break;
            }
        }
    }
    let buf = stream.into_buffer();
    if res.error.is_none() {
        match file.metadata() {
            Ok(md) => {
                let mtime = md.mtime() * 1_000_000_000 + md.mtime_nsec();
                if md.len() != job.size || mtime != job.mtime_ns || res.bytes_read != job.size {
                    res.changed = Some(format!(
                        "file changed while it was read (size {} -> {}, read {} bytes)",
                        job.size,
                        md.len(),
                        res.bytes_read
                    ));
                }
            }
            Err(e) => res.error = Some(e.to_string()),
        }
    }
    (res, buf)
}

/// [`node_from_metadata`] for paths of any length.
pub(super) fn stat_node(
    path: &Path,
    name: &[u8],
    md: &fs::Metadata,
    owners: &mut OwnerNames,
) -> (Node, Vec<String>) {
    match lp(path) {
        Ok(r) => node_from_metadata(r.path(), name, md, owners),
        Err(_) => node_from_metadata(path, name, md, owners),
    }
}
