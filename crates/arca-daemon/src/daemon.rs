//! The daemon loop: loads and checks the configuration (it never starts with a bad one),
//! restores each job's last served slot from the history (so missed runs are caught up
//! once), starts due runs on their own threads (one run per job at a time), reloads the
//! configuration when asked (SIGHUP; a file that fails the check is refused and the
//! running configuration kept), and on stop (SIGTERM) lets running jobs reach a
//! checkpoint before returning. With `[daemon] listen` it serves `GET /api/status` (JSON).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::history::{History, HistoryError};
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

/// Runs the daemon until `control.stop` turns true.
pub fn run(
    config_path: &Path,
    control: Control,
    events: Arc<dyn EventLog>,
) -> Result<(), DaemonError> {
    let config_path: PathBuf = config_path.to_path_buf();
    let config = Arc::new(Config::load(&config_path)?);
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
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut sched = Scheduler::new(clock.clone());
    sched.set_max_running(config.daemon.max_concurrent_runs);
    for (name, job) in &config.jobs {
        sched.set_job(name, job.plan.clone(), history.last_slot(name)?);
    }
    let shared = Arc::new(RwLock::new(config.clone()));
    let live = Arc::new(crate::live::Live::new());
    let http_stop = Arc::new(AtomicBool::new(false));
    let mut http = None;
    if let Some(addr) = config.daemon.listen {
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
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
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
        while let Ok(job) = done_rx.try_recv() {
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
        for due in sched.due() {
            let cfg = shared.read().unwrap_or_else(|p| p.into_inner()).clone();
            let (history, clock, run_events, stop, done) = (
                history.clone(),
                clock.clone(),
                events.clone(),
                control.stop.clone(),
                done_tx.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name(format!("job {}", due.job))
                .spawn(move || {
                    // Tells the loop the job is done even if the run panics.
                    let _done = DoneGuard {
                        tx: done,
                        job: due.job.clone(),
                    };
                    let ctx = RunContext {
                        config: &cfg,
                        history: &history,
                        clock: clock.as_ref(),
                        stop: &*stop,
                        events: run_events.as_ref(),
                    };
                    if let Err(e) = run_job(
                        &ctx,
                        &due.job,
                        Trigger::Schedule(due.slot),
                        Some(due.backup_type),
                        due.stop_at,
                    ) {
                        run_events.event(Some(&due.job), &format!("run not started: {e}"));
                    }
                });
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
    http_stop.store(true, Ordering::SeqCst);
    if let Some(h) = http {
        let _ = h.join();
    }
    events.event(None, "daemon stopped");
    Ok(())
}
