//! The slot's disk usage against the workunit's bound (`rsc_disk_bound`).
//! The client measures it only every five minutes or more, long enough for a
//! runaway job to fill a volunteer's disk; the wrapper looks every few
//! seconds and ends the task as the client would (EXIT_DISK_LIMIT_EXCEEDED).
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Between two measurements at least; longer when a measurement is slow
/// (a slot with very many files), so the walk stays below 0.5% of a core.
const MIN_INTERVAL: Duration = Duration::from_secs(2);
const SLOWNESS_FACTOR: u32 = 200;

pub struct DiskWatch {
    slot_dir: PathBuf,
    bound: u64,
    next_check: Instant,
}

impl DiskWatch {
    /// None when the workunit sets no bound.
    pub fn new(slot_dir: &Path, bound_bytes: f64) -> Option<DiskWatch> {
        (bound_bytes >= 1.0).then(|| DiskWatch {
            slot_dir: slot_dir.to_path_buf(),
            bound: bound_bytes as u64,
            next_check: Instant::now() + MIN_INTERVAL,
        })
    }

    pub fn bound(&self) -> u64 {
        self.bound
    }

    /// The bytes in the slot when they exceed the bound; measures only when due.
    pub fn over_bound(&mut self) -> Option<u64> {
        let now = Instant::now();
        if now < self.next_check {
            return None;
        }
        let used = size_up_to(&self.slot_dir, self.bound + 1);
        self.next_check = Instant::now() + MIN_INTERVAL.max(now.elapsed() * SLOWNESS_FACTOR);
        (used > self.bound).then_some(used)
    }
}

/// The sizes of the files under `dir` (symlinks not followed), as the client
/// counts them; stops early once past `limit`.
fn size_up_to(dir: &Path, limit: u64) -> u64 {
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total = total.saturating_add(meta.len());
                if total >= limit {
                    return total;
                }
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_nested_files_and_stops_past_the_limit() {
        let dir = std::env::temp_dir().join(format!("dw-slot-usage-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("a/b")).unwrap();
        fs::write(dir.join("one"), vec![0u8; 1000]).unwrap();
        fs::write(dir.join("a/b/two"), vec![0u8; 3000]).unwrap();
        assert_eq!(size_up_to(&dir, u64::MAX), 4000);
        assert!(size_up_to(&dir, 1500) >= 1500);
        let mut watch = DiskWatch::new(&dir, 3500.0).unwrap();
        assert_eq!(watch.over_bound(), None, "not due yet");
        watch.next_check = Instant::now();
        assert_eq!(watch.over_bound(), Some(4000));
        assert!(DiskWatch::new(&dir, 0.0).is_none());
        fs::remove_dir_all(&dir).unwrap();
    }
}
