//! The dashboard's pages: the overview (every job's state, last run, RPO and RTO
//! compliance, 3-2-1 state, alerts, a duration sparkline and the "Run now" / "Drill now"
//! buttons; the repositories with their snapshots, size and space) and a job's page (its
//! runs, charts of repository growth and run duration, its drills step by step). The
//! buttons queue a request in [`crate::activity::Live`] for the daemon loop and come back.

use std::fmt::Write as _;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use jiff::Timestamp;

use super::auth::{self, Authed};
use super::charts::{self, Point};
use super::html::{self, escape, url_component};
use super::{App, Shared, WebError, blocking};
use crate::activity::Request;
use crate::config::JobConfig;
use crate::history::{RunRecord, RunStatus};
use crate::job_status::JobStatus;
use arca_ops::drill::{DrillReport, StepStatus};

fn hist(e: crate::history::HistoryError) -> WebError {
    WebError::Internal(e.to_string())
}

#[derive(serde::Deserialize, Default)]
pub struct Notice {
    /// `run:JOB` or `drill:JOB` after a button was pressed.
    queued: Option<String>,
}

fn notice(n: &Notice) -> String {
    match n.queued.as_deref().and_then(|q| q.split_once(':')) {
        Some((what, job)) => format!(
            "<p class=\"ok\" id=\"notice\">{} of {} requested: the daemon starts it shortly.</p>",
            if what == "drill" { "A drill" } else { "A run" },
            escape(job)
        ),
        None => String::new(),
    }
}

fn buttons(authed: &Authed, job: &str, back: &str) -> String {
    let field = auth::form_field(authed);
    let path = url_component(job);
    let back = escape(back);
    format!(
        "<form class=\"inline\" method=\"post\" action=\"/jobs/{path}/run\">{field}\
         <input type=\"hidden\" name=\"back\" value=\"{back}\">\
         <button type=\"submit\" class=\"run\">Run now</button></form> \
         <form class=\"inline\" method=\"post\" action=\"/jobs/{path}/drill\">{field}\
         <input type=\"hidden\" name=\"back\" value=\"{back}\">\
         <button type=\"submit\" class=\"drill\">Drill now</button></form>"
    )
}

fn job_link(job: &str) -> String {
    format!(
        "<a class=\"job\" href=\"/jobs/{}\">{}</a>",
        url_component(job),
        escape(job)
    )
}

fn state_cell(app: &App, s: &JobStatus) -> String {
    let running = app.state.live.running_of(&s.job);
    if !running.is_empty() {
        let what: Vec<String> = running
            .iter()
            .map(|r| format!("{} since {}", escape(&r.kind), html::time(r.start)))
            .collect();
        return format!("{}<br>{}", html::status("running"), what.join("<br>"));
    }
    if s.running {
        return html::status("running");
    }
    html::status("idle")
}

fn last_run_cell(s: &JobStatus, now: Timestamp) -> String {
    let Some(r) = &s.last_run else {
        return "<span class=\"muted\">never ran</span>".into();
    };
    let took = match r.end {
        Some(end) => html::between(r.start, end),
        None => format!("running for {}", html::between(r.start, now)),
    };
    let error = r
        .error
        .as_deref()
        .map(|e| format!("<br><span class=\"error\">{}</span>", escape(e)))
        .unwrap_or_default();
    format!(
        "{} {}<br>{}, {}{error}",
        html::status(r.status.as_str()),
        escape(r.backup_type.as_deref().unwrap_or("")),
        html::time(r.start),
        took
    )
}

fn rpo_cell(s: &JobStatus) -> String {
    let age = s
        .last_good
        .as_ref()
        .map(|g| html::seconds(g.age_secs as f64));
    match (s.rpo_secs, s.rpo_ok) {
        (Some(rpo), Some(ok)) => {
            let rpo = html::seconds(rpo as f64);
            let age = age.map_or("no snapshot yet".to_string(), |a| format!("newest {a} old"));
            format!(
                "{} {age}, RPO {rpo}",
                html::status(if ok { "ok" } else { "breached" })
            )
        }
        _ => format!(
            "<span class=\"muted\">no RPO</span>{}",
            age.map(|a| format!("; newest {a} old")).unwrap_or_default()
        ),
    }
}

