//! Who may use the web server, and which POSTs are genuine.
//!
//! With `[daemon] token` set, every page and API (the login form aside) needs either
//! `Authorization: Bearer TOKEN` or the session cookie that the login form sets after the
//! token was typed in (`HttpOnly`, `SameSite=Strict`; its value is an HMAC of the token, so
//! changing the token logs every browser out). Comparisons are constant-time. Without a
//! token (the configuration allows that only on a loopback address) everything is open,
//! but the `Host` header must be an IP address or `localhost`, so that a web page whose
//! name was rebound to 127.0.0.1 cannot read the dashboard.
//!
//! POSTs (run, drill, logout) must also prove they come from the dashboard itself: an
//! `Origin` or `Referer` naming another host is refused, and the request must carry the
//! bearer token, or the form token the dashboard puts in its forms, or an
//! `X-Arca-Request` header (which a cross-site page cannot send without a CORS preflight
//! that this server never answers).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{App, Shared, WebError, html};

/// The session cookie's name.
const COOKIE: &str = "arca_session";

/// How a request was let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authed {
    /// No token is configured.
    Open,
    Bearer,
    Cookie,
}

pub fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC takes keys of any length; this branch is never taken.
        Err(_) => return [0; 32],
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The token (if any) and the values derived from it.
pub struct Keys {
    pub token: Option<String>,
    /// The session cookie's value.
    pub session: String,
    /// The hidden form field of every POST form.
    pub form: String,
}

impl Keys {
    pub fn of(app: &App) -> Keys {
        let token = app.state.config().daemon.token.clone();
        let key: Vec<u8> = match &token {
            Some(t) => t.as_bytes().to_vec(),
            None => app.secret.to_vec(),
        };
        Keys {
            session: hex(&hmac(&key, b"arca-dashboard-session")),
            form: hex(&hmac(&key, b"arca-dashboard-form")),
            token,
        }
    }
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

/// The host part of a `Host` header value (`[::1]:8080` gives `::1`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Why a request was not let in.
#[derive(Debug)]
pub enum Refusal {
    /// No token, and the request was addressed to a name (DNS rebinding guard).
    Host(String),
    /// The token is required and was missing or wrong.
    Unauthorized,
}

/// Whether the request may go on, and how it was let in.
pub fn check(keys: &Keys, headers: &HeaderMap) -> Result<Authed, Refusal> {
    let Some(token) = &keys.token else {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        let name = host_name(host);
        if name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok() {
            return Ok(Authed::Open);
        }
        return Err(Refusal::Host(host.to_string()));
    };
    if let Some(given) = bearer(headers) {
        if equal(given, token) {
            return Ok(Authed::Bearer);
        }
    } else if let Some(given) = cookie(headers, COOKIE)
        && equal(given, &keys.session)
    {
        return Ok(Authed::Cookie);
    }
    Err(Refusal::Unauthorized)
}

/// 401: a login page for browsers, a line of text for everything else.
fn unauthorized(headers: &HeaderMap, message: Option<&str>) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let challenge = [(header::WWW_AUTHENTICATE, "Bearer realm=\"arca\"")];
    if wants_html {
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
            "this arca daemon needs its token: Authorization: Bearer TOKEN\n",
        )
            .into_response()
    }
}

/// The middleware in front of every page but the login form.
pub async fn require(State(app): State<Shared>, mut req: Request, next: Next) -> Response {
    let keys = Keys::of(&app);
    match check(&keys, req.headers()) {
        Ok(how) => {
            req.extensions_mut().insert(how);
            next.run(req).await
        }
        Err(Refusal::Host(host)) => WebError::Forbidden(format!(
            "this dashboard has no token, so it answers only requests addressed to an IP \
             address or localhost, not to {host:?}"
        ))
        .into_response(),
        Err(Refusal::Unauthorized) => unauthorized(req.headers(), None),
    }
}

/// The authority (`host:port`) of an `Origin` or `Referer` value.
fn authority(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    Some(rest.split(['/', '?', '#']).next().unwrap_or(rest))
}

/// Refuses a POST that another site could have made (see the module doc).
pub fn check_post(
    keys: &Keys,
    authed: Authed,
    headers: &HeaderMap,
    form_token: Option<&str>,
) -> Result<(), WebError> {
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
    if authed == Authed::Bearer || headers.contains_key("x-arca-request") {
        return Ok(());
    }
    match form_token {
        Some(t) if equal(t, &keys.form) => Ok(()),
        _ => Err(WebError::Forbidden(
            "refused: the form token is missing or stale; reload the page and try again".into(),
        )),
    }
}

