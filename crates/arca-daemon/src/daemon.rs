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
    let mut sched = Scheduler::new(clock.clone());
    sched.set_max_running(config.daemon.max_concurrent_runs);
    for (name, job) in &config.jobs {
        sched.set_job(name, job.plan.clone(), history.last_slot(name)?);
    }
    let shared = Arc::new(RwLock::new(config.clone()));
    let live = Arc::new(crate::activity::Live::new());
    let http_stop = Arc::new(AtomicBool::new(false));
    let http = match config.daemon.listen {
        Some(addr) => {
            let state = crate::web::WebState {
                config: shared.clone(),
                history: history.clone(),
                clock: clock.clone(),
                live: live.clone(),
            };
            Some(serve_dashboard(
                &config,
                addr,
                state,
                &http_stop,
                events.as_ref(),
            )?)
        }
        None => None,
    };
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
    let (alert_tx, alert_rx) = mpsc::channel::<Outgoing>();
    let sender = {
        let events = events.clone();
        std::thread::Builder::new()
            .name("alert sender".into())
            .spawn(move || alert_sender(alert_rx, events))
            .ok()
    };
    let mut daemon = DaemonLoop {
        monitor: Monitor::load(&history)?,
        config_path,
        control,
        events: events.clone(),
        history,
        clock,
        sched,
        shared,
        live,
        done: mpsc::channel(),
        drill_done: mpsc::channel(),
        alert_tx,
        workers: Vec::new(),
        last_evaluation: None,
    };
    daemon.serve()?;
    // The sender delivers what is queued (each channel has its timeout), then ends.
    drop(daemon);
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

