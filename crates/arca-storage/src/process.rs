//! Which host and process wrote something, and whether that process is gone: temporary
//! files of local writes, locks and delete probes carry a fingerprint of the host, the
//! writer's pid and its start time, so what a killed process left can be told from what a
//! live one is still writing (also after the kernel gave the pid to another process).

use std::fs;

/// This host's name (of the process's UTS namespace), `unknown` where it cannot be read.
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Short fingerprint of this host's name: the first 16 hex digits of its BLAKE3 hash.
pub fn host_tag() -> String {
    blake3::hash(hostname().as_bytes()).to_hex()[..16].to_string()
}

/// When process `pid` started, in clock ticks since boot (field 22 of `/proc/PID/stat`);
/// `None` when no such process exists or procfs cannot be read.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether process `pid` of this host, started at `start` (when known), has ended: no
/// process has that pid, or the one that has it started at another time (the pid was
/// reused). Without procfs nothing can be told, and the answer is no (what it left then
/// goes by age).
pub fn process_gone(pid: u32, start: Option<u64>) -> bool {
    if process_start(std::process::id()).is_none() {
        return false;
    }
    match process_start(pid) {
        None => true,
        Some(now) => start.is_some_and(|s| s != now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_pid_is_told_from_the_process_that_had_it() {
        let me = std::process::id();
        let start = process_start(me);
        assert!(start.is_some(), "procfs gives this process's start time");
        assert!(!process_gone(me, start));
        assert!(!process_gone(me, None));
        // The same pid with another start time is a later process: the old one is gone.
        assert!(process_gone(me, start.map(|s| s + 1)));
        // A pid no process can have.
        assert!(process_gone(u32::MAX, None));
        assert_eq!(host_tag().len(), 16);
    }
}
