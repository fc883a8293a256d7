//! Safe access to the BOINC application API. The only module with `unsafe`.
//!
//! The API keeps global state (shared memory with the client, a 10 Hz timer
//! that reads client messages), so these are free functions over that state.
use std::ffi::CString;
use std::path::Path;
use std::time::{Duration, Instant};

use boinc_sys as sys;

use crate::slot::io as slot_io;

/// What the client has asked of us, as last read from shared memory.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClientStatus {
    pub no_heartbeat: bool,
    pub suspended: bool,
    pub quit_request: bool,
    pub abort_request: bool,
    pub network_suspended: bool,
    /// Working-set size the client measured for our process tree, bytes.
    pub working_set_size: f64,
}

/// What we tell the client about the task.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TaskReport {
    pub cpu_time: f64,
    pub checkpoint_cpu_time: f64,
    pub fraction_done: f64,
    /// Working-set size of the container, bytes (dropped by BOINC 7.20 libraries).
    pub working_set_size: f64,
}

/// Attaches to the client as a wrapper: the API records suspend/quit/abort
/// and heartbeat loss in the status instead of acting on this process.
/// Without an `init_data.xml` in the current dir the API runs standalone.
pub fn init_wrapper() -> Result<(), i32> {
    LIBRARY_START_FILES
        .iter()
        .for_each(|name| clear_library_file(name));
    // SAFETY: no arguments; the API initialises its own global state once.
    match unsafe { sys::dw_init_wrapper() } {
        0 => Ok(()),
        code => Err(code),
    }
}

/// True when no client started us (no init_data.xml); valid after `init_wrapper`.
pub fn is_standalone() -> bool {
    // SAFETY: reads a flag of the API's global state.
    unsafe { sys::boinc_is_standalone() != 0 }
}

pub fn status() -> ClientStatus {
    let mut raw = sys::dw_status {
        no_heartbeat: 0,
        suspended: 0,
        quit_request: 0,
        abort_request: 0,
        network_suspended: 0,
        working_set_size: 0.0,
        max_working_set_size: 0.0,
    };
    // SAFETY: `raw` is a valid, writable dw_status for the duration of the call.
    unsafe { sys::dw_get_status(&mut raw) };
    ClientStatus {
        no_heartbeat: raw.no_heartbeat != 0,
        suspended: raw.suspended != 0,
        quit_request: raw.quit_request != 0,
        abort_request: raw.abort_request != 0,
        network_suspended: raw.network_suspended != 0,
        working_set_size: raw.working_set_size,
    }
}

/// Has the library's timer thread write to `wakeup`'s pipe whenever the
/// client's status changes. `'static`: the library keeps the descriptor for
/// the rest of the process.
#[cfg(unix)]
pub fn notify_status_changes(wakeup: &'static crate::boinc::wakeup::Wakeup) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain descriptor that stays open until the process ends.
    unsafe { sys::dw_notify_status_changes(wakeup.write_end().as_raw_fd()) };
}

/// How many times the library's timer thread has ticked (10 Hz), as far as
/// this build can see: 0 where the shim cannot hook it.
// c_ulong is 32 bits on Windows.
#[allow(clippy::useless_conversion)]
pub fn timer_ticks() -> u64 {
    // SAFETY: reads a counter.
    u64::from(unsafe { sys::dw_timer_ticks() })
}

pub fn report(report: &TaskReport) {
    // SAFETY: plain values; the API copies them into shared memory.
    unsafe {
        sys::dw_report_status(
            report.cpu_time,
            report.checkpoint_cpu_time,
            report.fraction_done,
            report.working_set_size,
        );
    }
}

/// Reports the task finished with `status` (0 = success) and exits the process.
pub fn finish(status: i32) -> ! {
    // The library writes the finish file with fopen, which would follow a
    // link the job planted under that name.
    clear_library_file(FINISH_FILE);
    // SAFETY: boinc_finish writes the finish file and calls exit().
    unsafe { sys::boinc_finish(status) };
    // boinc_finish does not return; make sure of it.
    std::process::exit(status)
}

/// A message for the volunteer, shown by the client when the task ends.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishMessage {
    /// One line (the client reads one).
    pub text: String,
    /// Shown as a notice (an alert) rather than in the event log only.
    pub notice: bool,
}

/// Like `finish`, without the API's fixed 2 s pause: `boinc_finish` sleeps
/// so that its timer thread can send final messages, but a wrapper sends its
/// own. Waits (at most `max_wait`) until the client has read the last
/// status report, then writes the finish file as `boinc_finish` does, with
/// the message if there is one.
pub fn finish_promptly(status: i32, message: Option<&FinishMessage>, max_wait: Duration) -> ! {
    let deadline = Instant::now() + max_wait;
    // SAFETY: reads a flag in the shared memory segment the API set up.
    while unsafe { sys::dw_status_pending() } != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    log::info!("called boinc_finish({status})");
    let mut content = format!("{status}\n");
    if let Some(message) = message {
        // The client reads the message from the second line, and shows it
        // only when a third line follows: "notice" makes it an alert.
        let notice = if message.notice { "notice" } else { "" };
        content.push_str(&format!("{}\n{notice}\n", one_line(&message.text)));
    }
    if let Err(err) = slot_io::replace(Path::new(FINISH_FILE), content.as_bytes(), false) {
        log::warn!("cannot write {FINISH_FILE}: {err}");
        // Let the API try (and report) it the usual way.
        finish(status)
    }
    // SAFETY: ends the process; nothing runs after it.
    unsafe { sys::dw_exit(status) };
    std::process::exit(status)
}

