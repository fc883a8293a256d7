//! What the benchmark observes from outside the wrapper: CPU time and memory
//! from /proc, process exits through pidfds, and a container's freezer state.
use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dw_test_support::TestEngine;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C / SIGTERM end every wait early with an error, so the tasks are
/// dropped (wrappers killed, containers removed) instead of left behind.
pub fn install_interrupt_handler() {
    let handler = on_interrupt as extern "C" fn(libc::c_int);
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Sleeps, but returns Err at once when the benchmark is interrupted.
pub fn sleep(d: Duration) -> Result<(), String> {
    let end = Instant::now() + d;
    loop {
        if interrupted() {
            return Err("interrupted".into());
        }
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(100)));
    }
}

/// Clock ticks per second of the utime/stime fields in /proc/<pid>/stat.
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// The fields of /proc/<pid>/stat the benchmark uses.
#[derive(Clone, Copy, Debug)]
pub struct ProcStat {
    pub ppid: u32,
    /// utime + stime of the process (all its threads).
    pub own_ticks: u64,
    /// cutime + cstime: children it has reaped (and theirs).
    pub children_ticks: u64,
}

pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and ')': split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state): field n is f[n - 3].
    let num = |n: usize| -> Option<u64> { f.get(n - 3)?.parse().ok() };
    Some(ProcStat {
        ppid: num(4)? as u32,
        own_ticks: num(14)? + num(15)?,
        children_ticks: num(16)? + num(17)?,
    })
}

/// CPU seconds of a whole process (all its threads, exited ones too), to the
/// nanosecond: its CPU-time clock. None when it cannot be read (e.g. a zombie).
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: plain calls writing into the locals given.
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe {
        if libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) != 0
            || libc::clock_gettime(clock, &mut ts) != 0
        {
            return None;
        }
    }
    Some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
}

/// CPU seconds of `pid` and everything it started: its own time (ns-precise
/// CPU clock, else utime+stime), its reaped children's (cutime+cstime, clock
/// ticks), and the same for its descendants still alive (e.g. a long-lived
/// `podman wait`). Works on a zombie not yet reaped (its counters stay).
pub fn tree_cpu_secs(pid: u32) -> Option<f64> {
    let tck = clk_tck();
    let secs = |p: u32, s: &ProcStat| -> f64 {
        process_cpu_secs(p).unwrap_or(s.own_ticks as f64 / tck) + s.children_ticks as f64 / tck
    };
    let root = proc_stat(pid)?;
    let mut total = secs(pid, &root);
    for (p, s) in descendants(pid) {
        total += secs(p, &s);
    }
    Some(total)
}

/// The live descendants of `pid` (children, theirs, ...) with their stat.
pub fn descendants(pid: u32) -> Vec<(u32, ProcStat)> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut stats = HashMap::new();
    for p in numeric_entries(Path::new("/proc")) {
        if p == pid {
            continue;
        }
        if let Some(s) = proc_stat(p) {
            children.entry(s.ppid).or_default().push(p);
            stats.insert(p, s);
        }
    }
    let mut found = Vec::new();
    let mut stack = children.get(&pid).cloned().unwrap_or_default();
    while let Some(p) = stack.pop() {
        if let Some(s) = stats.get(&p) {
            found.push((p, *s));
        }
        if let Some(more) = children.get(&p) {
            stack.extend(more);
        }
    }
    found
}

/// The entries of a directory whose names are numbers (pids, thread ids).
fn numeric_entries(dir: &Path) -> Vec<u32> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect()
}

/// One thread's name and voluntary context switches (each one a sleep that
/// ended: a wake-up) at one moment.
#[derive(Clone, Debug)]
pub struct ThreadSample {
    pub comm: String,
    pub voluntary: u64,
}

/// The threads of a process at one moment, by thread id.
#[derive(Clone, Debug, Default)]
pub struct ThreadSnapshot {
    pub pid: u32,
    pub threads: HashMap<u32, ThreadSample>,
}

impl ThreadSnapshot {
    /// Reads /proc/<pid>/task/*/{comm,status}; threads that end while it
    /// reads are left out. Empty once the process has exited.
    pub fn take(pid: u32) -> ThreadSnapshot {
        let dir = PathBuf::from(format!("/proc/{pid}/task"));
        let mut threads = HashMap::new();
        for tid in numeric_entries(&dir) {
            let Ok(status) = fs::read_to_string(dir.join(format!("{tid}/status"))) else {
                continue;
            };
            let Some(voluntary) = status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
            else {
                continue;
            };
            let comm = fs::read_to_string(dir.join(format!("{tid}/comm")))
                .map(|c| c.trim().to_string())
                .unwrap_or_default();
            threads.insert(tid, ThreadSample { comm, voluntary });
        }
        ThreadSnapshot { pid, threads }
    }
}

