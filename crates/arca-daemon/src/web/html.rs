//! HTML helpers of the dashboard: escaping of everything user-controlled (job and
//! repository names, paths, errors, hook output), percent-encoding for URLs, the page
//! layout, and how times, durations and sizes are shown.

use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;

/// Escapes text for HTML content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path segment or query value (everything but unreserved characters).
pub fn url_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Like [`url_component`] but keeps `/` (a path inside a snapshot, in a query).
pub fn url_path(s: &str) -> String {
    s.split('/')
        .map(url_component)
        .collect::<Vec<_>>()
        .join("/")
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}\
header{background:#1d2330;color:#fff;padding:8px 20px}header form{display:inline;float:right}header a{color:#fff;margin-right:16px;text-decoration:none}\
main{padding:16px 20px}table{border-collapse:collapse;background:#fff;margin:8px 0 20px}\
th,td{border:1px solid #d8dce3;padding:4px 8px;text-align:left;vertical-align:top}th{background:#eceff3}\
.ok{color:#17803d}.bad{color:#c0262d;font-weight:600}.warn{color:#a35d00}.muted{color:#6b7280}\
.error{color:#c0262d;white-space:pre-wrap}form.inline{display:inline}button{cursor:pointer}\
.charts{display:flex;flex-wrap:wrap;gap:16px}svg{background:#fff;border:1px solid #d8dce3}\
td.num{text-align:right;font-variant-numeric:tabular-nums}pre{white-space:pre-wrap;margin:0}";

/// A whole page: `title` (escaped here) and `body` (already HTML).
pub fn page(title: &str, body: &str) -> String {
    page_with_nav(title, body, "")
}

/// Like [`page`], with `nav` (HTML, such as the logout button) at the end of the header.
pub fn page_with_nav(title: &str, body: &str, nav: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · arca</title><style>{STYLE}</style></head><body>\
         <header><a href=\"/\"><b>arca</b></a><a href=\"/\">Overview</a>\
         <a href=\"/metrics\">Metrics</a><a href=\"/api/status\">API</a>{nav}</header>\
         <main>{body}</main></body></html>",
        escape(title)
    )
}

/// A time for a table cell (UTC, to the second).
pub fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A duration in seconds, to the second (below a minute: to the tenth).
pub fn seconds(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "–".into();
    }
    if secs < 1.0 {
        return format!("{:.0}ms", secs * 1000.0);
    }
    if secs < 60.0 {
        return format!("{secs:.1}s");
    }
    arca_ops::drill::format_duration(Duration::from_secs(secs.round() as u64))
}

/// The duration between two times.
pub fn between(start: Timestamp, end: Timestamp) -> String {
    seconds((end.as_millisecond() - start.as_millisecond()) as f64 / 1000.0)
}

/// Bytes as B, KiB, MiB, ...
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A status word with its colour.
pub fn status(word: &str) -> String {
    let class = match word {
        "success" | "passed" | "ok" | "idle" => "ok",
        "running" | "incomplete" | "interrupted" | "skipped" => "warn",
        _ => "bad",
    };
    format!("<span class=\"{class}\">{}</span>", escape(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_encoding() {
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(url_component("a b/c?d=é"), "a%20b%2Fc%3Fd%3D%C3%A9");
        assert_eq!(url_path("/etc/a b"), "/etc/a%20b");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(seconds(3.25), "3.2s");
        assert_eq!(seconds(0.0254), "25ms");
        assert_eq!(seconds(3725.0), "1h2m5s");
    }
}
