//! Restore planning over made-up snapshot trees: any names (`..`, `/`, NUL, empty,
//! repeats, unsorted), any kinds, unreadable listings, hard links across directories and
//! any include/exclude patterns. Planning never panics, and every plan keeps the
//! invariants confinement rests on (`Plan::check`: plain, distinct paths in tree order).
#![no_main]

use std::collections::HashMap;
use std::path::Path;

use arbitrary::Arbitrary;
use arca_core::error::{Error, Result};
use arca_core::format::{Node, NodeKind, Tree};
use arca_core::id::Id;
use arca_core::restore::plan::{Filters, TreeLoader, plan};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Entry {
    name: Vec<u8>,
    kind: u8,
    /// Which later tree a directory's listing is (past the last: unreadable).
    subtree: u8,
    /// Files of one group below 4 are hard links of each other.
    group: u8,
}

#[derive(Arbitrary, Debug)]
struct Input {
    trees: Vec<Vec<Entry>>,
    includes: Vec<String>,
    excludes: Vec<String>,
}

struct MadeUp(HashMap<Id, Tree>);

impl TreeLoader for MadeUp {
    fn load_tree(&self, id: &Id) -> Result<Tree> {
        self.0
            .get(id)
            .cloned()
            .ok_or_else(|| Error::Invalid(format!("no tree {id}")))
    }
}

fn tree_id(i: usize) -> Id {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Id(b)
}

const KINDS: [NodeKind; 7] = [
    NodeKind::File,
    NodeKind::Dir,
    NodeKind::Symlink,
    NodeKind::Fifo,
    NodeKind::Socket,
    NodeKind::CharDevice,
    NodeKind::BlockDevice,
];

fuzz_target!(|input: Input| {
    let count = input.trees.len().min(64);
    let mut trees = HashMap::new();
    for (i, entries) in input.trees.into_iter().take(count).enumerate() {
        let nodes = entries
            .into_iter()
            .take(64)
            .map(|e| {
                let mut n = Node::new(e.name, KINDS[usize::from(e.kind) % KINDS.len()]);
                match n.kind {
                    // Only later trees, so the trees form no cycle (as content ids ensure).
                    NodeKind::Dir => n.subtree = Some(tree_id(i + 1 + usize::from(e.subtree))),
                    NodeKind::File if e.group < 4 => {
                        n.nlink = 2;
                        n.inode = u64::from(e.group);
                    }
                    NodeKind::Symlink => n.link_target = Some(b"../../../outside".to_vec()),
                    _ => {}
                }
                n
            })
            .collect();
        trees.insert(tree_id(i), Tree { nodes });
    }
    let Ok(filters) = Filters::new(&input.includes, &input.excludes) else {
        return;
    };
    let mut root = Node::new(Vec::new(), NodeKind::Dir);
    root.subtree = Some(tree_id(0));
    let p = plan(&MadeUp(trees), &root, Path::new("/"), &filters).expect("planning a directory");
    if let Err(e) = p.check() {
        panic!("{e}");
    }
});
