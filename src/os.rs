//! The few operating-system calls the wrapper needs beyond std, through
//! rustix's safe wrappers.
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{pidfd_open, Pid, PidfdFlags, Signal};

/// Signals a process group (SIGTERM, or SIGKILL when `kill`); a missing
/// group is not an error.
pub fn signal_group(pgid: u32, kill: bool) {
    if let Some(pgid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) {
        let signal = if kill { Signal::KILL } else { Signal::TERM };
        let _ = rustix::process::kill_process_group(pgid, signal);
    }
}

/// A handle that becomes readable when the process exits, without polling
/// the process table (Linux 5.3+). None when the process is already gone or
/// the kernel has no pidfd.
pub fn process_exit_handle(pid: u32) -> Option<OwnedFd> {
    let pid = i32::try_from(pid).ok().and_then(Pid::from_raw)?;
    pidfd_open(pid, PidfdFlags::empty()).ok()
}

/// Waits up to `timeout` for any of `handles` to become readable; returns the
/// indexes that are. A signal (BOINC's timer) ends the wait early: callers loop.
pub fn wait_readable(handles: &[&OwnedFd], timeout: Duration) -> Vec<usize> {
    let mut fds: Vec<PollFd<'_>> = handles.iter().map(|h| PollFd::new(*h, PollFlags::IN)).collect();
    let timeout = Timespec {
        tv_sec: timeout.as_secs() as _,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    match poll(&mut fds, Some(&timeout)) {
        Ok(n) if n > 0 => fds
            .iter()
            .enumerate()
            .filter(|(_, fd)| !fd.revents().is_empty())
            .map(|(i, _)| i)
            .collect(),
        _ => Vec::new(),
    }
}

/// When this host booted (Unix time), from /proc/stat.
pub fn boot_time() -> Option<i64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
}

/// The wrapper's user and group ids.
pub fn user_and_group() -> (u32, u32) {
    (rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw())
}
