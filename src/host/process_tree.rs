//! A container's processes as the host's /proc shows them: its init process
//! and every descendant. Used where the engine gives the container no cgroup
//! of its own (rootless Podman on cgroup v1): CPU time and memory are summed
//! over these processes, and suspending stops each of them with SIGSTOP.
use std::collections::HashMap;
use std::fs;
use std::path::Path;

use crate::os;

/// One process's line of /proc/PID/stat, the fields we use.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ProcStat {
    ppid: u32,
    /// When the process started, in clock ticks after boot.
    start_ticks: u64,
    /// utime + stime of the process and of its waited-for children, in clock ticks.
    cpu_ticks: u64,
    rss_pages: u64,
}

impl ProcStat {
    /// The command name (field 2) may hold spaces and parentheses: the
    /// fields we want come after its last ')'.
    fn parse(text: &str) -> Option<ProcStat> {
        let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
        // fields[0] is field 3 (state) of proc(5).
        let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
        Some(ProcStat {
            ppid: u32::try_from(field(4)?).ok()?,
            start_ticks: field(22)?,
            cpu_ticks: field(14)? + field(15)? + field(16)? + field(17)?,
            rss_pages: field(24)?,
        })
    }

    fn read(pid: u32) -> Option<ProcStat> {
        ProcStat::parse(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }
}

/// `pid`'s children from /proc/PID/task/*/children (each thread has its
/// own list); none for a process or thread that is gone. None when the
/// kernel has no such files (CONFIG_PROC_CHILDREN).
fn children(pid: u32) -> Option<Vec<u32>> {
    let mut found = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Some(found);
    };
    for task in tasks.flatten() {
        match fs::read_to_string(task.path().join("children")) {
            Ok(text) => found.extend(
                text.split_whitespace()
                    .filter_map(|n| n.parse::<u32>().ok()),
            ),
            // A thread that just exited has no directory left either.
            Err(_) if !task.path().exists() => {}
            Err(_) => return None,
        }
    }
    Some(found)
}

/// `root`'s tree and the stat of each member: through the children files,
/// which cost a few reads for a small tree, else from a walk of all of /proc.
fn tree_stats(root: u32) -> HashMap<u32, ProcStat> {
    let mut stats = HashMap::new();
    let mut pending = vec![root];
    while let Some(pid) = pending.pop() {
        let Some(kids) = children(pid) else {
            let processes = all_processes();
            return tree(root, &processes)
                .into_iter()
                .filter_map(|p| Some((p, *processes.get(&p)?)))
                .collect();
        };
        if let Some(stat) = ProcStat::read(pid) {
            stats.insert(pid, stat);
            pending.extend(kids.into_iter().filter(|kid| !stats.contains_key(kid)));
        }
    }
    stats
}

/// `root`'s tree, parents before children.
fn members(root: u32) -> Vec<u32> {
    tree(root, &tree_stats(root))
}

/// Every live process of the host, by pid.
fn all_processes() -> HashMap<u32, ProcStat> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, ProcStat::read(pid)?)))
        .collect()
}

/// `root` and its descendants, parents before children.
fn tree(root: u32, processes: &HashMap<u32, ProcStat>) -> Vec<u32> {
    let mut members = Vec::new();
    if !processes.contains_key(&root) {
        return members;
    }
    members.push(root);
    let mut next = 0;
    while next < members.len() {
        let parent = members[next];
        let mut children: Vec<u32> = processes
            .iter()
            .filter(|(_, s)| s.ppid == parent)
            .map(|(pid, _)| *pid)
            .collect();
        children.sort_unstable();
        members.extend(children.into_iter().filter(|pid| *pid != root));
        next += 1;
    }
    members
}

/// CPU time and memory of a container, however they were measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// CPU seconds used by the container since it started.
    pub cpu_secs: f64,
    /// Resident memory of the container, bytes.
    pub memory_bytes: f64,
}