/// How a thread took part in a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadLife {
    /// There at both ends: its switches in between.
    Whole,
    /// Born during the window: all its switches (they all fall inside it).
    New,
}

/// Wake-ups of one thread over a window.
#[derive(Clone, Debug)]
pub struct ThreadWakeups {
    pub tid: u32,
    pub comm: String,
    pub life: ThreadLife,
    pub per_second: f64,
}

/// Wake-ups of a process over a window, from two snapshots of its threads.
#[derive(Clone, Debug)]
pub struct Wakeups {
    pub pid: u32,
    pub per_second: f64,
    pub threads: Vec<ThreadWakeups>,
    /// Threads there at the start and gone at the end (their switches are lost).
    pub gone: usize,
}

impl Wakeups {
    pub fn between(before: &ThreadSnapshot, after: &ThreadSnapshot, secs: f64) -> Wakeups {
        let mut threads: Vec<ThreadWakeups> = after
            .threads
            .iter()
            .map(|(tid, a)| {
                let (life, count) = match before.threads.get(tid) {
                    Some(b) => (ThreadLife::Whole, a.voluntary.saturating_sub(b.voluntary)),
                    None => (ThreadLife::New, a.voluntary),
                };
                ThreadWakeups {
                    tid: *tid,
                    comm: a.comm.clone(),
                    life,
                    per_second: count as f64 / secs,
                }
            })
            .collect();
        threads.sort_by_key(|t| t.tid);
        Wakeups {
            pid: after.pid,
            per_second: threads.iter().map(|t| t.per_second).sum(),
            threads,
            gone: before
                .threads
                .keys()
                .filter(|t| !after.threads.contains_key(t))
                .count(),
        }
    }
}

/// Memory of the wrapper, from /proc/<pid>/status, KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// VmHWM: peak resident set (shared library pages included).
    pub hwm_kib: Option<u64>,
    /// RssAnon: private (anonymous) resident memory, current.
    pub anon_kib: Option<u64>,
    /// Pss: resident memory with shared pages divided among their users, current.
    pub pss_kib: Option<u64>,
}

impl Memory {
    /// Reads a live process; keeps the last values once it has exited (a
    /// zombie has no memory lines left).
    pub fn sample(&mut self, pid: u32) {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/status")) else {
            return;
        };
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        };
        if let Some(v) = field("VmHWM:") {
            self.hwm_kib = Some(v);
        }
        if let Some(v) = field("RssAnon:") {
            self.anon_kib = Some(v);
        }
    }

    /// `sample` plus the PSS (smaps_rollup walks the page tables: not for tight loops).
    pub fn sample_full(&mut self, pid: u32) {
        self.sample(pid);
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            return;
        };
        let pss = text
            .lines()
            .find_map(|l| l.strip_prefix("Pss:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
        if pss.is_some() {
            self.pss_kib = pss;
        }
    }
}

/// A pidfd: readable once the process has exited (zombie or reaped).
pub struct Pidfd(OwnedFd);

impl Pidfd {
    pub fn open(pid: u32) -> io::Result<Pidfd> {
        // SAFETY: pidfd_open takes a pid and flags; it returns a new fd or -1.
        let fd =
            unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0 as libc::c_uint) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd that nothing else owns.
        Ok(Pidfd(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }
}

/// Waits up to `timeout` for any of `fds`; returns which are readable.
pub fn poll_exits(fds: &[&Pidfd], timeout: Duration) -> Vec<bool> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|f| libc::pollfd {
            fd: f.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: pfds is a valid array of pfds.len() pollfd structs.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if n <= 0 {
        return vec![false; fds.len()];
    }
    pfds.iter().map(|p| p.revents != 0).collect()
}

/// The host pid of a container's init process (0 or None when not running).
pub fn container_pid(engine: &TestEngine, name: &str) -> Option<u32> {
    engine
        .inspect_container(name, "{{.State.Pid}}")?
        .parse()
        .ok()
        .filter(|p| *p > 0)
}

/// How a container's paused / running state is observed.
pub enum Freezer {
    /// cgroup v1 freezer.state: FROZEN / FREEZING / THAWED.
    V1(PathBuf),
    /// cgroup v2 cgroup.events: "frozen 1" / "frozen 0".
    V2(PathBuf),
    /// `<engine> inspect` status "paused" / "running" (slow: one CLI call per look).
    Inspect { engine: TestEngine, name: String },
}

impl Freezer {
    /// The freezer of the cgroup of `pid`, else `inspect` of `name`.
    pub fn find(pid: u32, engine: &TestEngine, name: &str) -> Freezer {
        let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let root = Path::new("/sys/fs/cgroup");
        for line in cgroups.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let rel = path.trim_start_matches('/');
            if controllers.split(',').any(|c| c == "freezer") {
                let file = root.join(controllers).join(rel).join("freezer.state");
                if file.is_file() {
                    return Freezer::V1(file);
                }
            }
        }
        for line in cgroups.lines() {
            if let Some(path) = line.strip_prefix("0::") {
                let rel = path.trim_start_matches('/');
                for base in [root.to_path_buf(), root.join("unified")] {
                    let dir = base.join(rel);
                    if dir.join("cgroup.freeze").is_file() {
                        return Freezer::V2(dir.join("cgroup.events"));
                    }
                }
            }
        }
        Freezer::Inspect {
            engine: engine.clone(),
            name: name.to_string(),
        }
    }

