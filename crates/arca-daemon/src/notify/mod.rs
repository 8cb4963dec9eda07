//! Alert channels: where an [`Alert`] goes once a rule fires or resolves.
//!
//! - webhook: an HTTP(S) POST of a JSON body, in one of four templates ([`Template`]):
//!   `generic` (the alert itself), `slack` (incoming webhook), `dingtalk` (custom robot,
//!   markdown) and `feishu` (custom bot, text); see [`webhook_body`] and docs/DRILLS.md for
//!   every payload;
//! - command: a shell command that gets the alert as JSON on stdin, with a timeout;
//! - email over SMTP: STARTTLS by default (or implicit TLS); plain SMTP only to a loopback
//!   server (for tests and local relays).
//!
//! The channel settings ([`ChannelConfig`]) are serde structs with `deny_unknown_fields`, so
//! the configuration file can embed them. Which alerts are sent, and how often they repeat,
//! is decided in [`crate::alerts`].

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use arca_ops::drill::{duration_str, run_command};

/// How bad it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Whether the condition holds now (firing) or stopped holding (resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One message about one rule of one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The rule's name, e.g. `run_failed`, `rpo_breached` (see [`crate::alerts::Rule`]).
    pub rule: String,
    pub job: String,
    pub severity: Severity,
    pub state: AlertState,
    /// One line for people.
    pub summary: String,
    /// Facts behind it (e.g. `error`, `rpo`, `age`).
    #[serde(default)]
    pub details: BTreeMap<String, String>,
    pub time: jiff::Timestamp,
}

impl Alert {
    /// `[FIRING] critical run_failed docs: summary`.
    pub fn title(&self) -> String {
        format!(
            "[{}] {} {} {}: {}",
            self.state.as_str().to_uppercase(),
            self.severity.as_str(),
            self.rule,
            self.job,
            self.summary
        )
    }

    /// The title, then one `key: value` line per detail and the time.
    pub fn text(&self) -> String {
        let mut s = self.title();
        for (k, v) in &self.details {
            s.push_str(&format!("\n{k}: {v}"));
        }
        s.push_str(&format!("\ntime: {}", self.time));
        s
    }

    /// A message for `arca alert test`.
    pub fn test(now: jiff::Timestamp) -> Alert {
        let mut details = BTreeMap::new();
        details.insert("host".to_string(), arca_core::repo::hostname());
        Alert {
            rule: "test".into(),
            job: "test".into(),
            severity: Severity::Info,
            state: AlertState::Firing,
            summary: "test message from arca: this channel works".into(),
            details,
            time: now,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("webhook {url}: {reason}")]
    Webhook { url: String, reason: String },
    #[error("alert command {command:?}: {reason}")]
    Command { command: String, reason: String },
    #[error("email via {server}: {reason}")]
    Email { server: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

/// The body of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Template {
    /// The alert as JSON plus `source` and `text`.
    #[default]
    Generic,
    /// Slack incoming webhook: `text` plus one coloured attachment with the details.
    Slack,
    /// DingTalk custom robot: a markdown message.
    Dingtalk,
    /// Feishu (Lark) custom bot: a text message.
    Feishu,
}

impl Template {
    pub fn as_str(self) -> &'static str {
        match self {
            Template::Generic => "generic",
            Template::Slack => "slack",
            Template::Dingtalk => "dingtalk",
            Template::Feishu => "feishu",
        }
    }
}

/// A webhook template name that is not one of arca's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown webhook template {0:?} (generic, slack, dingtalk or feishu)")]
pub struct UnknownTemplate(pub String);

impl std::str::FromStr for Template {
    type Err = UnknownTemplate;
    fn from_str(s: &str) -> Result<Template, UnknownTemplate> {
        match s {
            "generic" => Ok(Template::Generic),
            "slack" => Ok(Template::Slack),
            "dingtalk" => Ok(Template::Dingtalk),
            "feishu" | "lark" => Ok(Template::Feishu),
            _ => Err(UnknownTemplate(s.to_string())),
        }
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// A webhook channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    #[serde(default)]
    pub template: Template,
    /// Extra request headers (e.g. an Authorization header of the generic receiver).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout", with = "duration_str")]
    pub timeout: Duration,
    /// Signing secret: DingTalk robots ("sign" and "timestamp" in the URL), Feishu bots
    /// ("sign" and "timestamp" in the body), generic receivers (header
    /// `X-Arca-Signature: sha256=HEX`, HMAC-SHA256 of the body). Slack takes none.
    pub secret: Option<String>,
    /// Environment variable holding the signing secret (instead of `secret`).
    pub secret_env: Option<String>,
}

/// A command channel: `sh -c COMMAND` with the alert as JSON on stdin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    pub command: String,
    #[serde(default = "default_timeout", with = "duration_str")]
    pub timeout: Duration,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (required; port 587 by default).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465 by default).
    Tls,
    /// No encryption: allowed only to a loopback server (port 25 by default).
    Plain,
}

