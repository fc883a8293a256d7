//! What wakes the supervision loop besides the container's exit: a pipe
//! that the BOINC library's timer thread writes to when the client's status
//! changes (suspend, resume, quit, abort, heartbeat, network), and the
//! signal handlers when SIGTERM, SIGINT or SIGQUIT arrive. The loop sleeps
//! on it, the container's exit and the next periodic job: while nothing
//! happens, nothing wakes it.
//!
//! On Windows there is no pipe (BOINC's Windows library cannot be hooked,
//! and the engine runs in WSL): waiting is sleeping, and the loop looks at
//! the status every `POLL_WITHOUT_NEWS`.
use std::time::Duration;

#[cfg(unix)]
use std::os::fd::{AsFd, OwnedFd};

/// What the loop watches besides the pipe: the container's exit handle.
#[cfg(unix)]
pub type Handle = OwnedFd;
#[cfg(windows)]
pub enum Handle {}

/// How often the loop looks at the client's status itself when nobody tells
/// it of changes: the library reads the client's messages at 10 Hz.
pub const POLL_WITHOUT_NEWS: Duration = Duration::from_millis(100);

/// The read end of the wake-up pipe, and the write end others are given.
pub struct Wakeup {
    #[cfg(unix)]
    read: OwnedFd,
    #[cfg(unix)]
    write: OwnedFd,
}

/// What ended a wait (on Windows, always the time).
#[cfg_attr(windows, allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// The watched handle (the container's exit) became readable.
    Handle,
    /// Something was written to the pipe: news from the library or a signal.
    News,
    /// The time was up.
    Timeout,
}

/// One call where the kernel has pipe2 (no moment without close-on-exec).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn nonblocking_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    use rustix::pipe::{pipe_with, PipeFlags};
    Ok(pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?)
}

/// macOS has no pipe2: the flags are set right after (the wrapper starts
/// its children only later, so none inherits the ends meanwhile).
#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
fn nonblocking_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    use rustix::io::{fcntl_setfd, FdFlags};
    let (read, write) = rustix::pipe::pipe()?;
    for end in [&read, &write] {
        fcntl_setfd(end, FdFlags::CLOEXEC)?;
        fcntl_setfl(end, fcntl_getfl(end)? | OFlags::NONBLOCK)?;
    }
    Ok((read, write))
}

#[cfg(unix)]
impl Wakeup {
    pub fn new() -> std::io::Result<Wakeup> {
        // Non-blocking both ways: a writer (a signal handler, the library's
        // timer thread) must never block, and reading drains what is there.
        let (read, write) = nonblocking_pipe()?;
        Ok(Wakeup { read, write })
    }

    /// The write end, for the library's hook.
    pub fn write_end(&self) -> std::os::fd::BorrowedFd<'_> {
        self.write.as_fd()
    }

    /// A copy of the write end, for a signal handler to own.
    pub fn writer(&self) -> std::io::Result<OwnedFd> {
        self.write.try_clone()
    }

    /// Waits until `handle` is readable, news arrive or `timeout` passes.
    /// News stay in the pipe until `take_news`.
    pub fn wait(&self, handle: Option<&Handle>, timeout: Duration) -> Woken {
        let ready = match handle {
            Some(handle) => crate::os::wait_readable(&[handle, &self.read], timeout),
            None => crate::os::wait_readable(&[&self.read], timeout)
                .into_iter()
                .map(|_| 1)
                .collect(),
        };
        if ready.contains(&0) {
            Woken::Handle
        } else if ready.contains(&1) {
            Woken::News
        } else {
            Woken::Timeout
        }
    }

    /// Empties the pipe; true when there was news. Read before looking at
    /// what changed, so that a change after the look wakes the next wait.
    pub fn take_news(&self) -> bool {
        let mut buf = [0u8; 64];
        let mut any = false;
        while let Ok(n) = rustix::io::read(&self.read, &mut buf) {
            if n == 0 {
                break;
            }
            any = true;
        }
        any
    }
}

#[cfg(windows)]
impl Wakeup {
    pub fn new() -> std::io::Result<Wakeup> {
        Ok(Wakeup {})
    }

    /// Sleeps: nothing can end a wait early here.
    pub fn wait(&self, _handle: Option<&Handle>, timeout: Duration) -> Woken {
        std::thread::sleep(timeout);
        Woken::Timeout
    }

    pub fn take_news(&self) -> bool {
        false
    }
}

/// The supervision loop's exit watch sleeps on this pipe too.
impl crate::engine::Wake for Wakeup {
    fn sleep(&self, timeout: Duration) {
        self.wait(None, timeout);
    }

    #[cfg(unix)]
    fn sleep_until_exit(&self, exit: &OwnedFd, timeout: Duration) -> bool {
        self.wait(Some(exit), timeout) == Woken::Handle
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn news_wake_the_wait_until_taken() {
        let wakeup = Wakeup::new().unwrap();
        assert_eq!(wakeup.wait(None, Duration::ZERO), Woken::Timeout);
        assert!(!wakeup.take_news());
        let writer = wakeup.writer().unwrap();
        for _ in 0..3 {
            rustix::io::write(&writer, &[1]).unwrap();
        }
        assert_eq!(wakeup.wait(None, Duration::from_secs(5)), Woken::News);
        // Still there until taken; all of it goes at once.
        assert_eq!(wakeup.wait(None, Duration::ZERO), Woken::News);
        assert!(wakeup.take_news());
        assert_eq!(wakeup.wait(None, Duration::ZERO), Woken::Timeout);
    }

    #[test]
    fn a_readable_handle_comes_first() {
        let wakeup = Wakeup::new().unwrap();
        let (handle_read, handle_write) = rustix::pipe::pipe().unwrap();
        rustix::io::write(&handle_write, &[1]).unwrap();
        rustix::io::write(wakeup.write_end(), &[1]).unwrap();
        assert_eq!(
            wakeup.wait(Some(&handle_read), Duration::ZERO),
            Woken::Handle
        );
    }
}
