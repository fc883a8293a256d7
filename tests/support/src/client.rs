//! The client's side of the channels, run on a background thread at 10 Hz, as
//! the BOINC client's poll loop does: heartbeats out, status and graphics in.

use std::fs;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::init_data::c_e;
use crate::shm::{Channel, SharedMemory};

const TICK: Duration = Duration::from_millis(100);
const TICKS_PER_HEARTBEAT: u32 = 10;

/// One `app_status` message, as the app's BOINC API writes it
/// (`<current_cpu_time>`, `<checkpoint_cpu_time>`, `<fraction_done>`, `<wss>`, ...).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppStatus {
    pub current_cpu_time: f64,
    pub checkpoint_cpu_time: f64,
    /// Absent until the app reports one.
    pub fraction_done: Option<f64>,
    /// Working-set size in bytes (`<wss>`); only `boinc_report_app_status_aux` sends it.
    pub working_set_size: Option<f64>,
    pub want_network: Option<bool>,
    pub other_pid: Option<i32>,
    /// A sporadic app's wish (`<sporadic_ac>`, BOINC 8): 1 don't want to
    /// compute, 2 want to compute. Absent while it has none.
    pub sporadic_ac: Option<i32>,
    /// The message as received.
    pub raw: String,
}

impl AppStatus {
    pub fn parse(text: &str) -> AppStatus {
        AppStatus {
            current_cpu_time: tag_number(text, "current_cpu_time").unwrap_or(0.0),
            checkpoint_cpu_time: tag_number(text, "checkpoint_cpu_time").unwrap_or(0.0),
            fraction_done: tag_number(text, "fraction_done"),
            working_set_size: tag_number(text, "wss"),
            want_network: tag_number(text, "want_network").map(|v| v != 0.0),
            other_pid: tag_text(text, "other_pid").and_then(|v| v.trim().parse().ok()),
            sporadic_ac: tag_text(text, "sporadic_ac").and_then(|v| v.trim().parse().ok()),
            raw: text.to_string(),
        }
    }
}

/// The text between `<name>` and `</name>`, first occurrence.
pub fn tag_text<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(&xml[start..start + len])
}

pub fn tag_number(xml: &str, name: &str) -> Option<f64> {
    tag_text(xml, name)?.trim().parse().ok()
}

/// What the client thread has seen from the app.
#[derive(Debug, Default)]
struct Observed {
    last_status: Option<AppStatus>,
    history: Vec<(Instant, AppStatus)>,
    web_graphics_url: Option<String>,
    trickle_up: Vec<String>,
}

/// State shared between the client thread and the test.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    heartbeats_enabled: AtomicBool,
    network_suspended: AtomicBool,
    /// The client's state for a sporadic app (`<sporadic_ca>`); 0: not sent.
    sporadic_ca: AtomicI32,
    /// pid of the running app, 0 when none: the client sends heartbeats only to a live process.
    app_pid: AtomicU32,
    heartbeats_sent: AtomicU64,
    observed: Mutex<Observed>,
}

/// Handle on the client thread; stops and joins it on drop.
#[derive(Debug)]
pub struct ClientThread {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

impl ClientThread {
    pub fn start(shm: Arc<SharedMemory>, heartbeats: bool) -> ClientThread {
        let shared = Arc::new(Shared::default());
        shared
            .heartbeats_enabled
            .store(heartbeats, Ordering::SeqCst);
        let for_thread = Arc::clone(&shared);
        let handle = thread::Builder::new()
            .name("boinc-client-emulator".into())
            .spawn(move || client_loop(&shm, &for_thread))
            .expect("cannot start the client emulator thread");
        ClientThread {
            shared,
            handle: Some(handle),
        }
    }

    pub fn set_app_pid(&self, pid: Option<u32>) {
        self.shared
            .app_pid
            .store(pid.unwrap_or(0), Ordering::SeqCst);
    }

    pub fn set_heartbeats(&self, on: bool) {
        self.shared.heartbeats_enabled.store(on, Ordering::SeqCst);
    }

    pub fn set_network_suspended(&self, on: bool) {
        self.shared.network_suspended.store(on, Ordering::SeqCst);
    }

    pub fn set_sporadic_ca(&self, state: i32) {
        self.shared.sporadic_ca.store(state, Ordering::SeqCst);
    }

