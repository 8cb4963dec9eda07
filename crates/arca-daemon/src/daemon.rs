//! The daemon loop: loads and checks the configuration (it never starts with a bad one),
//! restores each job's last served slot from the history (so missed runs are caught up
//! once), starts due runs on their own threads (one run per job at a time), reloads the
//! configuration when asked (SIGHUP; a file that fails the check is refused and the
//! running configuration kept), and on stop (SIGTERM) lets running jobs reach a
//! checkpoint before returning. It also runs each job's restore drills on their schedule,
//! starts the runs and drills the dashboard asks for, and every few seconds (and after
//! each run) evaluates the alert rules and hands new alerts, repeats and resolves to a
//! sender thread (so a slow channel never holds up the loop). With `[daemon] listen` it
//! serves the web dashboard, `/api/status` and `/metrics` ([`crate::web`]).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::activity::Request;
use crate::alert_tracker::{Monitor, Outgoing, drill_due};
use crate::clock::{Clock, ScaledClock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::history::{History, HistoryError};
use crate::job_drill::{DrillRequest, drill_job};
use crate::runner::{EventLog, RunContext, Trigger, run_job};
use crate::scheduler::Scheduler;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    TestClock(#[from] crate::clock::ClockError),
    #[error(transparent)]
    Instance(#[from] crate::instance::InstanceError),
    #[error(transparent)]
    Token(#[from] crate::web::token_file::TokenFileError),
}

/// How the caller controls a running daemon.
#[derive(Clone)]
pub struct Control {
    /// True when the daemon should stop (SIGTERM, Ctrl-C).
    pub stop: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Set to ask for a reload (SIGHUP); the daemon clears it.
    pub reload: Arc<AtomicBool>,
}

/// The longest the loop sleeps before looking at its flags again.
const POLL: Duration = Duration::from_millis(200);

/// How often the alert rules and the drill schedules are looked at (also right after a
/// run or drill ends).
const EVALUATE_EVERY: Duration = Duration::from_secs(5);

/// Progress of a daemon drill: nothing to show, stops when the daemon stops.
struct StopOnly(Arc<dyn Fn() -> bool + Send + Sync>);

impl arca_core::progress::Progress for StopOnly {
    fn should_stop(&self) -> bool {
        (self.0)()
    }
}

/// Hands alerts to their channels, one message after the other (in order), and logs each
/// delivery. Ends when the loop drops its sender.
fn alert_sender(rx: mpsc::Receiver<Outgoing>, events: Arc<dyn EventLog>) {
    for o in rx {
        if o.channels.is_empty() {
            for a in &o.alerts {
                events.event(
                    Some(&a.job),
                    &format!("alert (no channel configured): {}", a.title()),
                );
            }
            continue;
        }
        for d in crate::notify::dispatch(&o.channels, &o.alerts) {
            let what = format!("alert {} {} to {}", d.rule, d.state.as_str(), d.channel);
            match d.error {
                None => events.event(Some(&d.job), &format!("{what}: sent")),
                Some(e) => events.event(Some(&d.job), &format!("{what}: not sent: {e}")),
            }
        }
    }
}

/// The clock: the system's, or the test clock `ARCA_TEST_CLOCK` names.
fn daemon_clock() -> Result<Arc<dyn Clock>, DaemonError> {
    match std::env::var("ARCA_TEST_CLOCK") {
        Ok(s) if !s.is_empty() => Ok(Arc::new(
            ScaledClock::parse(&s).map_err(DaemonError::TestClock)?,
        )),
        _ => Ok(Arc::new(SystemClock)),
    }
}

fn apply_daemon_limits(config: &Config, events: &dyn EventLog) {
    if let Some(n) = config.daemon.nice
        && let Err(e) = crate::limits::set_nice(n)
    {
        events.event(None, &format!("warning: {e}"));
    }
    if let Some(p) = config.daemon.ionice
        && let Err(e) = crate::limits::set_ionice(p)
    {
        events.event(None, &format!("warning: {e}"));
    }
}

struct DoneGuard {
    tx: mpsc::Sender<String>,
    job: String,
}

impl Drop for DoneGuard {
    fn drop(&mut self) {
        let _ = self.tx.send(std::mem::take(&mut self.job));
    }
}

/// What a worker thread (a run or a drill) takes from the loop.
struct Worker {
    config: Arc<Config>,
    history: Arc<History>,
    clock: Arc<dyn Clock>,
    events: Arc<dyn EventLog>,
    stop: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl Worker {
    /// Runs `work` on a thread named `name`; `done` gets `job` when the work ends, also
    /// when it panics or the thread cannot start.
    fn spawn(
        self,
        name: String,
        job: &str,
        done: mpsc::Sender<String>,
        work: impl FnOnce(&RunContext<'_>, &Arc<dyn Fn() -> bool + Send + Sync>) + Send + 'static,
    ) -> std::io::Result<JoinHandle<()>> {
        let guard = DoneGuard {
            tx: done,
            job: job.to_string(),
        };
        std::thread::Builder::new().name(name).spawn(move || {
            let _done = guard;
            let ctx = RunContext {
                config: &self.config,
                history: &self.history,
                clock: self.clock.as_ref(),
                stop: &*self.stop,
                events: self.events.as_ref(),
            };
            work(&ctx, &self.stop);
        })
    }
}

/// Runs the daemon until `control.stop` turns true.
pub fn run(
    config_path: &Path,
    control: Control,
    events: Arc<dyn EventLog>,
) -> Result<(), DaemonError> {
    let config_path: PathBuf = config_path.to_path_buf();
    crate::trace::install(events.clone());
    let config = Arc::new(Config::load(&config_path)?);
    // Before the history is touched: a second daemon would mark the first one's runs
    // abandoned and serve its slots.
    let _instance = crate::instance::DaemonLock::acquire(&config.daemon.state)?;
    apply_daemon_limits(&config, events.as_ref());
    let history = Arc::new(History::open(&config.daemon.state)?);
    let abandoned = history.close_abandoned()?;
    if abandoned > 0 {
        events.event(
            None,
            &format!(
                "{abandoned} runs of a previous daemon were left unfinished (marked abandoned)"
            ),
        );
    }
    let clock = daemon_clock()?;
    let mut monitor = Monitor::load(&history)?;
    let mut sched = Scheduler::new(clock.clone());
    sched.set_max_running(config.daemon.max_concurrent_runs);
    for (name, job) in &config.jobs {
        sched.set_job(name, job.plan.clone(), history.last_slot(name)?);
    }
    let shared = Arc::new(RwLock::new(config.clone()));
    let live = Arc::new(crate::activity::Live::new());
    let http_stop = Arc::new(AtomicBool::new(false));
    let mut http = None;
    if let Some(addr) = config.daemon.listen {
        // A token is always required: made now when the configuration names none. Only
        // its path is logged.
        if let Some((path, made)) = crate::web::prepare_token(&config)? {
            let how = if made { "made now" } else { "kept" };
            events.event(
                None,
                &format!("dashboard token in {} ({how})", path.display()),
            );
        }
        let listener =
            TcpListener::bind(addr).map_err(|source| DaemonError::Listen { addr, source })?;
        let local = listener.local_addr().unwrap_or(addr);
        events.event(None, &format!("listening on http://{local}/"));
        let state = crate::web::WebState {
            config: shared.clone(),
            history: history.clone(),
            clock: clock.clone(),
            live: live.clone(),
        };
        let s = http_stop.clone();
        http = Some(std::thread::spawn(move || {
            crate::web::serve(listener, state, s)
        }));
    }
    events.event(
        None,
        &format!(
            "daemon started: {} jobs, configuration {}, history {}",
            config.jobs.len(),
            config_path.display(),
            config.daemon.state.display()
        ),
    );
    for name in sched.job_names() {
        if let Some(t) = sched.next_run(&name) {
            events.event(Some(&name), &format!("next run at {t}"));
        }
    }

    let (done_tx, done_rx) = mpsc::channel::<String>();
    let (drill_done_tx, drill_done_rx) = mpsc::channel::<String>();
    let (alert_tx, alert_rx) = mpsc::channel::<Outgoing>();
    let sender = {
        let events = events.clone();
        std::thread::Builder::new()
            .name("alert sender".into())
            .spawn(move || alert_sender(alert_rx, events))
            .ok()
    };
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let mut last_evaluation: Option<std::time::Instant> = None;
    loop {
        if (control.stop)() {
            break;
        }
        if control.reload.swap(false, Ordering::SeqCst) {
            match Config::load(&config_path) {
                Ok(new) => {
                    let new = Arc::new(new);
                    for (name, job) in &new.jobs {
                        sched.set_job(name, job.plan.clone(), history.last_slot(name)?);
                    }
                    sched.set_max_running(new.daemon.max_concurrent_runs);
                    let names: Vec<String> = new.jobs.keys().cloned().collect();
                    sched.retain_jobs(&names);
                    *shared.write().unwrap_or_else(|p| p.into_inner()) = new.clone();
                    events.event(
                        None,
                        &format!("configuration reloaded: {} jobs", new.jobs.len()),
                    );
                }
                Err(e) => events.event(
                    None,
                    &format!("reload refused, the running configuration stays:\n{e}"),
                ),
            }
        }
        let mut ended = false;
        while let Ok(job) = drill_done_rx.try_recv() {
            live.ended(&job, "drill");
            ended = true;
        }
        while let Ok(job) = done_rx.try_recv() {
            ended = true;
            live.ended(&job, "backup");
            sched.finished(&job);
            let still_configured = shared
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .jobs
                .contains_key(&job);
            if !still_configured {
                // Removed by a reload while it ran.
                sched.remove_job(&job);
                continue;
            }
            if let Some(t) = sched.next_run(&job) {
                events.event(Some(&job), &format!("next run at {t}"));
            }
        }
        workers.retain(|w| !w.is_finished());
        let cfg_now = shared.read().unwrap_or_else(|p| p.into_inner()).clone();
        let worker = || Worker {
            config: cfg_now.clone(),
            history: history.clone(),
            clock: clock.clone(),
            events: events.clone(),
            stop: control.stop.clone(),
        };
        let spawn_drill = |job: &str, trigger: Trigger, workers: &mut Vec<JoinHandle<()>>| {
            if live.running_of(job).iter().any(|r| r.kind == "drill") {
                events.event(Some(job), "a drill of this job is already running");
                return;
            }
            live.started(job, "drill", clock.now());
            let name = job.to_string();
            let spawned = worker().spawn(
                format!("drill {job}"),
                job,
                drill_done_tx.clone(),
                move |ctx, stop| {
                    let progress = StopOnly(stop.clone());
                    if let Err(e) =
                        drill_job(ctx, &name, trigger, &DrillRequest::default(), &progress)
                    {
                        ctx.events
                            .event(Some(&name), &format!("drill not started: {e}"));
                    }
                },
            );
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) => events.event(None, &format!("cannot start a thread for a drill: {e}")),
            }
        };
        // Requests from the dashboard.
        let mut manual = Vec::new();
        for r in live.take_requests() {
            match r {
                Request::Run { job } => {
                    if !cfg_now.jobs.contains_key(&job) {
                        events.event(None, &format!("run requested for unknown job {job:?}"));
                    } else if sched.start_manual(&job) {
                        manual.push(job);
                    } else {
                        events.event(Some(&job), "run requested, but the job is running");
                    }
                }
                Request::Drill { job } => {
                    if cfg_now.jobs.contains_key(&job) {
                        spawn_drill(&job, Trigger::Manual, &mut workers);
                    } else {
                        events.event(None, &format!("drill requested for unknown job {job:?}"));
                    }
                }
            }
        }
        // Drill schedules and alert rules.
        let evaluate_now = ended || last_evaluation.is_none_or(|t| t.elapsed() >= EVALUATE_EVERY);
        if evaluate_now {
            last_evaluation = Some(std::time::Instant::now());
            let now = clock.now();
            for job in cfg_now.jobs.values() {
                if live.running_of(&job.name).iter().any(|r| r.kind == "drill") {
                    continue;
                }
                match drill_due(job, &history, now) {
                    Ok(true) => spawn_drill(&job.name, Trigger::Schedule(now), &mut workers),
                    Ok(false) => {}
                    Err(e) => events.event(Some(&job.name), &format!("drill schedule: {e}")),
                }
            }
            match monitor.evaluate(&cfg_now, &history, &live, now) {
                Ok(outgoing) => {
                    for o in outgoing {
                        let _ = alert_tx.send(o);
                    }
                }
                Err(e) => events.event(None, &format!("alert evaluation: {e}")),
            }
        }
        let manual_runs = manual.into_iter().map(|job| (job, None));
        let due_runs = sched.due().into_iter().map(|d| {
            let job = d.job.clone();
            (job, Some(d))
        });
        for (job_name, due) in manual_runs.chain(due_runs).collect::<Vec<_>>() {
            live.started(&job_name, "backup", clock.now());
            let name = job_name.clone();
            let spawned = worker().spawn(
                format!("job {job_name}"),
                &job_name,
                done_tx.clone(),
                move |ctx, _| {
                    let (trigger, backup_type, stop_at) = match &due {
                        Some(d) => (Trigger::Schedule(d.slot), Some(d.backup_type), d.stop_at),
                        None => (Trigger::Manual, None, None),
                    };
                    if let Err(e) = run_job(ctx, &name, trigger, backup_type, stop_at) {
                        ctx.events
                            .event(Some(&name), &format!("run not started: {e}"));
                    }
                },
            );
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) => events.event(None, &format!("cannot start a thread for a run: {e}")),
            }
        }
        let now = clock.now();
        let sleep = sched
            .next_wake()
            .map(|w| {
                let ms = w.as_millisecond() - now.as_millisecond();
                Duration::from_millis(ms.max(0) as u64)
            })
            .unwrap_or(POLL)
            .min(POLL);
        std::thread::sleep(sleep.max(Duration::from_millis(5)));
    }
    if !workers.is_empty() {
        events.event(
            None,
            &format!(
                "stopping: waiting for {} running jobs to reach a checkpoint",
                workers.len()
            ),
        );
    }
    for w in workers {
        let _ = w.join();
    }
    // The sender delivers what is queued (each channel has its timeout), then ends.
    drop(alert_tx);
    if let Some(h) = sender {
        let _ = h.join();
    }
    http_stop.store(true, Ordering::SeqCst);
    if let Some(h) = http {
        let _ = h.join();
    }
    events.event(None, "daemon stopped");
    Ok(())
}
