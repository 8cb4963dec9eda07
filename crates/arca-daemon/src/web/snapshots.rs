//! Snapshots of a repository on the dashboard: the list, a directory browser, and the
//! download of a single file, streamed blob by blob (the server holds one blob and a few
//! chunks in flight, whatever the file's size). Repositories are opened on tokio's
//! blocking pool and kept open for a minute, so browsing does not derive the key at every
//! click.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arca_core::Repository;
use arca_core::format::{Node, NodeKind, Snapshot};
use arca_core::index::Index;
use arca_core::walk::ContentReader;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

use super::auth::Authed;
use super::html::{self, escape, url_component, url_path};
use super::{App, Shared, WebError, blocking};

/// How long an opened repository is reused.
const KEEP_OPEN: Duration = Duration::from_secs(60);
/// Size of the chunks a download is sent in, and how many may wait to be sent.
const CHUNK: usize = 256 * 1024;
const CHUNKS_IN_FLIGHT: usize = 4;

type Opened = (Arc<Repository>, Arc<Index>);

/// Repositories opened for browsing, by configured name.
#[derive(Default)]
pub struct OpenRepositories {
    open: Mutex<BTreeMap<String, (Instant, Opened)>>,
}

impl OpenRepositories {
    /// The repository `name` with its index (blocking: may open it).
    fn get(&self, app: &App, name: &str) -> Result<Opened, WebError> {
        {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            open.retain(|_, (at, _)| at.elapsed() < KEEP_OPEN);
            if let Some((_, o)) = open.get(name) {
                return Ok(o.clone());
            }
        }
        let config = app.state.config();
        let repo_config = config.repositories.get(name).ok_or_else(|| {
            WebError::NotFound(format!("no repository {name:?} in the configuration"))
        })?;
        let repo = crate::runner::open_repository(repo_config, None)
            .map_err(|e| WebError::Internal(e.to_string()))?;
        let index = repo.load_index().map_err(|e| {
            WebError::Internal(format!("repository {name}: loading the index: {e}"))
        })?;
        let opened = (repo, Arc::new(index));
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), (Instant::now(), opened.clone()));
        Ok(opened)
    }
}

fn snapshots_of(repo: &Repository, name: &str) -> Result<Vec<(arca_core::Id, Snapshot)>, WebError> {
    repo.list_snapshots()
        .map(|(good, _)| good)
        .map_err(|e| WebError::Internal(format!("repository {name}: listing snapshots: {e}")))
}

fn resolve(
    repo: &Repository,
    name: &str,
    reference: &str,
) -> Result<(arca_core::Id, Snapshot), WebError> {
    let snaps = snapshots_of(repo, name)?;
    arca_core::repo::resolve_in(&snaps, reference)
        .map_err(|e| WebError::NotFound(format!("repository {name}: snapshot {reference}: {e}")))
}

fn list_html(app: &App, authed: &Authed, name: &str) -> Result<String, WebError> {
    let (repo, _) = app.browse.get(app, name)?;
    let mut snaps = snapshots_of(&repo, name)?;
    snaps.reverse();
    let mut body = format!(
        "<h1>Snapshots of {}</h1><p>{} snapshots, newest first.</p>\
         <table id=\"snapshots\"><thead><tr><th>ID</th><th>Time</th><th>Host</th><th>Tags</th>\
         <th>Paths</th><th>Type</th><th>Size</th><th>Problems</th></tr></thead><tbody>",
        escape(name),
        snaps.len()
    );
    for (id, s) in &snaps {
        let id_hex = id.to_string();
        let _ = write!(
            body,
            "<tr><td><a href=\"/repositories/{}/snapshots/{}/browse?path=/\"><code>{}</code></a>\
             </td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td>{}</td></tr>",
            url_component(name),
            url_component(&id_hex),
            escape(&id.short()),
            html::time(s.time),
            escape(&s.host),
            escape(&s.tags.join(", ")),
            escape(&s.paths.join(", ")),
            escape(
                &serde_json::to_value(s.backup_type)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            ),
            html::bytes(s.summary.total_bytes),
            if s.errors.is_empty() {
                String::new()
            } else {
                format!(
                    "<span class=\"warn\">{} unreadable entries</span>",
                    s.errors.len()
                )
            }
        );
    }
    body.push_str("</tbody></table>");
    Ok(html::page_with_nav(
        &format!("Snapshots of {name}"),
        &body,
        &super::auth::logout_button(authed),
    ))
}