/// An email channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// SMTP server host name (or address).
    pub server: String,
    pub port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    pub username: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File whose first line is the password.
    pub password_file: Option<String>,
    pub from: String,
    pub to: Vec<String>,
    #[serde(default = "default_timeout", with = "duration_str")]
    pub timeout: Duration,
}

/// One alert channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ChannelConfig {
    Webhook(WebhookConfig),
    Command(CommandConfig),
    Email(EmailConfig),
}

impl ChannelConfig {
    /// A short description for messages (no secrets).
    pub fn describe(&self) -> String {
        match self {
            ChannelConfig::Webhook(w) => {
                format!("webhook {} ({})", redact_url(&w.url), w.template.as_str())
            }
            ChannelConfig::Command(c) => format!("command {:?}", c.command),
            ChannelConfig::Email(e) => format!("email to {} via {}", e.to.join(", "), e.server),
        }
    }
}

/// The URL without its query and path (webhook URLs carry their token there).
pub fn redact_url(url: &str) -> String {
    match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            let host_end = rest.find('/').unwrap_or(rest.len());
            let more = if host_end < rest.len() { "/..." } else { "" };
            format!("{}{more}", &url[..i + 3 + host_end])
        }
        None => "(invalid url)".into(),
    }
}

fn color(alert: &Alert) -> &'static str {
    match (alert.state, alert.severity) {
        (AlertState::Resolved, _) => "#2eb886",
        (_, Severity::Critical) => "#d50200",
        (_, Severity::Warning) => "#daa038",
        (_, Severity::Info) => "#439fe0",
    }
}

/// The JSON body of a webhook in `template`:
///
/// - generic: `{"source":"arca","rule","job","severity","state","summary","details":{..},
///   "time","text"}`;
/// - slack: `{"text": TITLE, "attachments":[{"color","title","text","fields":[{"title",
///   "value","short"}],"ts"}]}`;
/// - dingtalk: `{"msgtype":"markdown","markdown":{"title","text"}}`;
/// - feishu: `{"msg_type":"text","content":{"text"}}`.
pub fn webhook_body(alert: &Alert, template: Template) -> serde_json::Value {
    use serde_json::json;
    match template {
        Template::Generic => {
            let mut v = json!({
                "source": "arca",
                "rule": alert.rule,
                "job": alert.job,
                "severity": alert.severity,
                "state": alert.state,
                "summary": alert.summary,
                "details": alert.details,
                "time": alert.time.to_string(),
                "text": alert.text(),
            });
            if let Some(o) = v.as_object_mut() {
                o.insert("title".into(), json!(alert.title()));
            }
            v
        }
        Template::Slack => {
            let fields: Vec<serde_json::Value> = [
                ("job", alert.job.clone()),
                ("rule", alert.rule.clone()),
                ("severity", alert.severity.as_str().to_string()),
                ("state", alert.state.as_str().to_string()),
            ]
            .into_iter()
            .chain(alert.details.iter().map(|(k, v)| (k.as_str(), v.clone())))
            .map(|(k, v)| json!({"title": k, "value": v, "short": v.len() < 40}))
            .collect();
            json!({
                "text": alert.title(),
                "attachments": [{
                    "color": color(alert),
                    "title": alert.summary,
                    "text": alert.text(),
                    "fields": fields,
                    "footer": "arca",
                    "ts": alert.time.as_second(),
                }],
            })
        }
        Template::Dingtalk => {
            let mut text = format!(
                "### {} {}\n\n**{}**\n\n- job: {}\n- rule: {}\n- severity: {}\n",
                alert.state.as_str().to_uppercase(),
                alert.summary,
                alert.summary,
                alert.job,
                alert.rule,
                alert.severity.as_str()
            );
            for (k, v) in &alert.details {
                text.push_str(&format!("- {k}: {v}\n"));
            }
            text.push_str(&format!("- time: {}\n", alert.time));
            json!({
                "msgtype": "markdown",
                "markdown": {"title": alert.title(), "text": text},
            })
        }
        Template::Feishu => json!({
            "msg_type": "text",
            "content": {"text": alert.text()},
        }),
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    match Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(message);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// DingTalk's `sign` (URL-encoded): base64(HMAC-SHA256(secret, "TIMESTAMP_MS\nsecret")).
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    let to_sign = format!("{timestamp_ms}\n{secret}");
    percent_encode(&base64(&hmac_sha256(secret.as_bytes(), to_sign.as_bytes())))
}

/// Feishu's `sign`: base64(HMAC-SHA256(key = "TIMESTAMP_S\nsecret", message = "")).
pub fn feishu_sign(secret: &str, timestamp_s: i64) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    base64(&hmac_sha256(key.as_bytes(), b""))
}