/// Starts the web dashboard on `addr` (the token made now when the configuration names
/// none; only its path is logged).
fn serve_dashboard(
    config: &Config,
    addr: SocketAddr,
    state: crate::web::WebState,
    stop: &Arc<AtomicBool>,
    events: &dyn EventLog,
) -> Result<JoinHandle<()>, DaemonError> {
    if let Some((path, made)) = crate::web::prepare_token(config)? {
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
    let stop = stop.clone();
    Ok(std::thread::spawn(move || {
        crate::web::serve(listener, state, stop)
    }))
}

/// The loop's state: the scheduler, the alert tracker, the running workers and the
/// channels they report their end on.
struct DaemonLoop {
    config_path: PathBuf,
    control: Control,
    events: Arc<dyn EventLog>,
    history: Arc<History>,
    clock: Arc<dyn Clock>,
    sched: Scheduler,
    monitor: Monitor,
    shared: Arc<RwLock<Arc<Config>>>,
    live: Arc<crate::activity::Live>,
    done: (mpsc::Sender<String>, mpsc::Receiver<String>),
    drill_done: (mpsc::Sender<String>, mpsc::Receiver<String>),
    alert_tx: mpsc::Sender<Outgoing>,
    workers: Vec<JoinHandle<()>>,
    last_evaluation: Option<std::time::Instant>,
}

impl DaemonLoop {
    /// Turns until the daemon is told to stop, then waits for the running workers.
    fn serve(&mut self) -> Result<(), DaemonError> {
        while !(self.control.stop)() {
            if self.control.reload.swap(false, Ordering::SeqCst) {
                self.reload()?;
            }
            let ended = self.collect_ended();
            self.workers.retain(|w| !w.is_finished());
            let config = self
                .shared
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let manual = self.serve_requests(&config);
            if ended
                || self
                    .last_evaluation
                    .is_none_or(|t| t.elapsed() >= EVALUATE_EVERY)
            {
                self.evaluate(&config);
            }
            self.start_runs(&config, manual);
            self.sleep();
        }
        if !self.workers.is_empty() {
            self.events.event(
                None,
                &format!(
                    "stopping: waiting for {} running jobs to reach a checkpoint",
                    self.workers.len()
                ),
            );
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        Ok(())
    }

    /// Loads the configuration again; one that fails the check is refused.
    fn reload(&mut self) -> Result<(), DaemonError> {
        match Config::load(&self.config_path) {
            Ok(new) => {
                let new = Arc::new(new);
                for (name, job) in &new.jobs {
                    self.sched
                        .set_job(name, job.plan.clone(), self.history.last_slot(name)?);
                }
                self.sched.set_max_running(new.daemon.max_concurrent_runs);
                let names: Vec<String> = new.jobs.keys().cloned().collect();
                self.sched.retain_jobs(&names);
                *self.shared.write().unwrap_or_else(|p| p.into_inner()) = new.clone();
                self.events.event(
                    None,
                    &format!("configuration reloaded: {} jobs", new.jobs.len()),
                );
            }
            Err(e) => self.events.event(
                None,
                &format!("reload refused, the running configuration stays:\n{e}"),
            ),
        }
        Ok(())
    }

    /// Takes note of the runs and drills that ended; whether any did.
    fn collect_ended(&mut self) -> bool {
        let mut ended = false;
        while let Ok(job) = self.drill_done.1.try_recv() {
            self.live.ended(&job, "drill");
            ended = true;
        }
        while let Ok(job) = self.done.1.try_recv() {
            ended = true;
            self.live.ended(&job, "backup");
            self.sched.finished(&job);
            let still_configured = self
                .shared
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .jobs
                .contains_key(&job);
            if !still_configured {
                // Removed by a reload while it ran.
                self.sched.remove_job(&job);
                continue;
            }
            if let Some(t) = self.sched.next_run(&job) {
                self.events.event(Some(&job), &format!("next run at {t}"));
            }
        }
        ended
    }

    fn worker(&self, config: &Arc<Config>) -> Worker {
        Worker {
            config: config.clone(),
            history: self.history.clone(),
            clock: self.clock.clone(),
            events: self.events.clone(),
            stop: self.control.stop.clone(),
        }
    }

    /// Starts a drill of `job` on a thread of its own, unless one is running.
    fn spawn_drill(&mut self, config: &Arc<Config>, job: &str, trigger: Trigger) {
        if self.live.running_of(job).iter().any(|r| r.kind == "drill") {
            self.events
                .event(Some(job), "a drill of this job is already running");
            return;
        }
        self.live.started(job, "drill", self.clock.now());
        let name = job.to_string();
        let spawned = self.worker(config).spawn(
            format!("drill {job}"),
            job,
            self.drill_done.0.clone(),
            move |ctx, stop| {
                let progress = StopOnly(stop.clone());
                if let Err(e) = drill_job(ctx, &name, trigger, &DrillRequest::default(), &progress)
                {
                    ctx.events
                        .event(Some(&name), &format!("drill not started: {e}"));
                }
            },
        );
        match spawned {
            Ok(h) => self.workers.push(h),
            Err(e) => self
                .events
                .event(None, &format!("cannot start a thread for a drill: {e}")),
        }
    }

    /// The dashboard's requests: drills start now; the jobs to run now are returned.
    fn serve_requests(&mut self, config: &Arc<Config>) -> Vec<String> {
        let mut manual = Vec::new();
        for r in self.live.take_requests() {
            match r {
                Request::Run { job } => {
                    if !config.jobs.contains_key(&job) {
                        self.events
                            .event(None, &format!("run requested for unknown job {job:?}"));
                    } else if self.sched.start_manual(&job) {
                        manual.push(job);
                    } else {
                        self.events
                            .event(Some(&job), "run requested, but the job is running");
                    }
                }
                Request::Drill { job } => {
                    if config.jobs.contains_key(&job) {
                        self.spawn_drill(config, &job, Trigger::Manual);
                    } else {
                        self.events
                            .event(None, &format!("drill requested for unknown job {job:?}"));
                    }
                }
            }
        }
        manual
    }

    /// Drill schedules and alert rules.
    fn evaluate(&mut self, config: &Arc<Config>) {
        self.last_evaluation = Some(std::time::Instant::now());
        let now = self.clock.now();
        for job in config.jobs.values() {
            if self
                .live
                .running_of(&job.name)
                .iter()
                .any(|r| r.kind == "drill")
            {
                continue;
            }
            match drill_due(job, &self.history, now) {
                Ok(true) => self.spawn_drill(config, &job.name, Trigger::Schedule(now)),
                Ok(false) => {}
                Err(e) => self
                    .events
                    .event(Some(&job.name), &format!("drill schedule: {e}")),
            }
        }
        match self
            .monitor
            .evaluate(config, &self.history, &self.live, now)
        {
            Ok(outgoing) => {
                for o in outgoing {
                    let _ = self.alert_tx.send(o);
                }
            }
            Err(e) => self.events.event(None, &format!("alert evaluation: {e}")),
        }
    }

    /// Starts the runs asked for (`manual`) and those the scheduler says are due, each on
    /// a thread of its own.
    fn start_runs(&mut self, config: &Arc<Config>, manual: Vec<String>) {
        let manual_runs = manual.into_iter().map(|job| (job, None));
        let due_runs = self
            .sched
            .due()
            .into_iter()
            .map(|d| (d.job.clone(), Some(d)));
        for (job_name, due) in manual_runs.chain(due_runs).collect::<Vec<_>>() {
            self.live.started(&job_name, "backup", self.clock.now());
            let name = job_name.clone();
            let spawned = self.worker(config).spawn(
                format!("job {job_name}"),
                &job_name,
                self.done.0.clone(),
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
                Ok(h) => self.workers.push(h),
                Err(e) => self
                    .events
                    .event(None, &format!("cannot start a thread for a run: {e}")),
            }
        }
    }

    /// Sleeps until the scheduler's next wake-up, at most [`POLL`].
    fn sleep(&self) {
        let now = self.clock.now();
        let sleep = self
            .sched
            .next_wake()
            .map(|w| {
                let ms = w.as_millisecond() - now.as_millisecond();
                Duration::from_millis(ms.max(0) as u64)
            })
            .unwrap_or(POLL)
            .min(POLL);
        std::thread::sleep(sleep.max(Duration::from_millis(5)));
    }
}
