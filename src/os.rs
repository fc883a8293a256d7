//! The few operating-system calls the wrapper needs beyond std, through
//! rustix's safe wrappers. On Windows the engine runs inside WSL, beyond the
//! reach of these calls: the stand-ins say "not available" and callers fall
//! back (the shell transport polls, accounting asks the engine's `stats`).
#[cfg(unix)]
pub use unix::*;
#[cfg(windows)]
pub use windows::*;

/// When this host booted (Unix time), from /proc/stat.
pub fn boot_time() -> Option<i64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_time_now() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(unix)]
mod unix {
    use std::os::fd::OwnedFd;
    use std::time::Duration;

    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    use rustix::process::{Pid, Signal};

    /// Signals a process group (SIGTERM, or SIGKILL when `kill`); a missing
    /// group is not an error. True: signals exist here.
    pub fn signal_group(pgid: u32, kill: bool) -> bool {
        if let Some(pgid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) {
            let signal = if kill { Signal::KILL } else { Signal::TERM };
            let _ = rustix::process::kill_process_group(pgid, signal);
        }
        true
    }

    /// Stops (SIGSTOP) or continues (SIGCONT) one process. False when it is
    /// gone or not ours to signal.
    pub fn stop_or_continue(pid: u32, stop: bool) -> bool {
        let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
            return false;
        };
        let signal = if stop { Signal::STOP } else { Signal::CONT };
        rustix::process::kill_process(pid, signal).is_ok()
    }

    /// SIGKILL to one process. False when it is gone or not ours to signal.
    pub fn kill_process(pid: u32) -> bool {
        let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
            return false;
        };
        rustix::process::kill_process(pid, Signal::KILL).is_ok()
    }

    /// Units of the CPU times in /proc/PID/stat.
    pub fn clock_ticks_per_second() -> u64 {
        rustix::param::clock_ticks_per_second()
    }

    /// Unit of the resident set size in /proc/PID/stat.
    pub fn page_size() -> usize {
        rustix::param::page_size()
    }

    /// A handle that becomes readable when the process exits, without polling
    /// the process table (Linux 5.3+). None when the process is already gone or
    /// the kernel has no pidfd.
    #[cfg(target_os = "linux")]
    pub fn process_exit_handle(pid: u32) -> Option<OwnedFd> {
        let pid = i32::try_from(pid).ok().and_then(Pid::from_raw)?;
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
    }

    /// pidfd is Linux's; elsewhere (macOS) the caller watches a `wait` child.
    #[cfg(not(target_os = "linux"))]
    pub fn process_exit_handle(_pid: u32) -> Option<OwnedFd> {
        None
    }

    /// Waits up to `timeout` for any of `handles` to become readable; returns the
    /// indexes that are. A signal (BOINC's timer) ends the wait early: callers loop.
    pub fn wait_readable(handles: &[&OwnedFd], timeout: Duration) -> Vec<usize> {
        let mut fds: Vec<PollFd<'_>> = handles
            .iter()
            .map(|h| PollFd::new(*h, PollFlags::IN))
            .collect();
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

    /// The wrapper's user and group ids.
    pub fn user_and_group() -> (u32, u32) {
        (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        )
    }

    /// Takes an exclusive advisory lock without waiting; false when another
    /// process holds it. The kernel releases it when the holder dies.
    pub fn try_lock_exclusive(file: &std::fs::File) -> std::io::Result<bool> {
        use rustix::fs::{flock, FlockOperation};
        match flock(file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::WOULDBLOCK) | Err(rustix::io::Errno::INTR) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    pub fn is_executable(meta: &std::fs::Metadata) -> bool {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }

    /// Mode 755 or 644: what a staged copy of a file needs.
    pub fn set_executable(path: &std::path::Path, executable: bool) {
        use std::os::unix::fs::PermissionsExt;
        let mode = if executable { 0o755 } else { 0o644 };
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    }
}

#[cfg(windows)]
mod windows {
    /// No process groups or signals: false tells the caller to kill at once.
    pub fn signal_group(_pgid: u32, _kill: bool) -> bool {
        false
    }

    pub fn kill_process(_pid: u32) -> bool {
        false
    }

    /// Container processes live inside WSL, out of reach.
    pub fn stop_or_continue(_pid: u32, _stop: bool) -> bool {
        false
    }

    pub fn clock_ticks_per_second() -> u64 {
        100
    }

    pub fn page_size() -> usize {
        4096
    }

    /// Engine commands run as root inside the WSL distro (`wsl -u root`).
    pub fn user_and_group() -> (u32, u32) {
        (0, 0)
    }

    /// LockFileEx through std; released when the holder dies. Windows
    /// builds therefore need Rust 1.89 or later.
    #[allow(clippy::incompatible_msrv)]
    pub fn try_lock_exclusive(file: &std::fs::File) -> std::io::Result<bool> {
        match file.try_lock() {
            Ok(()) => Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(err)) => Err(err),
        }
    }

    /// No execute bit on Windows; WSL shows files under /mnt as executable anyway.
    pub fn is_executable(_meta: &std::fs::Metadata) -> bool {
        false
    }

    pub fn set_executable(_path: &std::path::Path, _executable: bool) {}
}