fn drill_report(r: &RunRecord) -> Option<DrillReport> {
    serde_json::from_value(r.report.clone()?).ok()
}

/// The last drill's projected full restore against the RTO (the job's, else the one the
/// drill measured against).
fn rto_cell(last_drill: Option<&RunRecord>, job_rto: Option<f64>) -> String {
    let rto_text = |rto: Option<f64>| {
        rto.map(|r| format!("RTO {}", html::seconds(r)))
            .unwrap_or_else(|| "<span class=\"muted\">no RTO</span>".into())
    };
    let Some(d) = last_drill else {
        return format!(
            "<span class=\"muted\">no drill yet</span>; {}",
            rto_text(job_rto)
        );
    };
    let passed = html::status(if d.status == RunStatus::Success {
        "passed"
    } else {
        "failed"
    });
    let perf = drill_report(d).and_then(|r| r.performance);
    let when = html::time(d.start);
    match perf {
        Some(p) => {
            let projected = html::seconds(p.projected_full_restore_secs);
            let rto = job_rto.or(p.rto_secs);
            let verdict = match rto {
                Some(rto) if p.projected_full_restore_secs <= rto => html::status("ok"),
                Some(_) => html::status("exceeded"),
                None => String::new(),
            };
            format!(
                "{verdict} projected restore {projected}, {}<br>drill {passed} {when}",
                rto_text(rto)
            )
        }
        None => format!("drill {passed} {when}; {}", rto_text(job_rto)),
    }
}

fn three_two_one_cell(s: &JobStatus) -> String {
    match &s.three_two_one {
        Some(t) => format!(
            "{} {} copies, {} media, {} offsite",
            html::status(if t.ok { "ok" } else { "not met" }),
            t.copies,
            t.media,
            t.offsite
        ),
        None => "<span class=\"muted\">unknown</span>".into(),
    }
}

fn alerts_cell(app: &App, job: &str) -> String {
    let firing: Vec<String> = app
        .state
        .live
        .alerts()
        .into_iter()
        .filter(|a| a.job == job)
        .map(|a| {
            format!(
                "<span class=\"bad\" title=\"{}\">{}</span>",
                escape(&a.summary),
                escape(a.rule.as_str())
            )
        })
        .collect();
    if firing.is_empty() {
        "<span class=\"ok\">none</span>".into()
    } else {
        firing.join("<br>")
    }
}

fn overview_html(app: &App, authed: &Authed, n: &Notice) -> Result<String, WebError> {
    let config = app.state.config();
    let now = app.state.clock.now();
    let statuses = crate::job_status::all_status(&config, &app.state.history, now).map_err(hist)?;
    let mut body = String::new();
    body.push_str(&notice(n));
    body.push_str(
        "<h1>Jobs</h1><table id=\"jobs\"><thead><tr><th>Job</th><th>State</th>\
         <th>Last run</th><th>RPO</th><th>RTO (last drill)</th><th>3-2-1</th><th>Alerts</th>\
         <th>Run durations</th><th></th></tr></thead><tbody>",
    );
    for s in &statuses {
        let last_drill = app.state.history.last_drill(&s.job).map_err(hist)?;
        let durations: Vec<f64> = app
            .db
            .backup_points(&s.job, 30)?
            .iter()
            .map(|p| (p.end.as_millisecond() - p.start.as_millisecond()) as f64 / 1000.0)
            .collect();
        let _ = write!(
            body,
            "<tr data-job=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.job),
            job_link(&s.job),
            state_cell(app, s),
            last_run_cell(s, now),
            rpo_cell(s),
            rto_cell(
                last_drill.as_ref(),
                config
                    .job(&s.job)
                    .and_then(|j| j.rto)
                    .map(|r| r.as_secs_f64())
            ),
            three_two_one_cell(s),
            alerts_cell(app, &s.job),
            charts::sparkline(
                &durations,
                &format!("durations of the last runs of {}", s.job)
            ),
            buttons(authed, &s.job, "/"),
        );
    }
    body.push_str("</tbody></table>");
    if statuses.is_empty() {
        body.push_str("<p class=\"muted\">No jobs are configured.</p>");
    }

    let facts = app.facts.all();
    let live_storage = app.state.live.storage();
    body.push_str(
        "<h2>Repositories</h2><table id=\"repositories\"><thead><tr><th>Repository</th>\
         <th>Location</th><th>Media</th><th>Snapshots</th><th>Size</th><th>Storage</th>\
         <th>Measured</th></tr></thead><tbody>",
    );
    for (name, repo) in &config.repositories {
        let f = facts.get(name).cloned().unwrap_or_default();
        let storage = live_storage
            .get(name)
            .or(f.storage.as_ref())
            .map(|s| {
                format!(
                    "{} of {} used ({:.0}%)",
                    html::bytes(s.used_bytes),
                    html::bytes(s.capacity_bytes),
                    s.percent()
                )
            })
            .unwrap_or_else(|| "<span class=\"muted\">unknown</span>".into());
        let (snapshots, size) = match f.refreshed {
            Some(_) => (f.snapshots.to_string(), html::bytes(f.size_bytes)),
            None => ("–".into(), "–".into()),
        };
        let measured = match (&f.error, f.refreshed) {
            (Some(e), _) => format!("<span class=\"error\">{}</span>", escape(e)),
            (None, Some(t)) => html::time(t),
            (None, None) => "<span class=\"muted\">not yet</span>".into(),
        };
        let _ = write!(
            body,
            "<tr><td><a href=\"/repositories/{}/snapshots\">{}</a></td><td>{}</td>\
             <td>{}{}</td><td class=\"num\">{snapshots}</td><td class=\"num\">{size}</td>\
             <td>{storage}</td><td>{measured}</td></tr>",
            url_component(name),
            escape(name),
            escape(&repo.location),
            escape(&repo.media),
            if repo.offsite { ", offsite" } else { "" },
        );
    }
    body.push_str("</tbody></table>");
    Ok(html::page_with_nav(
        "Overview",
        &body,
        &auth::logout_button(authed),
    ))
}