/// Text for a one-line field of a file the client reads.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The file whose presence tells the client the app finished on purpose.
const FINISH_FILE: &str = "boinc_finish_called";
/// Where the library writes a temporary exit's delay and reason.
const TEMPORARY_EXIT_FILE: &str = "boinc_temporary_exit";
/// Slot files the library opens by name at start-up (the lock file, and
/// stderr/stdout with their rotated copies) and writes through any link.
const LIBRARY_START_FILES: [&str; 5] = [
    "boinc_lockfile",
    "stderr.txt",
    "stdout.txt",
    "stderr.old",
    "stdout.old",
];

/// The library opens some slot files itself, following symlinks; the job
/// may have replaced one by a link to a host file (or by a FIFO, on which
/// the open would block). Removing what is not a regular file makes the
/// library create a fresh one.
fn clear_library_file(name: &str) {
    if let Err(err) = slot_io::remove_unless_regular(Path::new(name)) {
        log::warn!("{name}: {err}");
    }
}

/// Asks the client to restart us after `delay_secs`, with a reason shown to
/// the volunteer, and exits the process. No work is lost.
pub fn temporary_exit(delay_secs: i32, reason: &str, is_notice: bool) -> ! {
    clear_library_file(TEMPORARY_EXIT_FILE);
    let reason = c_string(reason);
    // SAFETY: `reason` is a valid NUL-terminated string that outlives the call.
    unsafe { sys::dw_temporary_exit(delay_secs, reason.as_ptr(), i32::from(is_notice)) };
    std::process::exit(0)
}

/// Where the library writes a trickle-up message for the client to send.
const TRICKLE_UP_FILE: &str = "trickle_up.xml";
/// The library asks for an upload by creating this file plus the name.
const UPLOAD_REQUEST_PREFIX: &str = "boinc_ufr_";

/// Sends `text` to the project as a trickle-up message of `variety`.
pub fn send_trickle_up(variety: &str, text: &str) -> Result<(), i32> {
    clear_library_file(TRICKLE_UP_FILE);
    let (variety, text) = (c_string(variety), c_string(text));
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    match unsafe { sys::dw_send_trickle_up(variety.as_ptr(), text.as_ptr()) } {
        0 => Ok(()),
        code => Err(code),
    }
}

/// Asks the client to upload output file `name` (its logical name) now.
pub fn upload_file(name: &str) -> Result<(), i32> {
    clear_library_file(&format!("{UPLOAD_REQUEST_PREFIX}{name}"));
    let name = c_string(name);
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    match unsafe { sys::dw_upload_file(name.as_ptr()) } {
        0 => Ok(()),
        code => Err(code),
    }
}

/// How the upload of `name` went: None while the client has not said.
pub fn upload_status(name: &str) -> Option<Result<(), i32>> {
    let name = c_string(name);
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    match unsafe { sys::dw_upload_status(name.as_ptr()) } {
        1 => None,
        0 => Some(Ok(())),
        code => Some(Err(code)),
    }
}

/// Tells the library the job checkpointed (it restarts its own timer).
pub fn checkpoint_completed() {
    // SAFETY: no arguments; the library updates its own state.
    unsafe { sys::dw_checkpoint_completed() }
}

/// Tells the client where the job's web graphics are served.
pub fn web_graphics_url(url: &str) {
    let url = c_string(url);
    // SAFETY: the shim copies the string before handing it to the API.
    unsafe { sys::dw_web_graphics_url(url.as_ptr()) };
}

/// A free TCP port, as the client's API picks one.
pub fn free_port(is_remote: bool) -> Result<u16, i32> {
    let mut port: i32 = 0;
    // SAFETY: `port` is a valid, writable int for the duration of the call.
    let code = unsafe { sys::dw_get_port(i32::from(is_remote), &mut port) };
    match (code, u16::try_from(port)) {
        (0, Ok(port)) if port != 0 => Ok(port),
        (0, _) => Err(-1),
        (code, _) => Err(code),
    }
}

/// True when the linked BOINC library supports sporadic apps (BOINC 8+).
pub fn supports_sporadic() -> bool {
    // SAFETY: no arguments, no state.
    unsafe { sys::dw_has_sporadic() != 0 }
}

/// Creates the sporadic-app communication files in `dir`.
pub fn sporadic_dir(dir: &str) -> Result<(), i32> {
    // The library opens both by name (following links; `ac` for reading,
    // which blocks on a FIFO) and keeps them open, so clearing them once
    // here is enough.
    for name in ["ac", "ca"] {
        clear_library_file(&Path::new(dir).join(name).to_string_lossy());
    }
    let dir = c_string(dir);
    // SAFETY: `dir` is a valid NUL-terminated string that outlives the call.
    match unsafe { sys::dw_sporadic_dir(dir.as_ptr()) } {
        0 => Ok(()),
        code => Err(code),
    }
}

/// Version of the BOINC API headers we were built against, e.g. "7.20.5".
pub fn library_version() -> String {
    // SAFETY: no arguments, returns a constant.
    let v = unsafe { sys::dw_boinc_version() };
    format!("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100)
}

/// Interior NULs cannot cross into C; they are dropped rather than failing.
fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_version_comes_from_the_linked_headers() {
        let version = library_version();
        assert!(
            version.starts_with("7.") || version.starts_with("8."),
            "{version}"
        );
    }

    #[test]
    fn c_string_drops_interior_nul() {
        assert_eq!(c_string("a\0b").as_bytes(), b"ab");
    }
}