    pub fn method(&self) -> &'static str {
        match self {
            Freezer::V1(_) => "cgroup v1 freezer.state",
            Freezer::V2(_) => "cgroup v2 cgroup.events",
            Freezer::Inspect { .. } => "inspect polling",
        }
    }

    /// Some(true) frozen, Some(false) running, None in between or unknown.
    pub fn frozen(&self) -> Option<bool> {
        match self {
            Freezer::V1(file) => match fs::read_to_string(file).ok()?.trim() {
                "FROZEN" => Some(true),
                "THAWED" => Some(false),
                _ => None,
            },
            Freezer::V2(file) => {
                let text = fs::read_to_string(file).ok()?;
                text.lines()
                    .find_map(|l| l.strip_prefix("frozen "))
                    .map(|v| v.trim() == "1")
            }
            Freezer::Inspect { engine, name } => match engine.container_state(name)?.as_str() {
                "paused" => Some(true),
                "running" => Some(false),
                _ => None,
            },
        }
    }

    /// Polls (every ~1 ms for cgroup files) until the state is `frozen`; the
    /// time since `since`.
    pub fn wait_for(
        &self,
        frozen: bool,
        since: Instant,
        timeout: Duration,
    ) -> Result<Duration, String> {
        loop {
            if self.frozen() == Some(frozen) {
                return Ok(since.elapsed());
            }
            if interrupted() {
                return Err("interrupted".into());
            }
            if since.elapsed() > timeout {
                let want = if frozen { "frozen" } else { "thawed" };
                return Err(format!(
                    "the container was not {want} within {timeout:?} ({})",
                    self.method()
                ));
            }
            if !matches!(self, Freezer::Inspect { .. }) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Polls every ~2 ms until `path` exists; the time since `since`. Err when
/// the process behind `alive` exits first or the timeout passes. Samples the
/// wrapper's memory on the way.
pub fn wait_for_file(
    path: &Path,
    since: Instant,
    timeout: Duration,
    wrapper: &Pidfd,
    wrapper_pid: u32,
    mem: &mut Memory,
) -> Result<Duration, String> {
    loop {
        if path.exists() {
            return Ok(since.elapsed());
        }
        mem.sample(wrapper_pid);
        if poll_exits(&[wrapper], Duration::ZERO)[0] {
            return Err(format!(
                "the wrapper exited before {} appeared",
                path.display()
            ));
        }
        if interrupted() {
            return Err("interrupted".into());
        }
        if since.elapsed() > timeout {
            return Err(format!(
                "{} did not appear within {timeout:?}",
                path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The engine commands the wrapper logged so far (its debug lines
/// "engine: <cli> <args>", `verbose = 2`), each as its verb: "create",
/// "image inspect". A phase's commands are a slice between two reads.
pub fn engine_commands(stderr_txt: &str) -> Vec<String> {
    stderr_txt
        .lines()
        .filter_map(|l| l.split_once(" debug: engine: "))
        .map(|(_, argv)| command_verb(argv))
        .collect()
}

/// The commands logged between two reads of the log (positions from `len`).
pub fn logged_between(commands: &[String], from: usize, to: usize) -> Vec<String> {
    let to = to.min(commands.len());
    commands[from.min(to)..to].to_vec()
}

/// "/usr/bin/podman image inspect --format x y" -> "image inspect".
fn command_verb(argv: &str) -> String {
    let mut words = argv.split_whitespace().skip(1);
    let first = words.next().unwrap_or("?");
    match (first, words.next()) {
        ("image" | "container" | "system" | "network" | "volume", Some(second))
            if !second.starts_with('-') =>
        {
            format!("{first} {second}")
        }
        _ => first.to_string(),
    }
}

pub fn kernel() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn cgroup_layout() -> &'static str {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").is_file() {
        "v2 (unified)"
    } else if root.join("unified").is_dir() {
        "v1 (hybrid)"
    } else {
        "v1"
    }
}

/// Resident memory of one kind of mapping, KiB (from /proc/<pid>/smaps).
#[derive(Clone, Debug, Default)]
pub struct MemoryPart {
    pub what: String,
    pub rss_kib: u64,
    pub pss_kib: u64,
    /// Private_Clean + Private_Dirty: pages no other process shares.
    pub private_kib: u64,
    /// Address space reserved (Size), resident or not.
    pub size_kib: u64,
}

/// Where a process's resident memory is, grouped by mapping: the program
/// file (text, read-only data, data), each shared library, the heap, thread
/// stacks (anonymous mappings right above a guard page), other anonymous
/// memory, the BOINC shared-memory file, the kernel's vdso/vvar.
pub fn memory_breakdown(pid: u32) -> Option<Vec<MemoryPart>> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let exe = fs::read_link(format!("/proc/{pid}/exe")).ok();
    let mut parts: Vec<MemoryPart> = Vec::new();
    let mut current: Option<usize> = None;
    // What the mapping before this one was, for anonymous mappings: right
    // after the program file's last one it is the rest of its .bss; right
    // after an inaccessible anonymous one (a guard page), a thread stack.
    let mut before = Before::Other;
    let mut previous_end = 0u64;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            // A mapping header: range perms offset dev inode [path].
            let perms = fields.next().unwrap_or_default();
            let path: String = fields.skip(3).collect::<Vec<_>>().join(" ");
            let (start, end) = first
                .split_once('-')
                .and_then(|(a, b)| {
                    Some((
                        u64::from_str_radix(a, 16).ok()?,
                        u64::from_str_radix(b, 16).ok()?,
                    ))
                })
                .unwrap_or_default();
            let adjacent = if start == previous_end {
                before
            } else {
                Before::Other
            };
            let is_exe = exe.as_deref().is_some_and(|e| Path::new(&path) == e);
            let what = classify_mapping(&path, perms, is_exe, adjacent);
            before = match (is_exe, path.is_empty() && perms.starts_with("---")) {
                (true, _) => Before::ProgramFile,
                (_, true) => Before::Guard,
                _ => Before::Other,
            };
            previous_end = end;
            current = Some(match parts.iter().position(|p| p.what == what) {
                Some(i) => i,
                None => {
                    parts.push(MemoryPart {
                        what,
                        ..Default::default()
                    });
                    parts.len() - 1
                }
            });
            continue;
        }
        let (Some(i), Some(value)) = (current, fields.next().and_then(|v| v.parse::<u64>().ok()))
        else {
            continue;
        };
        let part = &mut parts[i];
        match first {
            "Size:" => part.size_kib += value,
            "Rss:" => part.rss_kib += value,
            "Pss:" => part.pss_kib += value,
            "Private_Clean:" | "Private_Dirty:" => part.private_kib += value,
            _ => {}
        }
    }
    parts.retain(|p| p.rss_kib > 0);
    parts.sort_by_key(|p| std::cmp::Reverse(p.rss_kib));
    Some(parts)
}

/// The mapping right below an anonymous one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Before {
    ProgramFile,
    Guard,
    Other,
}

fn classify_mapping(path: &str, perms: &str, is_exe: bool, before: Before) -> String {
    let section = |perms: &str| {
        if perms.contains('x') {
            "text"
        } else if perms.contains('w') {
            "data, bss"
        } else {
            "read-only data"
        }
    };
    if is_exe {
        return format!("program file: {}", section(perms));
    }
    match path {
        "" if perms.starts_with("---") => "guard pages, reservations".into(),
        "" if before == Before::ProgramFile => "program: .bss beyond the file's last page".into(),
        "" if before == Before::Guard => "thread stacks (anonymous, above a guard page)".into(),
        "" => "other anonymous (allocator arenas, mmap'd buffers)".into(),
        "[heap]" => "heap (brk)".into(),
        "[stack]" => "main thread stack".into(),
        p if p.starts_with("[vdso") || p.starts_with("[vvar") || p == "[vsyscall]" => {
            "kernel vdso/vvar".into()
        }
        p if p.ends_with("boinc_mmap_file") => "BOINC shared memory (boinc_mmap_file)".into(),
        p => {
            let name = Path::new(p)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(p);
            // libfoo.so.6 -> libfoo.so
            let short = name.find(".so").map(|i| &name[..i + 3]).unwrap_or(name);
            if name.contains(".so") {
                short.to_string()
            } else if p.starts_with('[') {
                p.to_string()
            } else {
                format!("file {name}")
            }
        }
    }
}