pub async fn list(
    State(app): State<Shared>,
    axum::Extension(authed): axum::Extension<Authed>,
    Path(name): Path<String>,
) -> Result<Html<String>, WebError> {
    blocking(move || list_html(&app, &authed, &name))
        .await
        .map(Html)
}

#[derive(serde::Deserialize, Default)]
pub struct PathQuery {
    path: Option<String>,
}

/// `/` joined with the path asked for (relative components dropped by find_path).
fn snapshot_path(q: &PathQuery) -> PathBuf {
    PathBuf::from("/").join(q.path.as_deref().unwrap_or("").trim_start_matches('/'))
}

fn kind_word(k: NodeKind) -> &'static str {
    match k {
        NodeKind::File => "file",
        NodeKind::Dir => "dir",
        NodeKind::Symlink => "symlink",
        NodeKind::Fifo => "fifo",
        NodeKind::Socket => "socket",
        NodeKind::CharDevice => "char device",
        NodeKind::BlockDevice => "block device",
    }
}

fn mtime(n: &Node) -> String {
    jiff::Timestamp::from_nanosecond(n.mtime_ns as i128)
        .map(html::time)
        .unwrap_or_default()
}

fn browse_html(
    app: &App,
    authed: &Authed,
    name: &str,
    id: &str,
    path: PathBuf,
) -> Result<String, WebError> {
    let (repo, index) = app.browse.get(app, name)?;
    let (snap_id, snap) = resolve(&repo, name, id)?;
    let node = arca_core::restore::find_path(&repo, &index, &snap.tree, &path)
        .map_err(|e| WebError::NotFound(format!("snapshot {}: {e}", snap_id.short())))?;
    let base = format!(
        "/repositories/{}/snapshots/{}",
        url_component(name),
        url_component(&snap_id.to_string())
    );
    let shown = path.to_string_lossy().to_string();
    // Breadcrumbs: / a / b
    let mut crumbs = format!("<a href=\"{base}/browse?path=/\">/</a>");
    let mut so_far = String::new();
    for part in shown.split('/').filter(|p| !p.is_empty()) {
        so_far.push('/');
        so_far.push_str(part);
        let _ = write!(
            crumbs,
            " <a href=\"{base}/browse?path={}\">{}</a> /",
            url_path(&so_far),
            escape(part)
        );
    }
    let mut body = format!(
        "<h1>Snapshot <code>{}</code> of {}</h1><p>{} · {} · {}</p><p class=\"path\">{crumbs}</p>",
        escape(&snap_id.short()),
        escape(name),
        html::time(snap.time),
        escape(&snap.host),
        escape(&snap.paths.join(", "))
    );
    match (node.kind, node.subtree) {
        (NodeKind::Dir, Some(tree)) => {
            let t = repo
                .load_tree(&index, &tree)
                .map_err(|e| WebError::Internal(format!("reading {shown}: {e}")))?;
            body.push_str(
                "<table id=\"entries\"><thead><tr><th>Name</th><th>Type</th><th>Size</th>\
                 <th>Mode</th><th>Owner</th><th>Modified</th><th></th></tr></thead><tbody>",
            );
            for n in t.nodes.iter().filter(|n| n.has_safe_name()) {
                let child = format!("{}/{}", shown.trim_end_matches('/'), n.name_lossy());
                let link = url_path(&child);
                let (name_cell, action) = match n.kind {
                    NodeKind::Dir => (
                        format!(
                            "<a href=\"{base}/browse?path={link}\">{}/</a>",
                            escape(&n.name_lossy())
                        ),
                        String::new(),
                    ),
                    NodeKind::File => (
                        escape(&n.name_lossy()),
                        format!(
                            "<a class=\"download\" href=\"{base}/download?path={link}\">Download</a>"
                        ),
                    ),
                    NodeKind::Symlink => (
                        format!(
                            "{} → {}",
                            escape(&n.name_lossy()),
                            escape(&String::from_utf8_lossy(
                                n.link_target.as_deref().unwrap_or_default()
                            ))
                        ),
                        String::new(),
                    ),
                    _ => (escape(&n.name_lossy()), String::new()),
                };
                let _ = write!(
                    body,
                    "<tr><td>{name_cell}</td><td>{}</td><td class=\"num\">{}</td>\
                     <td><code>{:o}</code></td><td>{}:{}</td><td>{}</td><td>{action}</td></tr>",
                    kind_word(n.kind),
                    if n.kind == NodeKind::File {
                        html::bytes(n.size)
                    } else {
                        String::new()
                    },
                    n.mode,
                    escape(&n.user.clone().unwrap_or_else(|| n.uid.to_string())),
                    escape(&n.group.clone().unwrap_or_else(|| n.gid.to_string())),
                    mtime(n)
                );
            }
            body.push_str("</tbody></table>");
        }
        (kind, _) => {
            let _ = write!(
                body,
                "<p>{} · {} · modified {}</p>",
                kind_word(kind),
                html::bytes(node.size),
                mtime(&node)
            );
            if kind == NodeKind::File {
                let _ = write!(
                    body,
                    "<p><a class=\"download\" href=\"{base}/download?path={}\">Download</a></p>",
                    url_path(&shown)
                );
            }
        }
    }
    Ok(html::page_with_nav(
        &format!("Snapshot {}", snap_id.short()),
        &body,
        &super::auth::logout_button(authed),
    ))
}