/// The generic template's `X-Arca-Signature` value: `sha256=` + hex HMAC of the body.
pub fn body_signature(secret: &str, body: &[u8]) -> String {
    let mac = hmac_sha256(secret.as_bytes(), body);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// A channel's secret or password that cannot be read.
#[derive(Debug, thiserror::Error)]
enum SecretError {
    #[error("environment variable {var} ({key}) is not set")]
    EnvNotSet { var: String, key: &'static str },
    #[error("password_file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

fn env_secret(var: &str, key: &'static str) -> Result<Option<String>, SecretError> {
    std::env::var(var)
        .map(Some)
        .map_err(|_| SecretError::EnvNotSet {
            var: var.to_string(),
            key,
        })
}

fn webhook_secret(w: &WebhookConfig) -> Result<Option<String>, SecretError> {
    if let Some(s) = &w.secret {
        return Ok(Some(s.clone()));
    }
    match &w.secret_env {
        Some(var) => env_secret(var, "secret_env"),
        None => Ok(None),
    }
}

/// What a configuration check should report about `channel` (`env` answers for
/// environment variables): a URL that is not http(s), a secret or password variable that
/// is not set, plain SMTP to a remote server, an email without recipients, an empty
/// command.
pub fn channel_problems(
    channel: &ChannelConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    let unset = |var: &str| env(var).is_none_or(|v| v.is_empty());
    match channel {
        ChannelConfig::Webhook(w) => {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                out.push(format!(
                    "url {:?} is not an http:// or https:// URL",
                    redact_url(&w.url)
                ));
            }
            if let Some(var) = &w.secret_env
                && unset(var)
            {
                out.push(format!(
                    "secret_env: the environment variable {var} is not set"
                ));
            }
        }
        ChannelConfig::Command(c) => {
            if c.command.trim().is_empty() {
                out.push("command is empty".into());
            }
        }
        ChannelConfig::Email(e) => {
            if e.to.is_empty() {
                out.push("to lists no recipient".into());
            }
            if e.security == SmtpSecurity::Plain && !is_loopback(&e.server) {
                out.push(format!(
                    "security = \"plain\" is only allowed to a loopback server, not {}",
                    e.server
                ));
            }
            if let Some(var) = &e.password_env
                && unset(var)
            {
                out.push(format!(
                    "password_env: the environment variable {var} is not set"
                ));
            }
            if e.password_env.is_some() && e.password_file.is_some() {
                out.push("set password_env or password_file, not both".into());
            }
        }
    }
    out
}

/// Sends `alert` to `channel`.
pub fn send(channel: &ChannelConfig, alert: &Alert) -> Result<(), NotifyError> {
    match channel {
        ChannelConfig::Webhook(w) => send_webhook(w, alert),
        ChannelConfig::Command(c) => send_command(c, alert),
        ChannelConfig::Email(e) => send_email(e, alert),
    }
}

/// The outcome of sending one alert to one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub channel: String,
    pub rule: String,
    pub job: String,
    pub state: AlertState,
    /// Why it was not delivered.
    pub error: Option<String>,
}

/// Sends every alert to every channel (named), one after the other; a channel that fails
/// does not stop the others. The daemon records the deliveries in its log.
pub fn dispatch(channels: &[(String, ChannelConfig)], alerts: &[Alert]) -> Vec<Delivery> {
    let mut out = Vec::new();
    for alert in alerts {
        for (name, channel) in channels {
            out.push(Delivery {
                channel: name.clone(),
                rule: alert.rule.clone(),
                job: alert.job.clone(),
                state: alert.state,
                error: send(channel, alert).err().map(|e| e.to_string()),
            });
        }
    }
    out
}

/// POSTs the templated JSON; any 2xx answer is success. DingTalk and Feishu answer 200
/// with an error code in the body, which is checked too.
pub fn send_webhook(w: &WebhookConfig, alert: &Alert) -> Result<(), NotifyError> {
    let err = |reason: String| NotifyError::Webhook {
        url: redact_url(&w.url),
        reason,
    };
    let client = reqwest::blocking::Client::builder()
        .timeout(w.timeout)
        .no_proxy()
        .user_agent(concat!("arca/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| err(e.to_string()))?;
    let secret = webhook_secret(w).map_err(|e| err(e.to_string()))?;
    let mut value = webhook_body(alert, w.template);
    let mut url = w.url.clone();
    let now = jiff::Timestamp::now();
    match (&secret, w.template) {
        (Some(secret), Template::Dingtalk) => {
            let ms = now.as_millisecond();
            let sep = if url.contains('?') { '&' } else { '?' };
            url = format!(
                "{url}{sep}timestamp={ms}&sign={}",
                dingtalk_sign(secret, ms)
            );
        }
        (Some(secret), Template::Feishu) => {
            let secs = now.as_second();
            if let Some(o) = value.as_object_mut() {
                o.insert("timestamp".into(), secs.to_string().into());
                o.insert("sign".into(), feishu_sign(secret, secs).into());
            }
        }
        (Some(_), Template::Slack) => {
            return Err(err(
                "Slack incoming webhooks take no signing secret; remove it".into(),
            ));
        }
        _ => {}
    }
    let body = serde_json::to_vec(&value).map_err(|e| err(e.to_string()))?;
    let mut req = client.post(&url).header("content-type", "application/json");
    if let (Some(secret), Template::Generic) = (&secret, w.template) {
        req = req.header("x-arca-signature", body_signature(secret, &body));
    }
    let mut req = req.body(body);

    for (k, v) in &w.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req.send().map_err(|e| {
        if e.is_timeout() {
            err(no_answer(w.timeout))
        } else {
            err(error_chain(&e))
        }
    })?;
    let status = resp.status();
    let text = resp.text().unwrap_or_default();
    if !status.is_success() {
        return Err(err(format!(
            "answered {status}: {}",
            text.chars().take(300).collect::<String>()
        )));
    }
    // DingTalk: {"errcode":0,...}; Feishu: {"code":0,...} (older: StatusCode).
    if matches!(w.template, Template::Dingtalk | Template::Feishu)
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
    {
        for key in ["errcode", "code", "StatusCode"] {
            if let Some(c) = v.get(key).and_then(|c| c.as_i64())
                && c != 0
            {
                return Err(err(format!("refused the message: {text}")));
            }
        }
    }
    Ok(())
}

/// The reason of a channel that did not answer in time.
fn no_answer(timeout: Duration) -> String {
    format!(
        "timed out: no answer within {} (the channel's timeout)",
        arca_ops::drill::format_duration(timeout)
    )
}

/// Whether `e` (or what caused it) is a network timeout: a connect that timed out, or a
/// read or write past a socket timeout (`WouldBlock` on Linux).
fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            )
        {
            return true;
        }
        cur = c.source();
    }
    false
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}