/// The hidden field of a POST form.
pub fn form_field(keys: &Keys) -> String {
    format!(
        "<input type=\"hidden\" name=\"form_token\" value=\"{}\">",
        keys.form
    )
}

/// The logout button of the page header (nothing without a token).
pub fn logout_button(keys: &Keys) -> String {
    if keys.token.is_none() {
        return String::new();
    }
    format!(
        "<form method=\"post\" action=\"/logout\">{}<button type=\"submit\">Log out</button></form>",
        form_field(keys)
    )
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
             </form><p class=\"muted\">The token is the daemon's <code>[daemon] token_file</code> \
             or <code>token_env</code>.</p>"
        ),
    )
}

pub async fn login_page(State(app): State<Shared>) -> Response {
    if Keys::of(&app).token.is_none() {
        return Redirect::to("/").into_response();
    }
    axum::response::Html(login_form(None)).into_response()
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
}

pub async fn login(
    State(app): State<Shared>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let keys = Keys::of(&app);
    let Some(token) = &keys.token else {
        return Redirect::to("/").into_response();
    };
    // The login form is the one POST without a form token: only the Origin check applies.
    if let Err(e) = check_post(&keys, Authed::Bearer, &headers, None) {
        return e.into_response();
    }
    if !equal(form.token.trim(), token) {
        // Slows down guessing.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        return unauthorized(&headers, Some("wrong token"));
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (
                header::SET_COOKIE,
                format!(
                    "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
                    keys.session
                ),
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
    check_post(
        &Keys::of(&app),
        authed,
        &headers,
        form.form_token.as_deref(),
    )?;
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

    fn keys(token: Option<&str>) -> Keys {
        let key = token.map_or(b"secret".to_vec(), |t| t.as_bytes().to_vec());
        Keys {
            token: token.map(str::to_string),
            session: hex(&hmac(&key, b"arca-dashboard-session")),
            form: hex(&hmac(&key, b"arca-dashboard-form")),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn token_cookie_and_host_checks() {
        let k = keys(Some("s3cret"));
        assert!(check(&k, &headers(&[])).is_err());
        assert!(check(&k, &headers(&[("authorization", "Bearer wrong")])).is_err());
        assert_eq!(
            check(&k, &headers(&[("authorization", "Bearer s3cret")])).unwrap(),
            Authed::Bearer
        );
        let c = format!("a=b; {COOKIE}={}", k.session);
        assert_eq!(
            check(&k, &headers(&[("cookie", &c)])).unwrap(),
            Authed::Cookie
        );
        assert!(check(&k, &headers(&[("cookie", "arca_session=00")])).is_err());
        // No token: open to IP addresses and localhost only.
        let open = keys(None);
        for host in ["127.0.0.1:8080", "[::1]:80", "localhost:1", "localhost"] {
            assert_eq!(
                check(&open, &headers(&[("host", host)])).unwrap(),
                Authed::Open,
                "{host}"
            );
        }
        assert!(check(&open, &headers(&[("host", "evil.example:8080")])).is_err());
    }

    #[test]
    fn cross_site_posts_are_refused() {
        let k = keys(None);
        let form = Some(k.form.as_str());
        let same = headers(&[("host", "127.0.0.1:9"), ("origin", "http://127.0.0.1:9")]);
        assert!(check_post(&k, Authed::Open, &same, form).is_ok());
        assert!(check_post(&k, Authed::Open, &same, None).is_err());
        assert!(check_post(&k, Authed::Open, &same, Some("00")).is_err());
        let other = headers(&[("host", "127.0.0.1:9"), ("origin", "http://evil.example")]);
        assert!(check_post(&k, Authed::Open, &other, form).is_err());
        let referer = headers(&[
            ("host", "127.0.0.1:9"),
            ("referer", "http://127.0.0.1:9/jobs/x?y"),
        ]);
        assert!(check_post(&k, Authed::Cookie, &referer, form).is_ok());
        let api = headers(&[("host", "127.0.0.1:9"), ("x-arca-request", "1")]);
        assert!(check_post(&k, Authed::Open, &api, None).is_ok());
        assert!(check_post(&k, Authed::Bearer, &headers(&[("host", "h")]), None).is_ok());
    }
}