/// CPU time and resident memory of `root`'s tree. CPU time includes children
/// already reaped inside the tree, as the kernel adds theirs to the parent's.
/// None when `root` is gone.
pub fn sample(root: u32) -> Option<Sample> {
    if root == 0 {
        return None;
    }
    let stats = tree_stats(root);
    if stats.is_empty() {
        return None;
    }
    let (ticks, pages) = stats
        .values()
        .fold((0u64, 0u64), |(t, p), s| (t + s.cpu_ticks, p + s.rss_pages));
    Some(Sample {
        cpu_secs: ticks as f64 / os::clock_ticks_per_second() as f64,
        memory_bytes: (pages * os::page_size() as u64) as f64,
    })
}

/// What signalling a tree did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Signalled {
    pub done: usize,
    /// Processes we may not signal (another user's, in the container's id map).
    pub refused: usize,
}

/// Stops (SIGSTOP) or continues (SIGCONT) every process of `root`'s tree.
/// Stopping goes parents first and looks again for children forked in the
/// meantime.
pub fn stop_or_continue(root: u32, stop: bool) -> Signalled {
    if root == 0 {
        return Signalled::default();
    }
    let mut signalled = std::collections::HashSet::new();
    let mut result = Signalled::default();
    for _pass in 0..3 {
        let fresh: Vec<u32> = members(root)
            .into_iter()
            .filter(|pid| !signalled.contains(pid))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for pid in fresh {
            if os::stop_or_continue(pid, stop) {
                result.done += 1;
            } else if Path::new(&format!("/proc/{pid}")).exists() {
                // Still there, so not ours (gone in the meantime is no refusal).
                result.refused += 1;
            }
            signalled.insert(pid);
        }
        if !stop {
            break;
        }
    }
    result
}

/// A process, told apart from a later one that reuses its pid by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: u32,
    pub start_ticks: u64,
}

impl ProcessId {
    /// The process `pid` is now; None when there is none.
    pub fn of(pid: u32) -> Option<ProcessId> {
        Some(ProcessId {
            pid,
            start_ticks: ProcStat::read(pid)?.start_ticks,
        })
    }

    /// Whether this very process still exists.
    pub fn is_alive(&self) -> bool {
        ProcessId::of(self.pid) == Some(*self)
    }

    /// "<pid> <start>", as `Display` writes it.
    pub fn parse(text: &str) -> Option<ProcessId> {
        let (pid, start) = text.trim().split_once(' ')?;
        Some(ProcessId {
            pid: pid.parse().ok().filter(|pid| *pid > 1)?,
            start_ticks: start.parse().ok()?,
        })
    }
}

impl std::fmt::Display for ProcessId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.pid, self.start_ticks)
    }
}

