//! The client's resource numbers (`ncpus`, `rsc_memory_bound`,
//! `rsc_disk_bound` in init_data.xml) come from the workunit and the
//! volunteer's settings and can be anything finite: 1e30 bytes of memory
//! turns into a `--memory` the engines refuse, and the task fails. Limits
//! above what the host has mean "no tighter than the host", so they are
//! lowered to the host's own figures, with one line saying so.
use crate::boinc::init_data::InitData;

/// What this host has; None where it cannot be told.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Host {
    pub cpus: f64,
    pub memory_bytes: Option<f64>,
    /// Size of the file system that holds the slot.
    pub disk_bytes: Option<f64>,
}

impl Host {
    pub fn measure(slot_dir: &std::path::Path) -> Host {
        Host {
            cpus: std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
            memory_bytes: physical_memory(),
            disk_bytes: file_system_size(slot_dir),
        }
    }
}

/// Lowers the numbers of `init` that exceed the host's; returns one line
/// per number changed.
pub fn clamp(init: &mut InitData, host: &Host) -> Vec<String> {
    let mut notes = Vec::new();
    if init.ncpus > host.cpus {
        notes.push(format!(
            "the client asked for {} CPUs; this host has {}: using {}",
            init.ncpus, host.cpus, host.cpus
        ));
        init.ncpus = host.cpus;
    }
    let mut lower = |name: &str, value: &mut f64, have: Option<f64>, what: &str| {
        if let Some(have) = have.filter(|&have| have > 0.0 && *value > have) {
            notes.push(format!(
                "{name} of {} is more than this host's {what} ({}): using {}",
                amount(*value),
                amount(have),
                amount(have)
            ));
            *value = have;
        }
    };
    lower(
        "rsc_memory_bound",
        &mut init.rsc_memory_bound,
        host.memory_bytes,
        "memory",
    );
    lower(
        "rsc_disk_bound",
        &mut init.rsc_disk_bound,
        host.disk_bytes,
        "disk",
    );
    notes
}

/// Bytes as a person reads them, however large.
fn amount(bytes: f64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes < 1e15 {
        format!("{:.0} MiB", bytes / MIB)
    } else {
        format!("{bytes:e} bytes")
    }
}

/// MemTotal of /proc/meminfo.
fn physical_memory() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo_total(&text)
}

fn meminfo_total(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

#[cfg(unix)]
fn file_system_size(dir: &std::path::Path) -> Option<f64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_blocks as f64 * stat.f_frsize as f64)
}

#[cfg(not(unix))]
fn file_system_size(_dir: &std::path::Path) -> Option<f64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    const HOST: Host = Host {
        cpus: 2.0,
        memory_bytes: Some(8.0 * GIB),
        disk_bytes: Some(100.0 * GIB),
    };

    fn init(ncpus: f64, memory: f64, disk: f64) -> InitData {
        InitData {
            ncpus,
            rsc_memory_bound: memory,
            rsc_disk_bound: disk,
            ..InitData::default()
        }
    }

    #[test]
    fn numbers_within_the_host_are_kept() {
        let mut d = init(2.0, 512.0 * 1024.0 * 1024.0, 2.0 * GIB);
        assert!(clamp(&mut d, &HOST).is_empty());
        assert_eq!(
            (d.ncpus, d.rsc_memory_bound, d.rsc_disk_bound),
            (2.0, 512.0 * 1024.0 * 1024.0, 2.0 * GIB)
        );
        // Zero means "not given"; it stays that way.
        let mut d = init(0.0, 0.0, 0.0);
        assert!(clamp(&mut d, &HOST).is_empty());
    }

    #[test]
    fn numbers_beyond_the_host_are_lowered_and_said() {
        let mut d = init(64.0, 1e30, 1e300);
        let notes = clamp(&mut d, &HOST);
        assert_eq!(
            (d.ncpus, d.rsc_memory_bound, d.rsc_disk_bound),
            (2.0, 8.0 * GIB, 100.0 * GIB)
        );
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert_eq!(
            notes[0],
            "the client asked for 64 CPUs; this host has 2: using 2"
        );
        assert_eq!(notes[1], "rsc_memory_bound of 1e30 bytes is more than this host's memory (8192 MiB): using 8192 MiB");
        assert!(
            notes[2].starts_with("rsc_disk_bound of 1e300 bytes"),
            "{}",
            notes[2]
        );
        assert!(notes.iter().all(|n| !n.contains('\n')));
    }

    #[test]
    fn unknown_host_figures_change_nothing() {
        let host = Host {
            cpus: 2.0,
            memory_bytes: None,
            disk_bytes: None,
        };
        let mut d = init(1.0, 1e30, 1e30);
        assert!(clamp(&mut d, &host).is_empty());
        assert_eq!(d.rsc_memory_bound, 1e30);
    }

    #[test]
    fn reads_meminfo() {
        assert_eq!(
            meminfo_total("MemTotal:        8036540 kB\nMemFree: 1 kB\n"),
            Some(8036540.0 * 1024.0)
        );
        assert_eq!(meminfo_total("garbage"), None);
        #[cfg(target_os = "linux")]
        assert!(Host::measure(std::path::Path::new("/"))
            .memory_bytes
            .is_some_and(|m| m > 0.0));
    }
}
