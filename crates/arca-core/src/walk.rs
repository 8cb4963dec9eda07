//! Reading snapshots back: walking trees depth first, and reading a file's content as a
//! stream (for `dump`, `diff` and the like).

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::Result;
use crate::format::{Node, NodeKind};
use crate::id::Id;
use crate::index::Index;
use crate::repo::Repository;

/// Visits every node under `tree` in name order; `visit` gets the node's path (below
/// `prefix`) and returns whether to descend into a directory.
pub fn walk_tree(
    repo: &Repository,
    index: &Index,
    tree: &Id,
    prefix: &Path,
    visit: &mut dyn FnMut(&Path, &Node) -> Result<bool>,
) -> Result<()> {
    let t = repo.load_tree(index, tree)?;
    for node in &t.nodes {
        if !node.has_safe_name() {
            continue;
        }
        let path = prefix.join(OsStr::from_bytes(&node.name));
        let descend = visit(&path, node)?;
        if descend
            && node.kind == NodeKind::Dir
            && let Some(sub) = &node.subtree
        {
            walk_tree(repo, index, sub, &path, visit)?;
        }
    }
    Ok(())
}

/// Reads a file's content blob by blob.
pub struct ContentReader<'a> {
    repo: &'a Repository,
    index: &'a Index,
    blobs: std::slice::Iter<'a, Id>,
    current: Vec<u8>,
    pos: usize,
}

impl<'a> ContentReader<'a> {
    pub fn new(repo: &'a Repository, index: &'a Index, node: &'a Node) -> ContentReader<'a> {
        ContentReader {
            repo,
            index,
            blobs: node.content.iter(),
            current: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.current.len() {
            let Some(id) = self.blobs.next() else {
                return Ok(0);
            };
            self.current = self
                .repo
                .read_blob(self.index, id)
                .map_err(std::io::Error::other)?;
            self.pos = 0;
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
