//! Restore planning: from a snapshot's trees to the list of directories, files and other
//! entries to restore, each with a plain path relative to the target.
//!
//! The plan is built only from the trees, never from the target, through [`TreeLoader`]
//! (a repository and its index, or trees made up by a test or fuzz target). Names that
//! could leave the target (`..`, `/`, NUL, empty) and names a directory holds twice are
//! refused here, so every path in a plan is a chain of distinct plain components.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};
use crate::format::{EntryError, Node, NodeKind, Tree};
use crate::id::Id;
use crate::index::Index;
use crate::repo::Repository;

/// Where a restore plan gets trees from (shared with the planning thread).
pub trait TreeLoader: Sync {
    fn load_tree(&self, id: &Id) -> Result<Tree>;
}

impl TreeLoader for (&Repository, &Index) {
    fn load_tree(&self, id: &Id) -> Result<Tree> {
        self.0.load_tree(self.1, id)
    }
}

/// A directory to restore. `parent` indexes [`Plan::dirs`]; `None` is the target.
#[derive(Debug, Clone)]
pub struct PlanDir {
    pub rel: PathBuf,
    pub node: Node,
    pub parent: Option<usize>,
}

/// A regular file to restore.
#[derive(Debug, Clone)]
pub struct PlanFile {
    pub rel: PathBuf,
    pub node: Node,
    pub parent: Option<usize>,
    /// Index of the file this one is a hardlink of.
    pub link_to: Option<usize>,
}

/// A symlink, fifo, socket or device to restore.
#[derive(Debug, Clone)]
pub struct PlanOther {
    pub rel: PathBuf,
    pub node: Node,
    pub parent: Option<usize>,
}

/// What a restore will lay down, in tree order (parents before children).
#[derive(Debug, Default)]
pub struct Plan {
    pub dirs: Vec<PlanDir>,
    pub files: Vec<PlanFile>,
    pub others: Vec<PlanOther>,
    /// Directories whose whole content is restored (for --delete): the directory
    /// (`None`: the target) and its names, sorted.
    pub complete_dirs: Vec<(Option<usize>, Vec<Vec<u8>>)>,
    /// Entries of the snapshot that cannot be restored (unsafe or repeated names,
    /// unreadable listings); they make the restore incomplete.
    pub errors: Vec<EntryError>,
}

impl Plan {
    /// The relative path of directory `dir` (`None`: the target, an empty path).
    pub fn dir_rel(&self, dir: Option<usize>) -> &Path {
        dir.map_or(Path::new(""), |d| &self.dirs[d].rel)
    }
}

/// Include and exclude patterns, matched against paths inside the snapshot.
pub struct Filters {
    includes: Option<GlobSet>,
    excludes: Option<GlobSet>,
}

impl Filters {
    pub fn new(includes: &[String], excludes: &[String]) -> Result<Filters> {
        Ok(Filters {
            includes: globset(includes)?,
            excludes: globset(excludes)?,
        })
    }
}

fn globset(patterns: &[String]) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let full = if p.starts_with('/') {
            p.clone()
        } else {
            format!("**/{p}")
        };
        for g in [full.clone(), format!("{}/**", full.trim_end_matches('/'))] {
            b.add(
                GlobBuilder::new(&g)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| Error::Invalid(format!("bad pattern {p:?}: {e}")))?,
            );
        }
    }
    Ok(Some(b.build().map_err(|e| {
        Error::Invalid(format!("bad patterns: {e}"))
    })?))
}

/// Deepest nesting of directories a plan follows. Real trees stay far below it; a hostile
/// snapshot nested deeper (or, through a damaged or forged listing, in a cycle) gets an
/// error for the directory where the limit is reached instead of exhausting the stack.
pub const MAX_DEPTH: usize = 2048;

/// Stack of the planning thread: room for [`MAX_DEPTH`] levels of the recursive walk
/// even in a debug build (a level takes a few KiB there); pages never touched cost nothing.
const PLANNER_STACK: usize = 64 << 20;

/// Plans the restore of `node` (a directory's content, or one entry) found at
/// `snapshot_prefix` inside the snapshot.
pub fn plan(
    trees: &dyn TreeLoader,
    node: &Node,
    snapshot_prefix: &Path,
    filters: &Filters,
) -> Result<Plan> {
    let mut planner = Planner {
        trees,
        filters,
        plan: Plan::default(),
        links: HashMap::new(),
        depth: 0,
    };
    if node.kind == NodeKind::Dir {
        // The walk recurses once per level: it runs on a stack sized for the limit, not on
        // whatever thread called (a daemon worker's is 2 MiB).
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("restore-plan".into())
                .stack_size(PLANNER_STACK)
                .spawn_scoped(scope, || planner.dir(node, snapshot_prefix, None, false))
                .map_err(|e| Error::Invalid(format!("cannot start the planning thread: {e}")))?
                .join()
                .map_err(|_| Error::Invalid("the planning thread panicked".into()))?
        })?;
    } else if node.has_safe_name() {
        let rel = PathBuf::from(OsStr::from_bytes(&node.name));
        planner.entry(node.clone(), rel, None);
    } else {
        return Err(Error::Invalid(format!(
            "refusing unsafe name {:?} in the snapshot",
            node.name_lossy()
        )));
    }
    Ok(planner.plan)
}