/// Runs the command with the alert as JSON on stdin (and ARCA_ALERT_* variables).
pub fn send_command(c: &CommandConfig, alert: &Alert) -> Result<(), NotifyError> {
    let json = serde_json::to_vec(alert).map_err(|e| NotifyError::Command {
        command: c.command.clone(),
        reason: e.to_string(),
    })?;
    let env = [
        ("ARCA_ALERT_RULE", OsStr::new(alert.rule.as_str())),
        ("ARCA_ALERT_JOB", OsStr::new(alert.job.as_str())),
        ("ARCA_ALERT_STATE", OsStr::new(alert.state.as_str())),
        ("ARCA_ALERT_SEVERITY", OsStr::new(alert.severity.as_str())),
        ("ARCA_ALERT_SUMMARY", OsStr::new(alert.summary.as_str())),
    ];
    let outcome = run_command(&c.command, None, &env, Some(&json), c.timeout);
    if outcome.success() {
        Ok(())
    } else {
        Err(NotifyError::Command {
            command: c.command.clone(),
            reason: outcome.failure_reason(),
        })
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

fn email_password(e: &EmailConfig) -> Result<Option<String>, SecretError> {
    if let Some(var) = &e.password_env {
        return env_secret(var, "password_env");
    }
    if let Some(file) = &e.password_file {
        let s = std::fs::read_to_string(file).map_err(|source| SecretError::File {
            path: file.clone(),
            source,
        })?;
        return Ok(Some(s.lines().next().unwrap_or("").to_string()));
    }
    Ok(None)
}

/// Sends a plain-text email (subject: the alert's title).
pub fn send_email(e: &EmailConfig, alert: &Alert) -> Result<(), NotifyError> {
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{Message, SmtpTransport, Transport};

    let err = |reason: String| NotifyError::Email {
        server: e.server.clone(),
        reason,
    };
    if e.to.is_empty() {
        return Err(err("no recipient (to) given".into()));
    }
    let from: Mailbox = e
        .from
        .parse()
        .map_err(|x| err(format!("from address {:?}: {x}", e.from)))?;
    let mut builder = Message::builder()
        .from(from)
        .subject(alert.title())
        .header(ContentType::TEXT_PLAIN);
    for to in &e.to {
        let mb: Mailbox = to
            .parse()
            .map_err(|x| err(format!("to address {to:?}: {x}")))?;
        builder = builder.to(mb);
    }
    let mut body = alert.text();
    body.push_str("\n\n-- \narca\n");
    let message = builder.body(body).map_err(|x| err(x.to_string()))?;
    let transport = match e.security {
        SmtpSecurity::Starttls => SmtpTransport::starttls_relay(&e.server)
            .map_err(|x| err(error_chain(&x)))?
            .port(e.port.unwrap_or(587)),
        SmtpSecurity::Tls => SmtpTransport::relay(&e.server)
            .map_err(|x| err(error_chain(&x)))?
            .port(e.port.unwrap_or(465)),
        SmtpSecurity::Plain => {
            if !is_loopback(&e.server) {
                return Err(err(
                    "plain SMTP (no TLS) is allowed only to a loopback server; use starttls or tls"
                        .into(),
                ));
            }
            SmtpTransport::builder_dangerous(&e.server).port(e.port.unwrap_or(25))
        }
    };
    let mut transport = transport.timeout(Some(e.timeout));
    if let Some(user) = &e.username {
        let password = email_password(e)
            .map_err(|e| err(e.to_string()))?
            .unwrap_or_default();
        transport = transport.credentials(Credentials::new(user.clone(), password));
    }
    transport.build().send(&message).map_err(|x| {
        if x.is_timeout() || is_timeout(&x) {
            err(no_answer(e.timeout))
        } else {
            err(error_chain(&x))
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests;
