//! The daemon's web server (axum on its own tokio runtime, in its own thread): the
//! dashboard (server-rendered HTML, charts as inline SVG, no JavaScript build step), the
//! snapshot browser with single-file downloads, `GET /api/status` (JSON) and `GET /metrics`
//! (Prometheus text format).
//!
//! Who may come in is [`auth`]'s (a token is always required: bearer, or a login session
//! of [`sessions`]; [`token_file`] makes the token when the configuration names none;
//! [`throttle`] slows down guessing). docs/SECURITY-dashboard.md explains the choice.
//!
//! Submodules: [`auth`] (token, login session, cross-site POST checks), [`metrics`],
//! [`pages`] (overview and job pages), [`charts`] (SVG), [`snapshots`] (browse and
//! download), [`refresh`] (the background thread that opens repositories to count snapshots
//! and measure sizes, so that no request ever waits on storage for them), [`db`] (read-only
//! aggregate queries on the run history) and [`html`] (escaping and formatting).

mod auth;
mod charts;
mod db;
mod html;
mod metrics;
mod pages;
mod refresh;
mod sessions;
mod snapshots;
mod throttle;
pub mod token_file;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::activity::Live;
use crate::clock::Clock;
use crate::config::Config;
use crate::history::History;

/// What the web server reads (and where it queues requests).
#[derive(Clone)]
pub struct WebState {
    /// The running configuration (replaced on reload).
    pub config: Arc<RwLock<Arc<Config>>>,
    pub history: Arc<History>,
    pub clock: Arc<dyn Clock>,
    pub live: Arc<Live>,
}

impl WebState {
    /// The configuration in force now.
    pub(crate) fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Everything the handlers share.
pub(crate) struct App {
    pub state: WebState,
    /// Login sessions (in memory: a restart ends them all).
    pub sessions: sessions::Sessions,
    /// Wrong tokens per client address.
    pub throttle: throttle::Throttle,
    /// Snapshot counts and repository sizes, as the refresher last found them.
    pub facts: refresh::Facts,
    /// Repositories opened for the snapshot browser (kept a short while).
    pub browse: snapshots::OpenRepositories,
    /// Aggregate queries on the run history.
    pub db: db::HistoryReader,
}

pub(crate) type Shared = Arc<App>;

/// Why a request failed; every variant becomes a page (or JSON for the API) with its code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WebError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let code = match &self {
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let title = code.canonical_reason().unwrap_or("error");
        let body = html::page(
            title,
            &format!(
                "<h1>{}</h1><p class=\"error\">{}</p><p><a href=\"/\">Overview</a></p>",
                html::escape(title),
                html::escape(&self.to_string())
            ),
        );
        (
            code,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response()
    }
}

/// Runs `f` on tokio's blocking pool (SQLite, repositories, storage).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WebError> + Send + 'static,
) -> Result<T, WebError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| WebError::Internal(format!("a request handler failed: {e}")))?
}

async fn api_status(
    axum::extract::State(app): axum::extract::State<Shared>,
) -> Result<Response, WebError> {
    let result = blocking(move || {
        let cfg = app.state.config();
        crate::job_status::all_status(&cfg, &app.state.history, app.state.clock.now())
            .map_err(|e| WebError::Internal(e.to_string()))
    })
    .await;
    Ok(match result {
        Ok(s) => axum::Json(serde_json::json!({ "jobs": s })).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(serde_json::json!({ "error": e.to_string() })),
        )
            .into_response(),
    })
}

/// Headers on every response: no framing (the buttons cannot be clickjacked), no scripts
/// or remote content (the pages need none), no MIME sniffing, Referer only to this site.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    response
}

fn router(app: Shared) -> Router {
    let protected = Router::new()
        .route("/", get(pages::overview))
        .route("/jobs/{job}", get(pages::job))
        .route("/jobs/{job}/run", post(pages::request_run))
        .route("/jobs/{job}/drill", post(pages::request_drill))
        .route("/repositories/{repo}/snapshots", get(snapshots::list))
        .route(
            "/repositories/{repo}/snapshots/{id}/browse",
            get(snapshots::browse),
        )
        .route(
            "/repositories/{repo}/snapshots/{id}/download",
            get(snapshots::download),
        )
        .route("/api/status", get(api_status))
        .route("/metrics", get(metrics::scrape))
        .route("/logout", post(auth::logout))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::require,
        ));
    Router::new()
        .route("/login", get(auth::login_page).post(auth::login))
        .merge(protected)
        .fallback(|| async { WebError::NotFound("no such page".into()) })
        .layer(axum::middleware::map_response(security_headers))
        .with_state(app)
}

/// Makes sure the dashboard has a token before the server starts: with neither
/// `token_file` nor `token_env` configured, the file beside the state database is made
/// (or checked, when it exists). Returns its path (to be logged; the token never is) and
/// whether it was made now; `None` when the configuration names the token.
pub fn prepare_token(
    config: &Config,
) -> Result<Option<(std::path::PathBuf, bool)>, token_file::TokenFileError> {
    if config.daemon.token_file.is_some() || config.daemon.token.is_some() {
        return Ok(None);
    }
    token_file::ensure(&config.daemon.state).map(|(path, _, made)| Some((path, made)))
}

/// Serves requests on `listener` until `stopped` turns true. Runs on the caller's thread
/// (the daemon gives it one); starts the refresher thread and stops it on the way out.
pub fn serve(listener: TcpListener, state: WebState, stopped: Arc<AtomicBool>) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(32)
        .thread_name("arca-web")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(_) => return,
    };
    let db = db::HistoryReader::new(state.history.path());
    let app: Shared = Arc::new(App {
        state,
        sessions: sessions::Sessions::default(),
        throttle: throttle::Throttle::default(),
        facts: refresh::Facts::default(),
        browse: snapshots::OpenRepositories::default(),
        db,
    });
    let refresher = refresh::spawn(app.clone(), stopped.clone());
    runtime.block_on(async {
        if listener.set_nonblocking(true).is_err() {
            return;
        }
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        let stop = stopped.clone();
        let server = tokio::spawn(async move {
            let signal = async move {
                while !stop.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            let service = router(app).into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, service)
                .with_graceful_shutdown(signal)
                .await;
        });
        while !stopped.load(Ordering::SeqCst) && !server.is_finished() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Connections still open (a long download) get a few seconds to finish.
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    if let Some(r) = refresher {
        let _ = r.join();
    }
}