pub async fn overview(
    State(app): State<Shared>,
    axum::Extension(authed): axum::Extension<Authed>,
    Query(n): Query<Notice>,
) -> Result<Html<String>, WebError> {
    blocking(move || overview_html(&app, &authed, &n))
        .await
        .map(Html)
}

fn opt_num(v: Option<u64>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

fn opt_bytes(v: Option<u64>) -> String {
    v.map_or_else(String::new, html::bytes)
}

fn drill_html(d: &RunRecord) -> String {
    let mut out = format!(
        "<div class=\"drill\"><h3>{} {}</h3>",
        html::status(if d.status == RunStatus::Success {
            "passed"
        } else {
            d.status.as_str()
        }),
        html::time(d.start)
    );
    let Some(r) = drill_report(d) else {
        if let Some(e) = &d.error {
            let _ = write!(out, "<p class=\"error\">{}</p>", escape(e));
        }
        out.push_str("</div>");
        return out;
    };
    let _ = write!(
        out,
        "<p>Snapshot {} of {} ({}), tier {}, {} files, {}, took {}</p>",
        escape(r.snapshot.get(..8).unwrap_or(&r.snapshot)),
        html::time(r.snapshot_time),
        escape(&r.repository),
        escape(r.tier.as_str()),
        r.files,
        html::bytes(r.bytes),
        html::seconds(r.duration_secs)
    );
    if let Some(e) = &r.error {
        let _ = write!(out, "<p class=\"error\">{}</p>", escape(e));
    }
    out.push_str(
        "<table class=\"steps\"><thead><tr><th>Step</th><th>Result</th><th>Time</th>\
         <th>Reasons</th></tr></thead><tbody>",
    );
    for s in &r.steps {
        let name = serde_json::to_value(s.name)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let status = match s.status {
            StepStatus::Passed => "passed",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        };
        let reasons: Vec<String> = s
            .reasons
            .iter()
            .map(|x| escape(x))
            .chain(
                s.notes
                    .iter()
                    .map(|x| format!("<span class=\"muted\">{}</span>", escape(x))),
            )
            .collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&name),
            html::status(status),
            html::seconds(s.duration_secs),
            reasons.join("<br>")
        );
    }
    out.push_str("</tbody></table>");
    if let Some(p) = &r.performance {
        let _ = write!(
            out,
            "<p>Recovery {} ({}/s); projected full restore of {} in {}{}</p>",
            html::seconds(p.recovery_secs),
            html::bytes(p.throughput_bytes_per_sec as u64),
            html::bytes(p.full_size_bytes),
            html::seconds(p.projected_full_restore_secs),
            p.rto_secs
                .map(|rto| format!(", RTO {}", html::seconds(rto)))
                .unwrap_or_default()
        );
    }
    out.push_str("</div>");
    out
}