struct Planner<'a> {
    trees: &'a dyn TreeLoader,
    filters: &'a Filters,
    plan: Plan,
    /// (device, inode) of files seen with more than one link -> their index.
    links: HashMap<(u64, u64), usize>,
    /// How many directories deep the planner is.
    depth: usize,
}

impl Planner<'_> {
    fn refuse(&mut self, dir: Option<usize>, reason: String) {
        self.plan.errors.push(EntryError {
            path: self.plan.dir_rel(dir).to_string_lossy().into_owned(),
            reason,
        });
    }

    /// Plans the content of directory `node` into `dir`; whether anything was planned.
    fn dir(
        &mut self,
        node: &Node,
        snap_path: &Path,
        dir: Option<usize>,
        parent_included: bool,
    ) -> Result<bool> {
        let tree = match node.subtree {
            Some(id) => match self.trees.load_tree(&id) {
                Ok(t) => t,
                Err(e) => {
                    self.refuse(dir, format!("cannot read directory listing: {e}"));
                    return Ok(false);
                }
            },
            None => Tree::default(),
        };
        let sorted = tree.nodes.windows(2).all(|w| w[0].name < w[1].name);
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut any = false;
        let mut complete = true;
        let mut names = Vec::new();
        for child in tree.nodes {
            if !child.has_safe_name() {
                let reason = format!(
                    "refusing unsafe name {:?} in the snapshot",
                    child.name_lossy()
                );
                self.refuse(dir, reason);
                complete = false;
                continue;
            }
            if !sorted && !seen.insert(child.name.clone()) {
                let reason = format!("refusing a second entry named {:?}", child.name_lossy());
                self.refuse(dir, reason);
                continue;
            }
            let name = OsStr::from_bytes(&child.name);
            let sp = snap_path.join(name);
            if self
                .filters
                .excludes
                .as_ref()
                .is_some_and(|g| g.is_match(&sp))
            {
                complete = false;
                continue;
            }
            let included = parent_included
                || self
                    .filters
                    .includes
                    .as_ref()
                    .is_none_or(|g| g.is_match(&sp));
            let rel = self.plan.dir_rel(dir).join(name);
            if child.kind == NodeKind::Dir {
                if self.depth >= MAX_DEPTH {
                    let reason = format!(
                        "refusing {:?}: directories nested deeper than {MAX_DEPTH} levels",
                        child.name_lossy()
                    );
                    self.refuse(dir, reason);
                    complete = false;
                    continue;
                }
                let index = self.plan.dirs.len();
                let complete_before = self.plan.complete_dirs.len();
                self.plan.dirs.push(PlanDir {
                    rel,
                    node: child.clone(),
                    parent: dir,
                });
                self.depth += 1;
                let sub = self.dir(&child, &sp, Some(index), included);
                self.depth -= 1;
                let sub = sub?;
                if !(sub || included) {
                    // Nothing below was planned, so this directory is the last one, and
                    // the complete listings found below it (of directories now dropped)
                    // go with it: an index left there would name a later directory.
                    self.plan.dirs.truncate(index);
                    self.plan.complete_dirs.truncate(complete_before);
                    complete = false;
                    continue;
                }
                any = true;
            } else if included {
                self.entry(child.clone(), rel, dir);
                any = true;
            } else {
                complete = false;
                continue;
            }
            names.push(child.name);
        }
        if complete {
            names.sort();
            self.plan.complete_dirs.push((dir, names));
        }
        Ok(any)
    }

    fn entry(&mut self, node: Node, rel: PathBuf, parent: Option<usize>) {
        match node.kind {
            NodeKind::File => {
                let mut link_to = None;
                if node.nlink > 1 {
                    let key = (node.dev, node.inode);
                    match self.links.get(&key) {
                        Some(&first) => link_to = Some(first),
                        None => {
                            self.links.insert(key, self.plan.files.len());
                        }
                    }
                }
                self.plan.files.push(PlanFile {
                    rel,
                    node,
                    parent,
                    link_to,
                });
            }
            NodeKind::Dir => self.plan.dirs.push(PlanDir { rel, node, parent }),
            _ => self.plan.others.push(PlanOther { rel, node, parent }),
        }
    }
}
