//! Comparing a restored tree with its snapshot (kinds, permission bits, owners, content)
//! and the content measures the security step uses (entropy, substring search).

use super::*;

/// Compares the metadata of a restored entry with its snapshot node: kind, permission
/// bits (not for symlinks), and owner and group when `check_owner`. One line per
/// difference.
pub fn compare_metadata(
    rel: &str,
    node: &Node,
    md: &fs::Metadata,
    check_owner: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let ft = md.file_type();
    let kind_ok = match node.kind {
        NodeKind::File => ft.is_file(),
        NodeKind::Dir => ft.is_dir(),
        NodeKind::Symlink => ft.is_symlink(),
        NodeKind::Fifo => {
            use std::os::unix::fs::FileTypeExt;
            ft.is_fifo()
        }
        NodeKind::Socket => {
            use std::os::unix::fs::FileTypeExt;
            ft.is_socket()
        }
        NodeKind::CharDevice => {
            use std::os::unix::fs::FileTypeExt;
            ft.is_char_device()
        }
        NodeKind::BlockDevice => {
            use std::os::unix::fs::FileTypeExt;
            ft.is_block_device()
        }
    };
    if !kind_ok {
        out.push(format!(
            "{rel}: is not a {:?} as in the snapshot",
            node.kind
        ));
        return out;
    }
    if node.kind != NodeKind::Symlink && md.mode() & 0o7777 != node.mode & 0o7777 {
        out.push(format!(
            "{rel}: mode {:04o}, the snapshot has {:04o}",
            md.mode() & 0o7777,
            node.mode & 0o7777
        ));
    }
    if check_owner {
        if md.uid() != node.uid {
            out.push(format!(
                "{rel}: owner uid {}, the snapshot has {}",
                md.uid(),
                node.uid
            ));
        }
        if md.gid() != node.gid {
            out.push(format!(
                "{rel}: group gid {}, the snapshot has {}",
                md.gid(),
                node.gid
            ));
        }
    }
    out
}

/// Walks the snapshot's tree beside the restored one; every difference of kind, mode and
/// (when `check_owner`) ownership, and every entry that is missing or not in the
/// snapshot, is one line.
pub fn compare_with_snapshot(
    repo: &Repository,
    index: &Index,
    tree: &Id,
    target: &Path,
    check_owner: bool,
) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut dropped = 0usize;
    compare_dir(
        repo,
        index,
        tree,
        target,
        "",
        check_owner,
        &mut diffs,
        &mut dropped,
    );
    if dropped > 0 {
        diffs.push(format!("... and {dropped} more differences"));
    }
    diffs
}

#[allow(clippy::too_many_arguments)]
pub(super) fn compare_dir(
    repo: &Repository,
    index: &Index,
    tree: &Id,
    dir: &Path,
    rel: &str,
    check_owner: bool,
    diffs: &mut Vec<String>,
    dropped: &mut usize,
) {
    let tree = match repo.load_tree(index, tree) {
        Ok(t) => t,
        Err(e) => {
            push_bounded(
                diffs,
                dropped,
                format!("{rel}/: cannot read the snapshot's listing: {e}"),
            );
            return;
        }
    };
    let mut names = HashSet::new();
    for node in &tree.nodes {
        if !node.has_safe_name() {
            continue;
        }
        names.insert(node.name.clone());
        let name = OsStr::from_bytes(&node.name);
        let path = dir.join(name);
        let r = format!("{rel}/{}", name.to_string_lossy());
        let md = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                push_bounded(
                    diffs,
                    dropped,
                    format!("{r}: missing from the restore: {e}"),
                );
                continue;
            }
        };
        for d in compare_metadata(&r, node, &md, check_owner) {
            push_bounded(diffs, dropped, d);
        }
        if node.kind == NodeKind::Dir
            && md.is_dir()
            && let Some(sub) = node.subtree
        {
            compare_dir(repo, index, &sub, &path, &r, check_owner, diffs, dropped);
        }
    }
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if !names.contains(e.file_name().as_bytes()) {
                push_bounded(
                    diffs,
                    dropped,
                    format!(
                        "{rel}/{}: in the restore but not in the snapshot",
                        e.file_name().to_string_lossy()
                    ),
                );
            }
        }
    }
}

/// Shannon entropy of `data` in bits per byte (0 to 8).
pub fn entropy(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0u64; 256];
    for &b in data {
        counts[b as usize] += 1;
    }
    let n = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Lowest entropy (bits per byte) accepted for a pack of encrypted data of at least
/// [`ENTROPY_MIN_BYTES`]; random data of 1 KiB already measures about 7.8.
pub const ENTROPY_THRESHOLD: f64 = 7.5;
pub const ENTROPY_MIN_BYTES: usize = 1024;

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memchr::memmem::find(haystack, needle).is_some()
}
