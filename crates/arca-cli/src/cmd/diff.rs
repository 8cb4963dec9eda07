//! `arca diff`: what changed between two snapshots (added, removed, modified,
//! metadata-only). Identical subtrees are skipped by id.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use arca_core::format::{Node, NodeKind, Tree};
use arca_core::index::Index;
use arca_core::{Id, Repository};

use crate::cli::{DiffArgs, GlobalArgs};
use crate::common;
use crate::output::{json_path, safe_path};

#[derive(Default, serde::Serialize)]
struct Counts {
    added: u64,
    removed: u64,
    modified: u64,
    metadata: u64,
}

struct Differ<'a> {
    repo: &'a Repository,
    index: &'a Index,
    json: bool,
    metadata: bool,
    counts: Counts,
    changes: Vec<serde_json::Value>,
}

impl Differ<'_> {
    fn report(&mut self, mark: &str, path: &Path) {
        if self.json {
            self.changes
                .push(serde_json::json!({"change": mark, "path": json_path(path)}));
        } else {
            println!("{mark}  {}", safe_path(path));
        }
    }

    fn all(&mut self, mark: &str, path: &Path, n: &Node) -> Result<()> {
        if mark == "+" {
            self.counts.added += 1;
        } else {
            self.counts.removed += 1;
        }
        self.report(mark, path);
        if let (NodeKind::Dir, Some(t)) = (n.kind, n.subtree) {
            let tree = self.repo.load_tree(self.index, &t)?;
            for c in &tree.nodes {
                self.all(mark, &path.join(OsStr::from_bytes(&c.name)), c)?;
            }
        }
        Ok(())
    }

    fn trees(&mut self, a: Option<&Id>, b: Option<&Id>, path: &Path) -> Result<()> {
        if a == b {
            return Ok(());
        }
        let load = |id: Option<&Id>| -> Result<Tree> {
            Ok(match id {
                Some(i) => self.repo.load_tree(self.index, i)?,
                None => Tree::default(),
            })
        };
        let (ta, tb) = (load(a)?, load(b)?);
        let (mut i, mut j) = (0, 0);
        while i < ta.nodes.len() || j < tb.nodes.len() {
            let order = match (ta.nodes.get(i), tb.nodes.get(j)) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    let n = &ta.nodes[i];
                    self.all("-", &path.join(OsStr::from_bytes(&n.name)), n)?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    let n = &tb.nodes[j];
                    self.all("+", &path.join(OsStr::from_bytes(&n.name)), n)?;
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    let (x, y) = (&ta.nodes[i], &tb.nodes[j]);
                    let p = path.join(OsStr::from_bytes(&x.name));
                    if x.kind != y.kind {
                        self.all("-", &p, x)?;
                        self.all("+", &p, y)?;
                    } else if x.kind == NodeKind::Dir {
                        if meta_differs(x, y) && self.metadata {
                            self.counts.metadata += 1;
                            self.report("U", &p);
                        }
                        self.trees(x.subtree.as_ref(), y.subtree.as_ref(), &p)?;
                    } else if x.content != y.content
                        || x.link_target != y.link_target
                        || x.rdev != y.rdev
                    {
                        self.counts.modified += 1;
                        self.report("M", &p);
                    } else if meta_differs(x, y) {
                        self.counts.metadata += 1;
                        if self.metadata {
                            self.report("U", &p);
                        }
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }
}

fn meta_differs(x: &Node, y: &Node) -> bool {
    x.mode != y.mode
        || x.uid != y.uid
        || x.gid != y.gid
        || x.mtime_ns != y.mtime_ns
        || x.xattrs != y.xattrs
}

pub fn run(g: &GlobalArgs, a: DiffArgs) -> Result<i32> {
    let repo = common::open(g)?;
    let index = common::load_index(&repo)?;
    let snaps = common::all_snapshots(&repo)?;
    let (ida, sa) = common::resolve(&snaps, &a.first, None)?;
    let (idb, sb) = common::resolve(&snaps, &a.second, None)?;
    let mut d = Differ {
        repo: &repo,
        index: &index,
        json: g.json,
        metadata: a.metadata,
        counts: Counts::default(),
        changes: Vec::new(),
    };
    d.trees(Some(&sa.tree), Some(&sb.tree), &PathBuf::from("/"))?;
    if g.json {
        common::print_json(&serde_json::json!({
            "from": ida, "to": idb, "changes": d.changes, "counts": d.counts,
        }))?;
    } else if !g.quiet {
        println!(
            "\n{} added, {} removed, {} modified, {} metadata only",
            d.counts.added, d.counts.removed, d.counts.modified, d.counts.metadata
        );
    }
    Ok(crate::exit::OK)
}