/// The arguments `process` was started with; empty when it is gone.
pub fn command_line(process: ProcessId) -> Vec<String> {
    let Ok(raw) = fs::read(format!("/proc/{}/cmdline", process.pid)) else {
        return Vec::new();
    };
    if !process.is_alive() {
        return Vec::new();
    }
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// `root`'s descendants as they are now (not `root` itself).
pub fn descendants(root: u32) -> Vec<ProcessId> {
    let stats = tree_stats(root);
    stats
        .iter()
        .filter(|(pid, _)| **pid != root)
        .map(|(pid, stat)| ProcessId {
            pid: *pid,
            start_ticks: stat.start_ticks,
        })
        .collect()
}

/// SIGKILLs each of `processes` that still runs. For helpers that left the
/// process group of the command that started them: a container runtime
/// makes the container's init a session of its own.
pub fn kill_each(processes: &[ProcessId]) {
    for process in processes.iter().filter(|p| p.is_alive()) {
        log::debug!("killing process {} left by an ended command", process.pid);
        os::kill_process(process.pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_lines_with_odd_command_names() {
        let line = "4767 (a) b (c)) R 4757 4767 4767 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 1 0 123 5000000 300 \
                    18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(
            ProcStat::parse(line),
            Some(ProcStat {
                ppid: 4757,
                start_ticks: 123,
                cpu_ticks: 310,
                rss_pages: 300
            })
        );
        assert_eq!(ProcStat::parse("12 (short) R 1"), None);
        assert_eq!(ProcStat::parse("garbage"), None);
    }

    #[test]
    fn tree_holds_the_root_and_its_descendants_only() {
        let stat = |ppid| ProcStat {
            ppid,
            start_ticks: 1,
            cpu_ticks: 1,
            rss_pages: 1,
        };
        let processes: HashMap<u32, ProcStat> = [
            (1, stat(0)),
            (10, stat(1)),
            (11, stat(10)),
            (12, stat(11)),
            (13, stat(10)),
            (20, stat(1)),
        ]
        .into();
        assert_eq!(tree(10, &processes), vec![10, 11, 13, 12]);
        assert_eq!(tree(99, &processes), Vec::<u32>::new());
    }

    /// `timeout` with a busy `yes` child (no shell: argv only); continued
    /// and killed on drop, so a failed assertion leaves no stopped process
    /// behind. `timeout` leads its own process group, `yes` included.
    struct BusyTree(std::process::Child);

    impl BusyTree {
        /// `timeout` with one child, `yes`, burning CPU for up to 30 s.
        fn start() -> BusyTree {
            let child = std::process::Command::new("timeout")
                .args(["30", "yes"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            BusyTree(child)
        }
    }

    impl Drop for BusyTree {
        fn drop(&mut self) {
            for pid in members(self.0.id()) {
                os::stop_or_continue(pid, false);
            }
            os::signal_group(self.0.id(), true);
            let _ = self.0.wait();
        }
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn state(pid: u32) -> String {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap()
            .rsplit_once(')')
            .unwrap()
            .1[1..2]
            .to_string()
    }

    #[test]
    fn process_ids_round_trip_and_tell_a_reused_pid() {
        let me = ProcessId::of(std::process::id()).unwrap();
        assert!(me.is_alive());
        assert!(!command_line(me).is_empty());
        assert_eq!(ProcessId::parse(&me.to_string()), Some(me));
        assert!(!ProcessId {
            start_ticks: me.start_ticks + 1,
            ..me
        }
        .is_alive());
        for bad in ["", "1 5", "x 5", "12", "12 y"] {
            assert_eq!(ProcessId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn kill_each_ends_descendants_that_left_the_group() {
        let tree_root = BusyTree::start();
        let root = tree_root.0.id();
        wait_for("timeout and its yes", || members(root).len() == 2);
        let helpers = descendants(root);
        assert_eq!(helpers.len(), 1);
        kill_each(&helpers);
        wait_for("yes to die", || {
            !helpers[0].is_alive() || state(helpers[0].pid) == "Z"
        });
    }

    #[test]
    fn samples_and_stops_a_real_process_tree() {
        let tree_root = BusyTree::start();
        let root = tree_root.0.id();
        wait_for("timeout and its yes", || members(root).len() == 2);
        assert_eq!(
            tree(root, &all_processes()).len(),
            2,
            "the same from all of /proc"
        );
        wait_for("some CPU time", || {
            sample(root).is_some_and(|s| s.cpu_secs > 0.0 && s.memory_bytes > 0.0)
        });
        assert_eq!(
            stop_or_continue(root, true),
            Signalled {
                done: 2,
                refused: 0
            }
        );
        wait_for("the stop", || state(root) == "T");
        let stopped = sample(root).unwrap().cpu_secs;
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(
            sample(root).unwrap().cpu_secs - stopped < 0.05,
            "a stopped tree uses no CPU"
        );
        assert_eq!(stop_or_continue(root, false).done, 2);
        wait_for("the continue", || state(root) != "T");
    }
}