    pub fn heartbeats_sent(&self) -> u64 {
        self.shared.heartbeats_sent.load(Ordering::SeqCst)
    }

    pub fn last_status(&self) -> Option<AppStatus> {
        self.observed().last_status.clone()
    }

    pub fn status_history(&self) -> Vec<(Instant, AppStatus)> {
        self.observed().history.clone()
    }

    pub fn web_graphics_url(&self) -> Option<String> {
        self.observed().web_graphics_url.clone()
    }

    /// The URL last received, which is then forgotten (to see a new one arrive).
    pub fn take_web_graphics_url(&self) -> Option<String> {
        self.observed().web_graphics_url.take()
    }

    pub fn trickle_up_messages(&self) -> Vec<String> {
        self.observed().trickle_up.clone()
    }

    fn observed(&self) -> MutexGuard<'_, Observed> {
        lock(&self.shared.observed)
    }
}

impl Drop for ClientThread {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide what the client saw.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn client_loop(shm: &SharedMemory, shared: &Shared) {
    let mut tick: u32 = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        if tick % TICKS_PER_HEARTBEAT == 0 {
            send_heartbeat(shm, shared);
        }
        receive_app_messages(shm, shared);
        tick = tick.wrapping_add(1);
        thread::sleep(TICK);
    }
}

fn send_heartbeat(shm: &SharedMemory, shared: &Shared) {
    let pid = shared.app_pid.load(Ordering::SeqCst);
    if pid == 0 || !shared.heartbeats_enabled.load(Ordering::SeqCst) {
        return;
    }
    let mut text = heartbeat_text(pid, shared.network_suspended.load(Ordering::SeqCst));
    let sporadic_ca = shared.sporadic_ca.load(Ordering::SeqCst);
    if sporadic_ca != 0 {
        // A BOINC 8 client tells a sporadic app whether it may compute.
        text.push_str(&format!("<sporadic_ca>{sporadic_ca}</sporadic_ca>"));
    }
    // Like the client: if the app has not read the previous heartbeat, skip this one.
    if let Ok(true) = shm.try_send(Channel::Heartbeat, &text) {
        shared.heartbeats_sent.fetch_add(1, Ordering::SeqCst);
    }
}

/// The client's heartbeat: the app's resident size and the RAM it may use.
pub fn heartbeat_text(app_pid: u32, network_suspended: bool) -> String {
    let mut text = format!(
        "<heartbeat/><wss>{}</wss><max_wss>{}</max_wss>",
        c_e(resident_bytes(app_pid)),
        c_e(available_ram_bytes())
    );
    if network_suspended {
        // The client (7.20 and 8.x) sends <network_suspended/>, which API
        // libraries from 8.2 on look for; older ones (7.20, 8.0) look for
        // <suspend_network/> and so never see a real client's flag. Both, so
        // the wrapper's handling is testable with either library.
        text.push_str("<network_suspended/><suspend_network/>");
    }
    text
}

fn receive_app_messages(shm: &SharedMemory, shared: &Shared) {
    let status = shm.receive(Channel::AppStatus).ok().flatten();
    let graphics = shm.receive(Channel::GraphicsReply).ok().flatten();
    let trickle = shm.receive(Channel::TrickleUp).ok().flatten();
    if status.is_none() && graphics.is_none() && trickle.is_none() {
        return;
    }
    let mut observed = lock(&shared.observed);
    if let Some(text) = status {
        let parsed = AppStatus::parse(&text);
        observed.history.push((Instant::now(), parsed.clone()));
        observed.last_status = Some(parsed);
    }
    if let Some(url) = graphics
        .as_deref()
        .and_then(|t| tag_text(t, "web_graphics_url"))
    {
        observed.web_graphics_url = Some(url.to_string());
    }
    if let Some(text) = trickle {
        observed.trickle_up.push(text);
    }
}

fn resident_bytes(pid: u32) -> f64 {
    let statm = fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    pages * page_size()
}

fn page_size() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as f64
    } else {
        4096.0
    }
}

/// Half the RAM, like the client's default "use at most 50% when busy".
fn available_ram_bytes() -> f64 {
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(4.0 * 1024.0 * 1024.0);
    kib * 1024.0 / 2.0
}
