//! The walker: lists the source directories in name order, compares each entry with the
//! parent snapshot's tree, and emits events for the tree builder and jobs for the file
//! readers.

use super::*;

pub(super) struct Walker<'a> {
    pub(super) repo: &'a Arc<Repository>,
    pub(super) index: &'a Index,
    pub(super) opts: &'a BackupOptions,
    pub(super) excludes: &'a Excludes,
    pub(super) events: Sender<Event>,
    pub(super) jobs: Sender<FileJob>,
    pub(super) owners: OwnerNames,
    pub(super) progress: &'a dyn Progress,
    pub(super) root_dev: u64,
    /// (device, inode) and path of each directory being walked, outermost first: a
    /// directory that is one of them (a bind mount inside itself) is a loop.
    pub(super) ancestors: Vec<(u64, u64, PathBuf)>,
    pub(super) reuse_mtime_before_ns: Option<i64>,
    pub(super) changes_expected: bool,
    pub(super) follow_symlinks: &'a [PathBuf],
}

#[derive(Default)]
pub(super) struct Trie {
    pub(super) children: BTreeMap<OsString, Trie>,
    pub(super) target: bool,
}

pub(super) fn find_node<'t>(tree: Option<&'t Tree>, name: &[u8]) -> Option<&'t Node> {
    let t = tree?;
    t.nodes
        .binary_search_by(|n| n.name.as_slice().cmp(name))
        .ok()
        .map(|i| &t.nodes[i])
}

