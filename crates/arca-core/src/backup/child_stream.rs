//! Backing up what a program writes to its standard output: a user's command, or a
//! database tool. The program is a [`ChildProcess`]: it is killed as soon as the run is
//! told to stop (also while it writes nothing), killed when the backup fails, and the
//! snapshot is written only when it exited with status 0.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::ChildStdout;
use std::sync::Arc;

use super::{BackupOptions, BackupResult, backup_stream};
use crate::child::{ChildError, ChildProcess, StderrTail};
use crate::error::{Error, Result};
use crate::index::Index;
use crate::progress::Progress;
use crate::repo::Repository;

/// How the child ended: its error output, or why it failed.
pub type ChildResult = std::result::Result<StderrTail, ChildError>;

/// How a program's output is stored: the one file's name and the snapshot's source.
#[derive(Debug, Clone, Copy)]
pub struct StreamName<'a> {
    pub file: &'a str,
    pub source: &'a str,
}

/// What the caller adds around a child's stream.
pub struct ChildStreamHooks<W, A> {
    /// Puts a reader around the output (to look at it on its way, e.g. a tar header).
    pub wrap: W,
    /// Runs after the stream ended, with how the child ended ([`ChildProcess::finish`]):
    /// returns metadata for the snapshot, or an error that discards it (a caller may word
    /// the child's failure its own way).
    pub accept: A,
}

/// Hooks that keep the output as it is and add no metadata.
pub type PlainHooks = ChildStreamHooks<
    fn(ChildStdout) -> ChildStdout,
    fn(ChildResult) -> Result<BTreeMap<String, String>>,
>;

/// The output as it is, and no metadata.
pub fn plain_stream() -> PlainHooks {
    ChildStreamHooks {
        wrap: |out| out,
        accept: |ended| {
            ended?;
            Ok(BTreeMap::new())
        },
    }
}

/// Backs up the standard output of `child` (the caller piped it) as one file.
pub fn backup_child<R, W, A>(
    repo: &Arc<Repository>,
    index: Arc<Index>,
    child: &ChildProcess,
    name: StreamName<'_>,
    opts: &BackupOptions,
    progress: &dyn Progress,
    hooks: ChildStreamHooks<W, A>,
) -> Result<BackupResult>
where
    R: Read,
    W: FnOnce(ChildStdout) -> R,
    A: FnOnce(ChildResult) -> Result<BTreeMap<String, String>>,
{
    let reader = (hooks.wrap)(child.take_stdout()?);
    let accept = hooks.accept;
    let stop = || progress.should_stop();
    let result = child.stop_when(&stop, || {
        backup_stream(
            repo,
            index,
            reader,
            name.file,
            name.source,
            opts,
            progress,
            || accept(child.finish()),
        )
    });
    // A failed backup (or one that did not wait) leaves no child behind.
    child.kill();
    match result {
        Err(Error::Child(e)) if matches!(*e, ChildError::Stopped { .. }) => Err(Error::Interrupted),
        // The stream broke because the child was stopped: say so, not the read error.
        Err(_) if progress.should_stop() => Err(Error::Interrupted),
        other => other,
    }
}