/// The job's charts: repository growth and run duration, over its last 500 backups.
fn job_charts(app: &App, name: &str) -> Result<String, WebError> {
    let mut body = String::new();
    let points = app.db.backup_points(name, 500)?;
    let mut total = 0u64;
    let growth: Vec<Point> = points
        .iter()
        .map(|p| {
            total += p.bytes_added.unwrap_or(0);
            Point {
                time: p.end,
                value: total as f64,
                good: RunStatus::Success.as_str() == p.status || p.status == "incomplete",
                label: format!("{}: {} in all", html::time(p.end), html::bytes(total)),
            }
        })
        .collect();
    let durations: Vec<Point> = points
        .iter()
        .map(|p| {
            let secs = (p.end.as_millisecond() - p.start.as_millisecond()) as f64 / 1000.0;
            Point {
                time: p.start,
                value: secs,
                good: p.status == "success" || p.status == "incomplete",
                label: format!(
                    "{}: {} ({})",
                    html::time(p.start),
                    html::seconds(secs),
                    p.status
                ),
            }
        })
        .collect();
    let _ = write!(
        body,
        "<h2>Charts</h2><div class=\"charts\">{}{}</div>",
        charts::line_chart(
            "Repository growth (bytes added, cumulative)",
            "growth",
            &growth,
            |v| html::bytes(v as u64)
        ),
        charts::line_chart("Run duration", "duration", &durations, html::seconds),
    );
    Ok(body)
}

/// The job's last 100 runs, newest first.
fn runs_table(app: &App, name: &str, now: jiff::Timestamp) -> Result<String, WebError> {
    let mut body = String::new();
    let runs = app.state.history.runs(Some(name), 100).map_err(hist)?;
    body.push_str(
        "<h2>Runs</h2><table id=\"runs\"><thead><tr><th>Type</th><th>Trigger</th>\
         <th>Start</th><th>Duration</th><th>Status</th><th>Files</th><th>Read</th>\
         <th>Added</th><th>Snapshot</th><th>Error</th></tr></thead><tbody>",
    );
    for r in &runs {
        let kind = match &r.backup_type {
            Some(t) => format!("{} ({t})", r.kind),
            None => r.kind.clone(),
        };
        let duration = match r.end {
            Some(end) => html::between(r.start, end),
            None => format!("{} so far", html::between(r.start, now)),
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td><code>{}</code></td><td class=\"error\">{}</td></tr>",
            escape(&kind),
            escape(&r.trigger),
            html::time(r.start),
            duration,
            html::status(r.status.as_str()),
            opt_num(r.files),
            opt_bytes(r.bytes_read),
            opt_bytes(r.bytes_added),
            escape(
                r.snapshot_id
                    .as_deref()
                    .map(|s| s.get(..8).unwrap_or(s))
                    .unwrap_or("")
            ),
            escape(r.error.as_deref().unwrap_or("")),
        );
    }
    body.push_str("</tbody></table>");
    Ok(body)
}