impl Walker<'_> {
    fn send(&self, e: Event) -> Result<()> {
        self.events
            .send(e)
            .map_err(|_| Error::Invalid("tree builder stopped".into()))
    }

    fn error(&self, path: &Path, reason: impl std::fmt::Display) -> Result<()> {
        let reason = reason.to_string();
        self.progress.warning(path, &reason);
        self.send(Event::Error(EntryError {
            path: path.to_string_lossy().into_owned(),
            reason,
        }))
    }

    pub(super) fn walk_roots(
        &mut self,
        paths: &[PathBuf],
        parent_root: Option<&Tree>,
    ) -> Result<()> {
        let mut trie = Trie::default();
        for p in paths {
            let mut t = &mut trie;
            for c in p.components() {
                if let Component::Normal(n) = c {
                    t = t.children.entry(n.to_os_string()).or_default();
                }
            }
            t.target = true;
        }
        self.send(Event::Enter)?;
        self.visit_trie(Path::new("/"), &trie, parent_root)
    }

    fn visit_trie(&mut self, dir: &Path, trie: &Trie, parent: Option<&Tree>) -> Result<()> {
        for (name, child) in &trie.children {
            let path = dir.join(name);
            let md = match lp(&path).and_then(|r| fs::symlink_metadata(r.path())) {
                Ok(m) => m,
                Err(e) => {
                    self.error(&path, e)?;
                    continue;
                }
            };
            let pnode = find_node(parent, name.as_bytes());
            if child.target {
                self.root_dev = md.dev();
                self.walk(&path, name.as_bytes(), md, pnode)?;
            } else {
                let (mut node, _) = stat_node(&path, name.as_bytes(), &md, &mut self.owners);
                node.atime_ns = node.mtime_ns;
                let ptree = self.parent_subtree(pnode)?;
                self.send(Event::Enter)?;
                self.visit_trie(&path, child, ptree.as_ref())?;
                self.send(Event::Leave(node))?;
            }
        }
        Ok(())
    }

    fn parent_subtree(&self, pnode: Option<&Node>) -> Result<Option<Tree>> {
        match pnode {
            Some(n) if n.kind == NodeKind::Dir => match &n.subtree {
                Some(id) => match self.repo.load_tree(self.index, id) {
                    Ok(t) => Ok(Some(t)),
                    // A damaged parent only costs re-reading: the new snapshot is complete.
                    Err(_) => Ok(None),
                },
                None => Ok(None),
            },
            _ => Ok(None),
        }
    }

    fn walk(
        &mut self,
        path: &Path,
        name: &[u8],
        md: fs::Metadata,
        pnode: Option<&Node>,
    ) -> Result<()> {
        if self.progress.should_stop() {
            return Err(Error::Interrupted);
        }
        let (mut node, warnings) = stat_node(path, name, &md, &mut self.owners);
        if node.kind == NodeKind::Dir {
            // Listing a directory updates its atime: recording it would make every
            // directory look changed in the next backup. Directories restore atime = mtime.
            node.atime_ns = node.mtime_ns;
        }
        for w in warnings {
            self.error(path, w)?;
        }
        match node.kind {
            NodeKind::Dir => {
                let ptree = self.parent_subtree(pnode)?;
                self.send(Event::Enter)?;
                let cross = self.opts.one_file_system && md.dev() != self.root_dev;
                let identity = (md.dev(), md.ino());
                let looped = self
                    .ancestors
                    .iter()
                    .find(|(dev, ino, _)| (*dev, *ino) == identity)
                    .map(|(_, _, ancestor)| ancestor.clone());
                if let Some(ancestor) = &looped {
                    self.error(
                        path,
                        format!(
                            "directory loop: this is {} again (a bind mount inside itself?); \
                             stored empty",
                            ancestor.display()
                        ),
                    )?;
                }
                let skip = cross
                    || looped.is_some()
                    || self.excludes.if_present.iter().any(|n| {
                        lp(&path.join(n))
                            .and_then(|r| fs::symlink_metadata(r.path()))
                            .is_ok()
                    });
                if !skip {
                    self.ancestors
                        .push((identity.0, identity.1, path.to_path_buf()));
                    let walked = self.walk_dir(path, ptree.as_ref());
                    self.ancestors.pop();
                    walked?;
                }
                self.send(Event::Leave(node))?;
            }
            NodeKind::File => {
                let parent_content = pnode
                    .filter(|p| p.kind == NodeKind::File)
                    .map(|p| p.content.clone());
                let reuse = self.opts.backup_type != BackupType::Full
                    && !self.opts.checksum
                    && pnode.is_some_and(|p| {
                        unchanged_since(p, &md)
                            && self.reuse_mtime_before_ns.is_none_or(|t| p.mtime_ns < t)
                            && p.content.iter().all(|b| self.index.contains(b))
                    });
                if reuse {
                    node.content = parent_content.clone().unwrap_or_default();
                    self.send(Event::Entry {
                        node,
                        pending: Pending::Ready,
                        parent_content,
                        path: PathBuf::new(),
                    })?;
                } else {
                    let (tx, rx) = bounded(1);
                    self.jobs
                        .send(FileJob {
                            path: path.to_path_buf(),
                            size: node.size,
                            mtime_ns: node.mtime_ns,
                            reply: tx,
                        })
                        .map_err(|_| Error::Invalid("file readers stopped".into()))?;
                    self.send(Event::Entry {
                        node,
                        pending: Pending::Wait(rx),
                        parent_content,
                        path: path.to_path_buf(),
                    })?;
                }
            }
            _ => self.send(Event::Entry {
                node,
                pending: Pending::Ready,
                parent_content: None,
                path: PathBuf::new(),
            })?,
        }
        Ok(())
    }

    fn walk_dir(&mut self, dir: &Path, ptree: Option<&Tree>) -> Result<()> {
        let rd = match lp(dir).and_then(|r| fs::read_dir(r.path())) {
            Ok(r) => r,
            Err(e) if self.changes_expected && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(());
            }
            Err(e) => return self.error(dir, e),
        };
        let mut names: Vec<OsString> = Vec::new();
        for entry in rd {
            match entry {
                Ok(e) => names.push(e.file_name()),
                Err(e) => self.error(dir, e)?,
            }
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        if let Some(t) = ptree {
            let removed = t
                .nodes
                .iter()
                .filter(|n| {
                    n.kind == NodeKind::File
                        && names
                            .binary_search_by(|x| x.as_bytes().cmp(&n.name))
                            .is_err()
                })
                .count();
            if removed > 0 {
                self.send(Event::FilesRemoved(removed as u64))?;
            }
        }
        for name in names {
            let path = dir.join(&name);
            if self.excludes.is_excluded(&path) {
                continue;
            }
            let md = match lp(&path).and_then(|r| {
                let md = fs::symlink_metadata(r.path())?;
                if md.file_type().is_symlink() && self.follow_symlinks.contains(&path) {
                    fs::metadata(r.path())
                } else {
                    Ok(md)
                }
            }) {
                Ok(m) => m,
                Err(e) => {
                    // Vanished between listing and stat: not an error worth failing for.
                    if e.kind() != std::io::ErrorKind::NotFound {
                        self.error(&path, e)?;
                    }
                    continue;
                }
            };
            let pnode = find_node(ptree, name.as_bytes());
            self.walk(&path, &OsString::into_vec(name.clone()), md, pnode)?;
        }
        Ok(())
    }
}
