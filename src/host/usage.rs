//! CPU time and memory of the container, read from its cgroup: cumulative
//! (right for multi-threaded jobs) and free of engine CLI calls. Where the
//! container has no cgroup of its own, from its processes in /proc; where
//! neither is visible (the engine in a WSL distro), from the engine's `stats`.
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::host::process_tree::{self, Sample};

/// How often the /proc fallback reads: on kernels without children files it
/// walks the host's whole process table, far more than two cgroup files.
const PROCESS_SAMPLE_PERIOD: Duration = Duration::from_secs(2);
/// How often the `stats` fallback asks the engine (Docker's takes a second).
const STATS_PERIOD: Duration = Duration::from_secs(15);

/// The engine's own figures for the container (its `stats` command).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub cpu: CpuFigure,
    pub memory_bytes: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CpuFigure {
    /// CPU seconds since the container started.
    Total(f64),
    /// Percent of one CPU, lately.
    Percent(f64),
}

/// Asks the engine for the container's `stats`.
pub type StatsReader<'a> = Box<dyn FnMut() -> Option<Stats> + 'a>;

/// Where a container's counters live.
#[derive(Debug, Clone, PartialEq)]
pub enum Cgroup {
    /// cgroup v1: cpuacct.usage (ns) and memory.stat (total_rss).
    V1 {
        cpuacct: PathBuf,
        memory: Option<PathBuf>,
    },
    /// cgroup v2: cpu.stat (usage_usec) and memory.current / memory.stat.
    V2 { dir: PathBuf },
}

impl Cgroup {
    /// Finds the cgroup of host process `pid` (the container's init).
    pub fn of_process(pid: u32) -> Option<Cgroup> {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        Self::from_proc_cgroup(&text, Path::new("/sys/fs/cgroup"))
    }

    /// Parses /proc/PID/cgroup. On a hybrid host both v1 controllers and a
    /// v2 line exist; the v1 cpuacct controller is the one that counts.
    pub fn from_proc_cgroup(text: &str, root: &Path) -> Option<Cgroup> {
        let mut cpuacct = None;
        let mut memory = None;
        let mut unified = None;
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let relative = path.trim_start_matches('/');
            if controllers.is_empty() {
                unified = Some(relative.to_string());
            }
            for controller in controllers.split(',') {
                match controller {
                    "cpuacct" => cpuacct = find_v1_dir(root, controllers, "cpuacct", relative),
                    "memory" => memory = find_v1_dir(root, controllers, "memory", relative),
                    _ => {}
                }
            }
        }
        if let Some(cpuacct) = cpuacct {
            return Some(Cgroup::V1 { cpuacct, memory });
        }
        let relative = unified?;
        for base in [root.to_path_buf(), root.join("unified")] {
            let dir = base.join(&relative);
            if dir.join("cpu.stat").is_file() {
                return Some(Cgroup::V2 { dir });
            }
        }
        None
    }

    /// Whether this cgroup is the container's own. Engines name it after the
    /// container id (`docker/<id>`, `libpod-<id>.scope`, ...); without a cgroup
    /// of its own (rootless Podman on cgroup v1) the container's processes sit
    /// in a shared one whose counters include everything else in it.
    pub fn belongs_to(&self, container_id: &str) -> bool {
        let path = match self {
            Cgroup::V1 { cpuacct, .. } => cpuacct,
            Cgroup::V2 { dir } => dir,
        };
        container_id.len() >= 12 && path.to_string_lossy().contains(container_id)
    }

    /// OOM kills in this cgroup so far (v1 memory.oom_control, v2 memory.events).
    pub fn oom_kills(&self, files: &mut dyn Files) -> Option<u64> {
        let (file, key) = match self {
            Cgroup::V1 { memory, .. } => (memory.as_ref()?.join("memory.oom_control"), "oom_kill"),
            Cgroup::V2 { dir } => (dir.join("memory.events"), "oom_kill"),
        };
        stat_field(&files.read(&file)?, key).map(|n| n as u64)
    }

    pub fn sample(&self, files: &mut dyn Files) -> Option<Sample> {
        match self {
            Cgroup::V1 { cpuacct, memory } => {
                let ns: f64 = number(&files.read(&cpuacct.join("cpuacct.usage"))?)?;
                let memory_bytes = memory
                    .as_ref()
                    .and_then(|m| files.read(&m.join("memory.stat")))
                    .and_then(|text| stat_field(&text, "total_rss"))
                    .unwrap_or(0.0);
                Some(Sample {
                    cpu_secs: ns / 1e9,
                    memory_bytes,
                })
            }
            Cgroup::V2 { dir } => {
                let usec = stat_field(&files.read(&dir.join("cpu.stat"))?, "usage_usec")?;
                let memory_bytes = files
                    .read(&dir.join("memory.stat"))
                    .and_then(|text| stat_field(&text, "anon"))
                    .or_else(|| number(&files.read(&dir.join("memory.current"))?))
                    .unwrap_or(0.0);
                Some(Sample {
                    cpu_secs: usec / 1e6,
                    memory_bytes,
                })
            }
        }
    }
}

