//! What the client hears while the job runs (CPU time, memory, progress,
//! checkpoints) and the periodic look at the slot's size.
use std::path::Path;
use std::time::Instant;

use crate::boinc::TaskReport;
use crate::slot::io as slot_io;
use crate::supervise::machine::{Event, Periodic};
use crate::supervise::{Next, Supervision, REPORT_PERIOD};

impl Supervision<'_> {
    /// `sample`: read the container's counters first (it runs);
    /// `job_ended`: the job is done (the counters were read at its exit);
    /// `time_share`: the progress when the job writes none.
    pub(super) fn report(
        &mut self,
        sample: bool,
        job_ended: bool,
        time_share: Option<f64>,
    ) -> Next {
        if sample {
            self.accounting.update();
        } else if job_ended {
            self.accounting.update_at_exit();
        }
        let cpu_time = self.accounting.cpu_time();
        let fraction_done = if job_ended {
            1.0
        } else {
            read_fraction_done(&self.task.ctx.fraction_done_file())
                .or(time_share)
                .unwrap_or(0.0)
        };
        self.task.client.report(&TaskReport {
            cpu_time,
            // The container keeps its state across quits: all CPU time so
            // far is kept work, unless the job says when it checkpoints.
            checkpoint_cpu_time: self.checkpoint_cpu.unwrap_or(cpu_time),
            fraction_done,
            working_set_size: self.accounting.memory_bytes(),
        });
        self.schedule
            .set(Periodic::Report, Instant::now() + REPORT_PERIOD);
        Next::Continue
    }

    pub(super) fn check_disk(&mut self) -> Next {
        let Some(disk) = &self.disk else {
            return Next::Continue;
        };
        let measured = disk.measure();
        self.schedule
            .set(Periodic::DiskCheck, Instant::now() + measured.next_in);
        match measured.over_bound {
            Some(used) => Next::Then(vec![Event::DiskOverBound {
                used,
                bound: disk.bound(),
            }]),
            None => Next::Continue,
        }
    }

    /// The job checkpointed: its CPU time so far is kept work.
    pub(super) fn checkpoint(&mut self) -> Next {
        self.accounting.update();
        let cpu = self.accounting.cpu_time();
        self.checkpoint_cpu = Some(cpu);
        self.task.client.checkpoint_completed();
        log::debug!("the job checkpointed at {cpu:.0} s of CPU time");
        Next::Continue
    }
}

/// A number and some white space; the job may write anything, of any size.
const FRACTION_DONE_MAX_BYTES: u64 = 256;

/// The first number in the job's fraction_done file, clamped to 0..1 (0
/// when the file holds none); None when there is no such file to read.
fn read_fraction_done(path: &Path) -> Option<f64> {
    let bytes = slot_io::read_prefix(path, FRACTION_DONE_MAX_BYTES).ok()?;
    Some(
        String::from_utf8_lossy(&bytes)
            .split_whitespace()
            .next()
            .and_then(|w| w.parse::<f64>().ok())
            .filter(|f| f.is_finite())
            .map_or(0.0, |f| f.clamp(0.0, 1.0)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;

    #[test]
    fn fraction_done_is_read_and_clamped() {
        let tmp = TestDir::new("fraction-done");
        let dir = &tmp.0;
        let file = dir.join("fraction_done");
        assert_eq!(read_fraction_done(&file), None);
        for (text, want) in [
            ("0.25\n", 0.25),
            ("7", 1.0),
            ("-1", 0.0),
            ("nan", 0.0),
            ("abc", 0.0),
            ("0.5 extra", 0.5),
        ] {
            std::fs::write(&file, text).unwrap();
            assert_eq!(read_fraction_done(&file), Some(want), "{text:?}");
        }
        // Whatever the job puts there costs at most a short read.
        std::fs::write(&file, format!("0.75{}", " ".repeat(1 << 20))).unwrap();
        assert_eq!(read_fraction_done(&file), Some(0.75));
        std::fs::remove_file(&file).unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/dev/zero", &file).unwrap();
            assert_eq!(read_fraction_done(&file), None);
            std::fs::remove_file(&file).unwrap();
            rustix::fs::mkfifoat(
                rustix::fs::CWD,
                &file,
                rustix::fs::Mode::from_raw_mode(0o644),
            )
            .unwrap();
            assert_eq!(read_fraction_done(&file), None);
        }
    }
}
