//! The tree builder: consumes the walker's events in order, waits for each file's content
//! list, and stores one tree blob per directory.

use super::*;

pub(super) type Built = (Id, SnapshotSummary, Vec<EntryError>);

pub(super) fn build_trees(
    repo: &Repository,
    saver: &BlobSaver,
    events: Receiver<Event>,
    progress: &dyn Progress,
    changes_expected: bool,
) -> Result<Built> {
    let mut stack: Vec<Vec<Node>> = Vec::new();
    let mut summary = SnapshotSummary::default();
    let mut errors = Vec::new();
    let mut root = None;
    let store = |nodes: Vec<Node>| -> Result<Id> {
        let tree = Tree { nodes };
        let bytes = encode_tree(&tree);
        let id = repo.crypto().blob_id(&bytes);
        saver.save(BlobKind::Tree, id, bytes)?;
        Ok(id)
    };
    for ev in events {
        match ev {
            Event::Enter => stack.push(Vec::new()),
            Event::Entry {
                mut node,
                pending,
                parent_content,
                path,
            } => {
                if node.kind == NodeKind::File {
                    if let Pending::Wait(rx) = pending {
                        let r = rx.recv().map_err(|_| {
                            Error::Invalid("a file reader stopped unexpectedly".into())
                        })?;
                        summary.bytes_read += r.bytes_read;
                        if let Some(err) = r.error {
                            if err == "interrupted" {
                                return Err(Error::Interrupted);
                            }
                            if changes_expected && r.vanished {
                                continue;
                            }
                            progress.warning(&path, &err);
                            errors.push(EntryError {
                                path: path.to_string_lossy().into_owned(),
                                reason: err,
                            });
                            continue;
                        }
                        if let Some(c) = r.changed {
                            if !changes_expected {
                                progress.warning(&path, &c);
                                errors.push(EntryError {
                                    path: path.to_string_lossy().into_owned(),
                                    reason: c,
                                });
                            }
                            node.size = r.bytes_read;
                        }
                        node.content = r.content;
                        match parent_content {
                            None => summary.files_new += 1,
                            Some(pc) if pc == node.content => summary.files_unmodified += 1,
                            Some(_) => summary.files_changed += 1,
                        }
                    } else {
                        summary.files_unmodified += 1;
                    }
                    summary.total_bytes += node.size;
                } else {
                    summary.other_entries += 1;
                }
                progress.add_files(1);
                if let Some(top) = stack.last_mut() {
                    top.push(node);
                }
            }
            Event::Leave(mut node) => {
                let mut nodes = stack.pop().unwrap_or_default();
                nodes.sort_by(|a, b| a.name.cmp(&b.name));
                node.subtree = Some(store(nodes)?);
                summary.dirs += 1;
                if let Some(top) = stack.last_mut() {
                    top.push(node);
                }
            }
            Event::Error(e) => errors.push(e),
            Event::FilesRemoved(n) => summary.files_removed += n,
        }
    }
    if let Some(mut nodes) = stack.pop() {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        root = Some(store(nodes)?);
    }
    let root = root.ok_or_else(|| Error::Invalid("the walk ended early".into()))?;
    Ok((root, summary, errors))
}