/// v1 controllers are mounted either alone or co-mounted ("cpu,cpuacct").
fn find_v1_dir(
    root: &Path,
    controllers: &str,
    controller: &str,
    relative: &str,
) -> Option<PathBuf> {
    [controllers, controller, "cpu,cpuacct", "cpuacct,cpu"]
        .iter()
        .map(|mount| root.join(mount).join(relative))
        .find(|dir| dir.is_dir())
}

fn number(text: &str) -> Option<f64> {
    text.trim().parse().ok()
}

fn stat_field(text: &str, key: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Reads a small kernel file whole.
pub trait Files {
    fn read(&mut self, path: &Path) -> Option<String>;
}

/// Reads each file through a descriptor kept open: reading a cgroup file
/// again costs one read from its start, not a path walk, an open and a
/// close (the report reads three of them every second). A file that fails
/// is opened afresh the next time.
#[derive(Default)]
pub struct OpenFiles {
    open: Vec<(PathBuf, fs::File)>,
}

impl Files for OpenFiles {
    fn read(&mut self, path: &Path) -> Option<String> {
        let at = match self.open.iter().position(|(p, _)| p == path) {
            Some(at) => at,
            None => {
                self.open
                    .push((path.to_path_buf(), fs::File::open(path).ok()?));
                self.open.len() - 1
            }
        };
        let text = read_from_start(&self.open[at].1);
        if text.is_none() {
            self.open.remove(at);
        }
        text
    }
}

#[cfg(unix)]
fn read_from_start(file: &fs::File) -> Option<String> {
    use std::os::unix::fs::FileExt;
    /// The cgroup files read are a few hundred bytes; memory.stat about 1 KiB.
    const MAX_FILE: usize = 16 * 1024;
    let mut buf = vec![0u8; MAX_FILE];
    let mut len = 0;
    while len < buf.len() {
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(_) => return None,
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).ok()
}

/// Windows sees no cgroups (the engine is in WSL).
#[cfg(windows)]
fn read_from_start(_file: &fs::File) -> Option<String> {
    None
}

/// Where the container's counters come from.
enum Source<'a> {
    Cgroup(Cgroup, OpenFiles),
    /// The container's init process and its descendants.
    Processes {
        root: u32,
    },
    /// The engine's `stats`: Podman's CPU total, or Docker's percentage
    /// summed over time into `integrated`.
    Stats {
        read: StatsReader<'a>,
        integrated: f64,
        last_read: Option<Instant>,
    },
}

