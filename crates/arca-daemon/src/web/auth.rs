//! Who may use the web server, and which POSTs are genuine.
//!
//! A token is always required. It comes from `[daemon] token_file` or `token_env`, or,
//! when the configuration names neither, from `dashboard.token` beside the state database,
//! which the daemon makes itself ([`super::token_file`]). Every page and API (the login
//! form aside) needs either `Authorization: Bearer TOKEN` (scripts, Prometheus) or a live
//! login session ([`super::sessions`]): the login form takes the token and sets the
//! `arca_session` cookie (`HttpOnly`, `SameSite=Strict`, `Path=/`), which carries only the
//! session's random id. Token comparisons are constant-time. The token is read again on
//! every request, so that writing a new one into the token file ends every session.
//!
//! Wrong tokens (login form or bearer) are counted per client address by
//! [`super::throttle`]: too many give 429 with `Retry-After`, and each one is logged
//! through `tracing` with the client's address (never with the token that was tried).
//!
//! POSTs (run, drill, logout) must also prove they come from the dashboard itself: an
//! `Origin` or `Referer` naming another host is refused, and a request of a session must
//! carry that session's form token (the hidden field of the dashboard's forms) or an
//! `X-Arca-Request` header (which a cross-site page cannot send without a CORS preflight
//! that this server never answers). Bearer requests need neither.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::sessions::{Live, fingerprint};
use super::{Shared, WebError, html, token_file};

/// The session cookie's name.
const COOKIE: &str = "arca_session";

/// Where `tracing` events of this module go (see [`crate::trace`]).
const TARGET: &str = "arca::web";

/// How a request was let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authed {
    /// `Authorization: Bearer TOKEN`.
    Bearer,
    /// A login session (its id and form token).
    Session(Live),
}

/// The client's address (unspecified when the server was started without connection
/// info, which only tests do).
pub struct Peer(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(peer_of(&parts.extensions)))
    }
}

fn peer_of(ext: &axum::http::Extensions) -> IpAddr {
    ext.get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

fn equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// The token in force now (read again each time; see the module doc).
fn current_token(app: &Shared) -> Result<String, WebError> {
    let cfg = app.state.config();
    token_file::current(&cfg.daemon).map_err(|e| {
        tracing::error!(target: TARGET, "dashboard: {e}");
        WebError::Internal(format!("the dashboard has no usable token: {e}"))
    })
}

/// 401: a login page for browsers, a line of text for everything else.
fn unauthorized(headers: &HeaderMap, message: Option<&str>) -> Response {
    let challenge = [(header::WWW_AUTHENTICATE, "Bearer realm=\"arca\"")];
    if wants_html(headers) {
        (
            StatusCode::UNAUTHORIZED,
            challenge,
            axum::response::Html(login_form(message)),
        )
            .into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            challenge,
            "this arca daemon needs its token: Authorization: Bearer TOKEN, or log in at /login\n",
        )
            .into_response()
    }
}

/// 429 with `Retry-After` (whole seconds, rounded up).
fn too_many(wait: Duration, headers: &HeaderMap) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    let text = format!("too many wrong tokens from this address: try again in {secs} s");
    let retry = [(header::RETRY_AFTER, secs.to_string())];
    if wants_html(headers) {
        (
            StatusCode::TOO_MANY_REQUESTS,
            retry,
            axum::response::Html(login_form(Some(&text))),
        )
            .into_response()
    } else {
        (StatusCode::TOO_MANY_REQUESTS, retry, format!("{text}\n")).into_response()
    }
}

/// A wrong token from `ip`: logged (address only), counted, and answered with 401, or
/// with 429 when this failure locked the address.
fn failure(app: &Shared, ip: IpAddr, via: &'static str, headers: &HeaderMap) -> Response {
    tracing::warn!(target: TARGET, peer = %ip, via, "dashboard: wrong token");
    match app.throttle.failed(ip, Instant::now()) {
        Some(lock) => {
            tracing::warn!(
                target: TARGET,
                peer = %ip,
                seconds = lock.as_secs(),
                "dashboard: too many wrong tokens, address locked out"
            );
            too_many(lock, headers)
        }
        None => unauthorized(headers, Some("wrong token")),
    }
}

