//! CPU and I/O priority (nice, ionice) for the calling thread.
//!
//! On Linux both are per thread and inherited by threads and processes created afterwards,
//! so a job run sets them on its own thread first: the backup's worker threads and the
//! hooks it starts inherit them, and the daemon's other threads are untouched.

use crate::config::IoPriority;

/// The kernel refused a priority (e.g. raising it without the privilege).
#[derive(Debug, thiserror::Error)]
pub enum PriorityError {
    #[error("setting nice {nice}: {source}")]
    Nice { nice: i32, source: std::io::Error },
    #[error("setting ionice {priority:?}: {source}")]
    Ionice {
        priority: IoPriority,
        source: std::io::Error,
    },
}

/// Sets the niceness of the calling thread (and what it starts from now on).
#[allow(unsafe_code)]
pub fn set_nice(nice: i32) -> Result<(), PriorityError> {
    // SAFETY: setpriority takes plain integers and only changes scheduling; with
    // PRIO_PROCESS and who = 0 Linux applies it to the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(PriorityError::Nice {
            nice,
            source: std::io::Error::last_os_error(),
        })
    }
}

/// Sets the I/O priority of the calling thread (Linux ioprio_set).
#[allow(unsafe_code)]
pub fn set_ionice(p: IoPriority) -> Result<(), PriorityError> {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const CLASS_SHIFT: libc::c_long = 13;
    let (class, level): (libc::c_long, libc::c_long) = match p {
        IoPriority::Realtime(l) => (1, l.into()),
        IoPriority::BestEffort(l) => (2, l.into()),
        IoPriority::Idle => (3, 0),
    };
    // SAFETY: ioprio_set takes three integers; who = 0 is the calling thread.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_long,
            (class << CLASS_SHIFT) | level,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(PriorityError::Ionice {
            priority: p,
            source: std::io::Error::last_os_error(),
        })
    }
}

/// The niceness of the calling thread.
#[allow(unsafe_code)]
pub fn current_nice() -> i32 {
    // SAFETY: getpriority reads a value; errno is irrelevant for the values used here.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_applies_to_the_thread_and_what_it_starts() {
        std::thread::spawn(|| {
            let before = current_nice();
            set_nice((before + 3).min(19)).unwrap();
            assert_eq!(current_nice(), (before + 3).min(19));
            let child = std::process::Command::new("sh")
                .arg("-c")
                .arg("cut -d' ' -f19 /proc/self/stat")
                .output()
                .unwrap();
            let child_nice: i32 = String::from_utf8_lossy(&child.stdout)
                .trim()
                .parse()
                .unwrap();
            assert_eq!(child_nice, (before + 3).min(19));
            set_ionice(IoPriority::Idle).unwrap();
        })
        .join()
        .unwrap();
    }
}