impl<'a> Source<'a> {
    /// `host_pid`: the container's init as this process sees it, if it can.
    fn find(host_pid: Option<u32>, container_id: &str, read_stats: StatsReader<'a>) -> Source<'a> {
        let stats = Source::Stats {
            read: read_stats,
            integrated: 0.0,
            last_read: None,
        };
        let Some(pid) = host_pid.filter(|pid| *pid > 0) else {
            log::info!("the container's processes are out of sight: CPU time and memory come from the engine's stats");
            return stats;
        };
        match Cgroup::of_process(pid) {
            Some(cgroup) if cgroup.belongs_to(container_id) => {
                Source::Cgroup(cgroup, OpenFiles::default())
            }
            _ => {
                log::warn!(
                    "the container has no cgroup of its own (rootless Podman on cgroup v1): its memory, CPU and \
                     process limits are not enforced, and CPU time and memory are summed from its processes"
                );
                Source::Processes { root: pid }
            }
        }
    }

    /// Least time between two readings: a cgroup's two small files are read
    /// at every report, the costlier sources less often.
    fn period(&self) -> Duration {
        match self {
            Source::Cgroup(..) => Duration::ZERO,
            Source::Processes { .. } => PROCESS_SAMPLE_PERIOD,
            Source::Stats { .. } => STATS_PERIOD,
        }
    }

    fn sample(&mut self) -> Option<Sample> {
        match self {
            Source::Cgroup(cgroup, files) => cgroup.sample(files),
            Source::Processes { root } => process_tree::sample(*root),
            Source::Stats {
                read,
                integrated,
                last_read,
            } => {
                let now = Instant::now();
                let stats = read()?;
                let cpu_secs = match stats.cpu {
                    CpuFigure::Total(secs) => secs,
                    CpuFigure::Percent(percent) => {
                        let since =
                            last_read.map_or(0.0, |last| now.duration_since(last).as_secs_f64());
                        *integrated += percent / 100.0 * since;
                        *integrated
                    }
                };
                *last_read = Some(now);
                Some(Sample {
                    cpu_secs,
                    memory_bytes: stats.memory_bytes,
                })
            }
        }
    }

    fn oom_kills(&mut self) -> Option<u64> {
        match self {
            Source::Cgroup(cgroup, files) => cgroup.oom_kills(files),
            _ => None,
        }
    }
}

/// CPU time of the task across wrapper restarts: what the client had
/// already counted when we started, plus what the container has used since.
pub struct Accounting<'a> {
    source: Source<'a>,
    /// When the source may be read again (see `Source::period`).
    next_sample: Instant,
    base_cpu: f64,
    /// The container's own counter when this run first read it: only CPU
    /// time after that is new to the client.
    cpu_at_start: Option<f64>,
    cpu_time: f64,
    memory_bytes: f64,
    oom_kills: u64,
}