/// The middleware in front of every page but the login form.
pub async fn require(State(app): State<Shared>, mut req: Request, next: Next) -> Response {
    let token = match current_token(&app) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let now = Instant::now();
    let ip = peer_of(req.extensions());
    let authed = if let Some(given) = bearer(req.headers()) {
        if let Some(wait) = app.throttle.locked(ip, now) {
            return too_many(wait, req.headers());
        }
        if !equal(given, &token) {
            return failure(&app, ip, "bearer", req.headers());
        }
        // A right bearer token does not clear the address's failures: on loopback every
        // local user shares 127.0.0.1, and a scraper's success must not reset a guesser.
        Authed::Bearer
    } else {
        let idle = app.state.config().daemon.session_idle;
        let live = cookie(req.headers(), COOKIE)
            .and_then(|id| app.sessions.check(&fingerprint(&token), id, idle, now));
        match live {
            Some(live) => Authed::Session(live),
            None => return unauthorized(req.headers(), None),
        }
    };
    req.extensions_mut().insert(authed);
    next.run(req).await
}

/// The authority (`host:port`) of an `Origin` or `Referer` value.
fn authority(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    Some(rest.split(['/', '?', '#']).next().unwrap_or(rest))
}

/// Refuses a request whose `Origin` (or, without one, `Referer`) names another host.
fn same_origin(headers: &HeaderMap) -> Result<(), WebError> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    for name in [header::ORIGIN, header::REFERER] {
        if let Some(v) = headers.get(&name) {
            let v = v.to_str().unwrap_or("");
            if !authority(v).is_some_and(|a| a.eq_ignore_ascii_case(host)) {
                return Err(WebError::Forbidden(format!(
                    "refused: this request comes from another site ({name}: {v})"
                )));
            }
            break;
        }
    }
    Ok(())
}

/// Refuses a POST that another site could have made (see the module doc).
pub fn check_post(
    authed: &Authed,
    headers: &HeaderMap,
    form_token: Option<&str>,
) -> Result<(), WebError> {
    same_origin(headers)?;
    let live = match authed {
        Authed::Bearer => return Ok(()),
        Authed::Session(live) => live,
    };
    if headers.contains_key("x-arca-request") {
        return Ok(());
    }
    match form_token {
        Some(t) if equal(t, &live.form) => Ok(()),
        _ => Err(WebError::Forbidden(
            "refused: the form token is missing or stale; reload the page and try again".into(),
        )),
    }
}

/// The hidden field of a POST form (nothing for bearer clients, which need none).
pub fn form_field(authed: &Authed) -> String {
    match authed {
        Authed::Session(live) => format!(
            "<input type=\"hidden\" name=\"form_token\" value=\"{}\">",
            live.form
        ),
        Authed::Bearer => String::new(),
    }
}

/// The logout button of the page header (for a login session only).
pub fn logout_button(authed: &Authed) -> String {
    match authed {
        Authed::Session(_) => format!(
            "<form method=\"post\" action=\"/logout\">{}<button type=\"submit\">Log out</button></form>",
            form_field(authed)
        ),
        Authed::Bearer => String::new(),
    }
}

fn login_form(message: Option<&str>) -> String {
    let msg = message
        .map(|m| format!("<p class=\"error\">{}</p>", html::escape(m)))
        .unwrap_or_default();
    html::page(
        "Log in",
        &format!(
            "<h1>Log in</h1>{msg}<form method=\"post\" action=\"/login\">\
             <label>Token <input type=\"password\" name=\"token\" autofocus \
             autocomplete=\"current-password\"></label> <button type=\"submit\">Log in</button>\
             </form><p class=\"muted\">The token is in the daemon's <code>[daemon] token_file</code> \
             or <code>token_env</code>, or else in <code>{}</code> beside its state database.</p>",
            token_file::FILE_NAME
        ),
    )
}

