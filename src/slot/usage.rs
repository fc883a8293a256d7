//! The task's disk usage against the workunit's bound (`rsc_disk_bound`):
//! the slot plus the output files, as the client counts it. The client
//! measures it only every five minutes or more, long enough for a runaway
//! job to fill a volunteer's disk; the wrapper looks every few seconds and
//! ends the task as the client would (EXIT_DISK_LIMIT_EXCEEDED).
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Between two measurements at least; longer when a measurement is slow
/// (a slot with very many files), so the walk stays below 0.5% of a core.
pub const MIN_INTERVAL: Duration = Duration::from_secs(2);
const SLOWNESS_FACTOR: u32 = 200;
/// Between two measurements at most.
const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// The fastest a job is assumed to fill its slot (a fast local disk): the
/// next look comes before the headroom left could be used up at this rate.
const FASTEST_WRITE_BYTES_PER_SEC: u64 = 1 << 30;

pub struct DiskWatch {
    slot_dir: PathBuf,
    /// The real files behind the slot's links (in the project dir), with
    /// their sizes when watching began: output files are mounted there, so
    /// what the job writes into them is their growth (inputs do not grow).
    linked: Vec<(PathBuf, u64)>,
    bound: u64,
}

/// What one look at the slot found.
#[derive(Debug, PartialEq)]
pub struct Measurement {
    /// The bytes used, when they exceed the bound.
    pub over_bound: Option<u64>,
    /// When to look again, from now.
    pub next_in: Duration,
}

impl DiskWatch {
    /// None when the workunit sets no bound. `linked`: the targets of the
    /// slot's link files.
    pub fn new(slot_dir: &Path, linked: Vec<PathBuf>, bound_bytes: f64) -> Option<DiskWatch> {
        (bound_bytes >= 1.0).then(|| DiskWatch {
            slot_dir: slot_dir.to_path_buf(),
            linked: linked
                .into_iter()
                .map(|path| {
                    let size = file_size(&path);
                    (path, size)
                })
                .collect(),
            bound: bound_bytes as u64,
        })
    }

    pub fn bound(&self) -> u64 {
        self.bound
    }

    /// Measures the slot and the output files' growth.
    pub fn measure(&self) -> Measurement {
        let started = Instant::now();
        let grown: u64 = self
            .linked
            .iter()
            .map(|(path, start)| file_size(path).saturating_sub(*start))
            .sum();
        let used = grown.saturating_add(size_up_to(
            &self.slot_dir,
            (self.bound + 1).saturating_sub(grown),
        ));
        Measurement {
            over_bound: (used > self.bound).then_some(used),
            next_in: next_look(self.bound.saturating_sub(used), started.elapsed()),
        }
    }
}

/// When to look again: as late as the headroom allows at the fastest write
/// rate, within MIN_INTERVAL..MAX_INTERVAL, and never so soon that walking
/// the slot costs much.
fn next_look(headroom: u64, walk_took: Duration) -> Duration {
    let fill_time = Duration::from_secs(headroom / FASTEST_WRITE_BYTES_PER_SEC);
    fill_time
        .clamp(MIN_INTERVAL, MAX_INTERVAL)
        .max(walk_took * SLOWNESS_FACTOR)
}

fn file_size(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

/// The sizes of the files under `dir` (symlinks not followed), as the client
/// counts them; stops early once past `limit`.
fn size_up_to(dir: &Path, limit: u64) -> u64 {
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
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
    use crate::test_dir::TestDir;

    #[test]
    fn the_next_look_follows_the_headroom() {
        let gib = 1u64 << 30;
        let instant = Duration::ZERO;
        assert_eq!(next_look(0, instant), MIN_INTERVAL);
        assert_eq!(next_look(gib, instant), MIN_INTERVAL);
        assert_eq!(next_look(10 * gib, instant), Duration::from_secs(10));
        assert_eq!(next_look(1000 * gib, instant), MAX_INTERVAL);
        // A slow walk is not repeated often, whatever the headroom.
        assert_eq!(
            next_look(0, Duration::from_secs(1)),
            Duration::from_secs(200)
        );
    }

    #[test]
    fn sizes_nested_files_and_stops_past_the_limit() {
        let tmp = TestDir::new("slot-usage");
        let dir = &tmp.0;
        fs::create_dir_all(dir.join("a/b")).unwrap();
        fs::write(dir.join("one"), vec![0u8; 1000]).unwrap();
        fs::write(dir.join("a/b/two"), vec![0u8; 3000]).unwrap();
        assert_eq!(size_up_to(dir, u64::MAX), 4000);
        assert!(size_up_to(dir, 1500) >= 1500);
        let watch = DiskWatch::new(dir, Vec::new(), 3500.0).unwrap();
        let measured = watch.measure();
        assert_eq!(measured.over_bound, Some(4000));
        assert!(measured.next_in >= MIN_INTERVAL);
        assert!(DiskWatch::new(dir, Vec::new(), 0.0).is_none());

        // An output file elsewhere counts by what it grew while watched.
        let output = dir.with_extension("output");
        fs::write(&output, vec![0u8; 100]).unwrap();
        let watch = DiskWatch::new(dir, vec![output.clone()], 4500.0).unwrap();
        assert_eq!(
            watch.measure().over_bound,
            None,
            "4000 in the slot, the output has not grown"
        );
        fs::write(&output, vec![0u8; 700]).unwrap();
        assert_eq!(watch.measure().over_bound, Some(4600));
        fs::remove_file(&output).unwrap();
    }
}