impl<'a> Accounting<'a> {
    /// `host_pid`: the container's init as this process sees it (None when
    /// the engine runs elsewhere); `client_cpu`: the task's CPU time when
    /// this run started; `fresh`: this run started the container, so its
    /// counter began at zero (else it holds CPU time an earlier run reported).
    pub fn new(
        host_pid: Option<u32>,
        container_id: &str,
        client_cpu: f64,
        fresh: bool,
        read_stats: StatsReader<'a>,
    ) -> Accounting<'a> {
        let source = Source::find(host_pid, container_id, read_stats);
        let mut accounting = Accounting {
            source,
            next_sample: Instant::now(),
            base_cpu: client_cpu,
            cpu_at_start: None,
            cpu_time: client_cpu,
            memory_bytes: 0.0,
            oom_kills: 0,
        };
        let first = accounting.sample().map(|s| s.cpu_secs);
        // Without this, a CPU-bound job lost the CPU time it used between
        // its start and the first reading (a second or more on a busy host).
        accounting.cpu_at_start = if fresh { Some(0.0) } else { first };
        accounting
    }

    /// A reading of the source, when its period allows one.
    fn sample(&mut self) -> Option<Sample> {
        let now = Instant::now();
        if now < self.next_sample {
            return None;
        }
        self.next_sample = now + self.source.period();
        self.source.sample()
    }

    /// Reads the counters (cheap: two small files, or nothing between /proc reads).
    pub fn update(&mut self) {
        if let Some(sample) = self.sample() {
            // A first reading that failed must not count the whole past again.
            let start = *self.cpu_at_start.get_or_insert(sample.cpu_secs);
            let cpu = self.base_cpu + (sample.cpu_secs - start).max(0.0);
            // Never report less than before (a counter reset would look like that).
            self.cpu_time = self.cpu_time.max(cpu);
            self.memory_bytes = sample.memory_bytes;
        }
        if let Some(kills) = self.source.oom_kills() {
            self.oom_kills = kills;
        }
    }

    /// A last reading when the job has ended, if the source is the
    /// container's cgroup: right after its init exits the cgroup is usually
    /// still there, and the CPU time since the last periodic reading (up
    /// to a report period) counts. The other sources have nothing left to read.
    pub fn update_at_exit(&mut self) {
        if matches!(self.source, Source::Cgroup(..)) {
            self.next_sample = Instant::now();
            self.update();
        }
    }

    /// Whether the kernel OOM-killed a process of the container, from the
    /// counter now or, if the cgroup is already gone, as last read. Podman
    /// on cgroup v1 does not report OOM kills in `inspect`.
    pub fn oom_killed(&mut self) -> bool {
        if let Some(kills) = self.source.oom_kills() {
            self.oom_kills = kills;
        }
        self.oom_kills > 0
    }

    pub fn cpu_time(&self) -> f64 {
        self.cpu_time
    }

    pub fn memory_bytes(&self) -> f64 {
        self.memory_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;

    #[test]
    fn an_open_file_is_read_anew_each_time() {
        let tmp = TestDir::new("cgroup-reread");
        let root = &tmp.0;
        let file = root.join("cpuacct.usage");
        fs::write(&file, "100\n").unwrap();
        let mut files = OpenFiles::default();
        assert_eq!(files.read(&file).as_deref(), Some("100\n"));
        fs::write(&file, "2500\n").unwrap();
        assert_eq!(files.read(&file).as_deref(), Some("2500\n"));
        assert_eq!(files.open.len(), 1);
        assert_eq!(files.read(&root.join("missing")), None);
        assert_eq!(files.open.len(), 1);
    }

    #[test]
    fn reads_cgroup_v1_hybrid() {
        let tmp = TestDir::new("cgroup-v1");
        let root = &tmp.0;
        let cpu = root.join("cpu,cpuacct/docker/abc");
        let mem = root.join("memory/docker/abc");
        fs::create_dir_all(&cpu).unwrap();
        fs::create_dir_all(&mem).unwrap();
        fs::write(cpu.join("cpuacct.usage"), "2500000000\n").unwrap();
        fs::write(mem.join("memory.stat"), "cache 10\nrss 5\ntotal_rss 4096\n").unwrap();
        fs::write(
            mem.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        let text = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/docker/abc\n";
        let cg = Cgroup::from_proc_cgroup(text, root).unwrap();
        assert_eq!(
            cg.sample(&mut OpenFiles::default()),
            Some(Sample {
                cpu_secs: 2.5,
                memory_bytes: 4096.0
            })
        );
        assert_eq!(cg.oom_kills(&mut OpenFiles::default()), Some(2));
    }

    #[test]
    fn reads_cgroup_v2() {
        let tmp = TestDir::new("cgroup-v2");
        let root = &tmp.0;
        let dir = root.join("system.slice/libpod-abc.scope");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("cpu.stat"), "usage_usec 1500000\nuser_usec 1\n").unwrap();
        fs::write(dir.join("memory.current"), "8192\n").unwrap();
        let cg = Cgroup::from_proc_cgroup("0::/system.slice/libpod-abc.scope\n", root).unwrap();
        assert_eq!(
            cg.sample(&mut OpenFiles::default()),
            Some(Sample {
                cpu_secs: 1.5,
                memory_bytes: 8192.0
            })
        );
    }

    #[test]
    fn a_cgroup_is_the_containers_only_when_named_after_it() {
        let id = "698360a1f06460acebc08dd8c6b9192d1b5bf5578699ba689ae4caa12167d282";
        let own = Cgroup::V2 {
            dir: PathBuf::from(format!("/sys/fs/cgroup/machine.slice/libpod-{id}.scope")),
        };
        let shared = Cgroup::V1 {
            cpuacct: PathBuf::from("/sys/fs/cgroup/cpuacct/"),
            memory: None,
        };
        assert!(own.belongs_to(id));
        assert!(!shared.belongs_to(id));
        assert!(!own.belongs_to(""), "an unknown id proves nothing");
    }

    #[test]
    fn no_cgroup_is_none() {
        assert_eq!(
            Cgroup::from_proc_cgroup("garbage", Path::new("/nonexistent")),
            None
        );
    }
}