fn job_html(app: &App, authed: &Authed, job: &JobConfig, n: &Notice) -> Result<String, WebError> {
    let name = job.name.as_str();
    let now = app.state.clock.now();
    let status = crate::job_status::job_status(&app.state.history, job, now).map_err(hist)?;
    let mut body = notice(n);
    let repos: Vec<String> = job
        .repositories
        .iter()
        .map(|r| {
            format!(
                "<a href=\"/repositories/{}/snapshots\">{}</a>",
                url_component(r),
                escape(r)
            )
        })
        .collect();
    let back = format!("/jobs/{}", url_component(name));
    let _ = write!(
        body,
        "<h1>Job {}</h1><p>{}</p><table class=\"facts\"><tr><th>Source</th><td>{}</td></tr>\
         <tr><th>Schedule</th><td>{} ({})</td></tr><tr><th>Repositories</th><td>{}</td></tr>\
         <tr><th>State</th><td>{}</td></tr><tr><th>Last run</th><td>{}</td></tr>\
         <tr><th>RPO</th><td>{}</td></tr><tr><th>RTO</th><td>{}</td></tr>\
         <tr><th>3-2-1</th><td>{}</td></tr><tr><th>Alerts</th><td>{}</td></tr></table>",
        escape(name),
        buttons(authed, name, &back),
        escape(&status.source),
        escape(&status.schedule),
        escape(&status.timezone),
        repos.join(", "),
        state_cell(app, &status),
        last_run_cell(&status, now),
        rpo_cell(&status),
        rto_cell(
            app.state.history.last_drill(name).map_err(hist)?.as_ref(),
            job.rto.map(|r| r.as_secs_f64())
        ),
        three_two_one_cell(&status),
        alerts_cell(app, name),
    );

    body.push_str(&job_charts(app, name)?);
    let drills = app
        .state
        .history
        .runs_of_kind(Some(name), "drill", 10)
        .map_err(hist)?;
    body.push_str("<h2>Drills</h2>");
    if drills.is_empty() {
        body.push_str("<p class=\"muted\">No drill yet.</p>");
    }
    for d in &drills {
        body.push_str(&drill_html(d));
    }

    body.push_str(&runs_table(app, name, now)?);
    Ok(html::page_with_nav(
        &format!("Job {name}"),
        &body,
        &auth::logout_button(authed),
    ))
}

pub async fn job(
    State(app): State<Shared>,
    axum::Extension(authed): axum::Extension<Authed>,
    Path(name): Path<String>,
    Query(n): Query<Notice>,
) -> Result<Html<String>, WebError> {
    blocking(move || {
        let config = app.state.config();
        let job = config
            .job(&name)
            .ok_or_else(|| WebError::NotFound(format!("no job {name:?} in the configuration")))?;
        job_html(&app, &authed, job, &n)
    })
    .await
    .map(Html)
}

#[derive(serde::Deserialize, Default)]
pub struct ActionForm {
    form_token: Option<String>,
    back: Option<String>,
}

/// A local path to come back to (never another site).
fn safe_back(back: Option<&str>) -> String {
    match back {
        Some(b)
            if b.starts_with('/') && !b.starts_with("//") && !b.contains(['\\', '\r', '\n']) =>
        {
            b.to_string()
        }
        _ => "/".into(),
    }
}

fn queue(
    app: &Shared,
    authed: &Authed,
    headers: &HeaderMap,
    form: Result<axum::Form<ActionForm>, FormRejection>,
    job: String,
    drill: bool,
) -> Result<Response, WebError> {
    let form = form.map(|f| f.0).unwrap_or_default();
    auth::check_post(authed, headers, form.form_token.as_deref())?;
    if app.state.config().job(&job).is_none() {
        return Err(WebError::NotFound(format!(
            "no job {job:?} in the configuration"
        )));
    }
    let what = if drill { "drill" } else { "run" };
    app.state.live.request(if drill {
        Request::Drill { job: job.clone() }
    } else {
        Request::Run { job: job.clone() }
    });
    let back = safe_back(form.back.as_deref());
    let sep = if back.contains('?') { '&' } else { '?' };
    let to = format!("{back}{sep}queued={what}:{}", url_component(&job));
    Ok(Redirect::to(&to).into_response())
}

pub async fn request_run(
    State(app): State<Shared>,
    Path(job): Path<String>,
    axum::Extension(authed): axum::Extension<Authed>,
    headers: HeaderMap,
    form: Result<axum::Form<ActionForm>, FormRejection>,
) -> Result<Response, WebError> {
    queue(&app, &authed, &headers, form, job, false)
}

pub async fn request_drill(
    State(app): State<Shared>,
    Path(job): Path<String>,
    axum::Extension(authed): axum::Extension<Authed>,
    headers: HeaderMap,
    form: Result<axum::Form<ActionForm>, FormRejection>,
) -> Result<Response, WebError> {
    queue(&app, &authed, &headers, form, job, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coming_back_stays_on_this_site() {
        assert_eq!(safe_back(Some("/jobs/a")), "/jobs/a");
        assert_eq!(safe_back(Some("//evil.example/")), "/");
        assert_eq!(safe_back(Some("https://evil.example/")), "/");
        assert_eq!(safe_back(Some("/\\evil")), "/");
        assert_eq!(safe_back(None), "/");
    }
}