pub async fn login_page() -> Response {
    axum::response::Html(login_form(None)).into_response()
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
}

pub async fn login(
    State(app): State<Shared>,
    Peer(ip): Peer,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let now = Instant::now();
    // Locked: the token is not even compared, so a lock cannot be used to test guesses.
    if let Some(wait) = app.throttle.locked(ip, now) {
        return too_many(wait, &headers);
    }
    // The login form is the one POST without a form token: only the Origin check applies.
    if let Err(e) = same_origin(&headers) {
        return e.into_response();
    }
    let token = match current_token(&app) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    if !equal(form.token.trim(), &token) {
        return failure(&app, ip, "login form", &headers);
    }
    app.throttle.succeeded(ip);
    let live = match app.sessions.create(&fingerprint(&token), now) {
        Ok(l) => l,
        Err(e) => return WebError::Internal(e.to_string()).into_response(),
    };
    tracing::info!(target: TARGET, peer = %ip, "dashboard: logged in");
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (
                header::SET_COOKIE,
                format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", live.id),
            ),
        ],
    )
        .into_response()
}

#[derive(serde::Deserialize)]
pub struct PostForm {
    pub form_token: Option<String>,
}

pub async fn logout(
    State(app): State<Shared>,
    axum::Extension(authed): axum::Extension<Authed>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<PostForm>,
) -> Result<Response, WebError> {
    check_post(&authed, &headers, form.form_token.as_deref())?;
    // The session ends on the server: its cookie, kept or copied, is refused from now on.
    if let Authed::Session(live) = &authed {
        app.sessions.remove(&live.id);
    }
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/login".to_string()),
            (
                header::SET_COOKIE,
                format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
            ),
        ],
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn session() -> Authed {
        Authed::Session(Live {
            id: "11".repeat(32),
            form: "ab".repeat(32),
        })
    }

    #[test]
    fn bearer_and_cookie_are_found() {
        let h = headers(&[("authorization", "Bearer s3cret")]);
        assert_eq!(bearer(&h), Some("s3cret"));
        assert_eq!(bearer(&headers(&[("authorization", "Basic x")])), None);
        let h = headers(&[("cookie", "a=b; arca_session=00ff")]);
        assert_eq!(cookie(&h, COOKIE), Some("00ff"));
        assert_eq!(cookie(&headers(&[]), COOKIE), None);
        assert!(equal("abc", "abc") && !equal("abc", "abd") && !equal("abc", "ab"));
    }

    #[test]
    fn cross_site_posts_are_refused() {
        let k = session();
        let form = Some("ab".repeat(32));
        let form = form.as_deref();
        let same = headers(&[("host", "127.0.0.1:9"), ("origin", "http://127.0.0.1:9")]);
        assert!(check_post(&k, &same, form).is_ok());
        assert!(check_post(&k, &same, None).is_err());
        assert!(check_post(&k, &same, Some("00")).is_err());
        let other = headers(&[("host", "127.0.0.1:9"), ("origin", "http://evil.example")]);
        assert!(check_post(&k, &other, form).is_err());
        assert!(check_post(&Authed::Bearer, &other, None).is_err());
        let referer = headers(&[
            ("host", "127.0.0.1:9"),
            ("referer", "http://127.0.0.1:9/jobs/x?y"),
        ]);
        assert!(check_post(&k, &referer, form).is_ok());
        let api = headers(&[("host", "127.0.0.1:9"), ("x-arca-request", "1")]);
        assert!(check_post(&k, &api, None).is_ok());
        assert!(check_post(&Authed::Bearer, &headers(&[("host", "h")]), None).is_ok());
    }

    #[test]
    fn forms_carry_the_session_form_token_only() {
        assert!(form_field(&session()).contains(&"ab".repeat(32)));
        assert_eq!(form_field(&Authed::Bearer), "");
        assert!(logout_button(&session()).contains("/logout"));
        assert_eq!(logout_button(&Authed::Bearer), "");
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let r = too_many(Duration::from_millis(1500), &headers(&[]));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
    }
}