pub async fn browse(
    State(app): State<Shared>,
    axum::Extension(authed): axum::Extension<Authed>,
    Path((name, id)): Path<(String, String)>,
    Query(q): Query<PathQuery>,
) -> Result<Html<String>, WebError> {
    let path = snapshot_path(&q);
    blocking(move || browse_html(&app, &authed, &name, &id, path))
        .await
        .map(Html)
}

/// A response body fed by a channel (the blocking reader on the other end).
struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|r| r.map(http_body::Frame::data)))
    }
}

/// A file name for Content-Disposition: ASCII without quotes, and the exact name encoded.
fn disposition(name: &str) -> String {
    let plain: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{plain}\"; filename*=UTF-8''{}",
        url_component(name)
    )
}

pub async fn download(
    State(app): State<Shared>,
    Path((name, id)): Path<(String, String)>,
    Query(q): Query<PathQuery>,
) -> Result<Response, WebError> {
    let path = snapshot_path(&q);
    let (repo, index, node) = blocking(move || {
        let (repo, index) = app.browse.get(&app, &name)?;
        let (snap_id, snap) = resolve(&repo, &name, &id)?;
        let node = arca_core::restore::find_path(&repo, &index, &snap.tree, &path)
            .map_err(|e| WebError::NotFound(format!("snapshot {}: {e}", snap_id.short())))?;
        if node.kind != NodeKind::File {
            return Err(WebError::BadRequest(format!(
                "{} is a {}, not a file: only files can be downloaded",
                path.display(),
                kind_word(node.kind)
            )));
        }
        Ok((repo, index, node))
    })
    .await?;
    let size = node.size;
    let file_name = node.name_lossy();
    let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let mut reader = ContentReader::new(&repo, &index, &node);
        loop {
            let mut chunk = vec![0u8; CHUNK];
            match reader.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    chunk.truncate(n);
                    if tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                        // The client went away.
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (header::CONTENT_DISPOSITION, disposition(&file_name)),
        ],
        Body::new(ChannelBody(rx)),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_are_quoted_safely() {
        assert_eq!(
            disposition("a\"b.txt"),
            "attachment; filename=\"a_b.txt\"; filename*=UTF-8''a%22b.txt"
        );
        assert_eq!(
            snapshot_path(&PathQuery {
                path: Some("/etc/x".into())
            }),
            PathBuf::from("/etc/x")
        );
        assert_eq!(snapshot_path(&PathQuery::default()), PathBuf::from("/"));
    }
}
