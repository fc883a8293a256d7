//! The files a job writes into the slot to ask things of the client, as
//! vboxwrapper's jobs do (job.toml's `completion_trigger_file` and the
//! others, named in `ControlFiles`). Everything in them is the job's:
//! reads are bounded, never follow a link and never block; what cannot be
//! understood is said in stderr.txt and never ends the wrapper.
//!
//! A file is acted on once it stands still: when a look finds the same size
//! and time as the look before, so a job caught writing is not read half
//! way. The heartbeat and checkpoint files are only watched for changes.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::slot::files::LinkedFile;
use crate::slot::{handover as slot_handover, io as slot_io};

/// The files a job may write into the slot to ask things of the client, as
/// vboxwrapper's jobs do; plain file names, relative to the slot (the
/// container's workdir). None/empty: not used.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ControlFiles {
    /// Written when the job is done: exit code, notice flag, message.
    pub completion_trigger_file: Option<String>,
    /// Written to ask for a retry later: delay, notice flag, reason.
    pub temporary_exit_trigger_file: Option<String>,
    /// Each is sent as a trickle-up message named after the file.
    pub trickle_trigger_files: Vec<String>,
    /// Output files to upload as soon as the job has written them.
    pub intermediate_upload_files: Vec<String>,
    /// A file the job touches to show it is alive...
    pub heartbeat_filename: Option<String>,
    /// ...at least this often (seconds).
    pub minimum_heartbeat_interval_secs: u64,
    /// Rewritten by the job at each checkpoint.
    pub checkpoint_file: Option<String>,
}

impl ControlFiles {
    pub fn any(&self) -> bool {
        self.completion_trigger_file.is_some()
            || self.temporary_exit_trigger_file.is_some()
            || !self.trickle_trigger_files.is_empty()
            || !self.intermediate_upload_files.is_empty()
            || self.heartbeat_filename.is_some()
            || self.checkpoint_file.is_some()
    }

    /// Every name used, with the key that names it.
    pub fn names(&self) -> Vec<(&'static str, &str)> {
        let mut names = Vec::new();
        let single = [
            ("completion_trigger_file", &self.completion_trigger_file),
            (
                "temporary_exit_trigger_file",
                &self.temporary_exit_trigger_file,
            ),
            ("heartbeat_filename", &self.heartbeat_filename),
            ("checkpoint_file", &self.checkpoint_file),
        ];
        for (key, name) in single {
            if let Some(name) = name {
                names.push((key, name.as_str()));
            }
        }
        for name in &self.trickle_trigger_files {
            names.push(("trickle_trigger_files", name.as_str()));
        }
        for name in &self.intermediate_upload_files {
            names.push(("intermediate_upload_files", name.as_str()));
        }
        names
    }
}

/// How often the loop looks at the files: with the report, so that both
/// share a wake-up.
pub const POLL: Duration = Duration::from_secs(2);
/// A completion or temporary-exit file is a few lines.
const TRIGGER_MAX_BYTES: u64 = 4096;
/// A trickle-up message is sent whole; the project's messages are small.
const TRICKLE_MAX_BYTES: u64 = 64 * 1024;
/// Longest message or reason passed on (the client reads lines of 256 and
/// 1024 bytes).
const MESSAGE_MAX_CHARS: usize = 250;
/// A gap between two looks longer than this is time the job could not run
/// (suspended, paused): it does not count as silence.
const GAP: Duration = Duration::from_secs(5);

/// What the job asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum JobRequest {
    /// The task is done: finish with `code`, and tell the volunteer.
    Complete {
        code: i32,
        message: String,
        notice: bool,
    },
    /// Keep the work and let the client restart the task after the delay.
    TemporaryExit {
        delay_secs: u32,
        reason: String,
        notice: bool,
    },
    /// Send `content` to the project as a trickle-up message.
    Trickle { variety: String, content: String },
    /// Upload this output file now.
    Upload { name: String },
    /// The job checkpointed.
    Checkpoint,
    /// The job stopped touching its heartbeat file.
    Silent {
        file: String,
        silent_secs: u64,
        interval_secs: u64,
    },
}

/// A file's size and modification time: how the watch sees it change.
type Stamp = (u64, Option<SystemTime>);

pub struct ControlWatch {
    slot_dir: PathBuf,
    names: ControlFiles,
    /// Where each intermediate upload file is really written (the project
    /// file a linked output is mounted from, else the slot file).
    upload_paths: HashMap<String, PathBuf>,
    /// What the last look saw of each trigger file.
    last_seen: HashMap<String, Stamp>,
    /// Files refused that could not be removed either (a directory, say):
    /// not looked at again until they change, so they are reported once.
    unremovable: HashMap<String, Stamp>,
    /// Uploads asked for (once each).
    uploads_asked: Vec<String>,
    heartbeat: Option<Stamp>,
    last_beat: Instant,
    checkpoint: Option<Stamp>,
    last_look: Instant,
}

impl ControlWatch {
    /// None when job.toml names no control file. `linked`: the slot's
    /// linked files (name in the slot, real file).
    pub fn new(
        slot_dir: &Path,
        names: &ControlFiles,
        linked: &[LinkedFile],
        now: Instant,
    ) -> Option<ControlWatch> {
        if !names.any() {
            return None;
        }
        let upload_paths = names
            .intermediate_upload_files
            .iter()
            .map(|name| {
                let path = linked
                    .iter()
                    .find(|file| file.name == *name)
                    .map_or_else(|| slot_dir.join(name), |file| file.target.clone());
                (name.clone(), path)
            })
            .collect();
        let mut watch = ControlWatch {
            slot_dir: slot_dir.to_path_buf(),
            names: names.clone(),
            upload_paths,
            last_seen: HashMap::new(),
            unremovable: HashMap::new(),
            uploads_asked: Vec::new(),
            heartbeat: None,
            last_beat: now,
            checkpoint: None,
            last_look: now,
        };
        // What is there already is not news: a checkpoint or a beat from an
        // earlier run of the same container.
        watch.heartbeat = names.heartbeat_filename.as_ref().map(|f| watch.stamp(f));
        watch.checkpoint = names.checkpoint_file.as_ref().map(|f| watch.stamp(f));
        for name in &names.intermediate_upload_files {
            let stamp = watch.upload_stamp(name);
            watch.last_seen.insert(name.clone(), stamp);
        }
        Some(watch)
    }

    /// Looks at every file; what the job asks for, in a fixed order (the
    /// end of the task last, so that its trickles and uploads go first).
    pub fn look(&mut self, now: Instant) -> Vec<JobRequest> {
        let gap = now.saturating_duration_since(self.last_look);
        if gap > GAP {
            self.last_beat += gap;
        }
        self.last_look = now;
        let mut requests = Vec::new();
        requests.extend(self.checkpoint());
        // One trickle a look: the library keeps one message file at a time.
        let trickles = self.names.trickle_trigger_files.clone();
        if let Some(request) = trickles.iter().find_map(|name| self.trickle(name)) {
            requests.push(request);
        }
        let uploads = self.names.intermediate_upload_files.clone();
        requests.extend(uploads.iter().filter_map(|name| self.upload(name)));
        requests.extend(self.heartbeat(now));
        if let Some(name) = self.names.temporary_exit_trigger_file.clone() {
            let text = self.take_settled(&name, TRIGGER_MAX_BYTES);
            requests.extend(text.map(|text| parse_temporary_exit(&name, &text)));
        }
        if let Some(name) = self.names.completion_trigger_file.clone() {
            let text = self.take_settled(&name, TRIGGER_MAX_BYTES);
            requests.extend(text.map(|text| parse_completion(&name, &text)));
        }
        requests
    }

    fn stamp(&self, name: &str) -> Stamp {
        stamp_of(&self.slot_dir.join(name))
    }

    fn upload_stamp(&self, name: &str) -> Stamp {
        self.upload_paths
            .get(name)
            .map_or((0, None), |path| stamp_of(path))
    }

    /// True once `name` exists and has not changed since the last look.
    fn settled(&mut self, name: &str, now: Stamp) -> bool {
        let before = self.last_seen.insert(name.to_string(), now);
        now.1.is_some() && before == Some(now)
    }

    /// The text of a file the job wrote, once it stands still; the file is
    /// removed so that it is acted on once. None (said in the log) when it
    /// is no regular file or larger than `limit`.
    fn take_settled(&mut self, name: &str, limit: u64) -> Option<String> {
        let stamp = self.stamp(name);
        if self.unremovable.get(name) == Some(&stamp) || !self.settled(name, stamp) {
            return None;
        }
        let path = self.slot_dir.join(name);
        let read = slot_io::read_bounded(&path, limit);
        self.last_seen.remove(name);
        if let Err(err) = std::fs::remove_file(&path) {
            log::warn!("{name}: cannot remove it after reading: {err}");
            self.unremovable.insert(name.to_string(), stamp);
        }
        match read {
            Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            Err(err) => {
                log::warn!("{name}: ignored, {err} (at most {limit} bytes of a regular file)");
                None
            }
        }
    }

    fn trickle(&mut self, name: &str) -> Option<JobRequest> {
        let content = self.take_settled(name, TRICKLE_MAX_BYTES)?;
        Some(JobRequest::Trickle {
            variety: name.to_string(),
            content,
        })
    }

    /// An output file counts as written once it is not empty and stands still.
    fn upload(&mut self, name: &str) -> Option<JobRequest> {
        if self.uploads_asked.iter().any(|asked| asked == name) {
            return None;
        }
        let stamp = self.upload_stamp(name);
        if stamp.0 == 0 || !self.settled(name, stamp) {
            return None;
        }
        self.uploads_asked.push(name.to_string());
        // The client reads the file where it is: it must not lead out.
        let path = self.upload_paths.get(name)?;
        if let Err(refused) = slot_handover::check_upload(&self.slot_dir, path) {
            log::error!("{name}: {refused}; no upload asked for");
            return None;
        }
        Some(JobRequest::Upload {
            name: name.to_string(),
        })
    }

    fn checkpoint(&mut self) -> Option<JobRequest> {
        let name = self.names.checkpoint_file.clone()?;
        let stamp = self.stamp(&name);
        let changed = stamp.1.is_some() && self.checkpoint != Some(stamp);
        self.checkpoint = Some(stamp);
        changed.then_some(JobRequest::Checkpoint)
    }

    fn heartbeat(&mut self, now: Instant) -> Option<JobRequest> {
        let name = self.names.heartbeat_filename.clone()?;
        let stamp = self.stamp(&name);
        if stamp.1.is_some() && self.heartbeat != Some(stamp) {
            self.heartbeat = Some(stamp);
            self.last_beat = now;
        }
        let interval = self.names.minimum_heartbeat_interval_secs;
        let silent = now.saturating_duration_since(self.last_beat).as_secs();
        (silent > interval).then_some(JobRequest::Silent {
            file: name,
            silent_secs: silent,
            interval_secs: interval,
        })
    }
}

fn stamp_of(path: &Path) -> Stamp {
    // The job's own link is looked at, not followed.
    match std::fs::symlink_metadata(path) {
        Ok(meta) => (
            meta.len(),
            Some(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)),
        ),
        Err(_) => (0, None),
    }
}

/// First line a number, second a notice flag (0 or 1), the rest a message.
struct Trigger<'a> {
    number: Option<&'a str>,
    notice: bool,
    text: String,
}

fn split_trigger(text: &str) -> Trigger<'_> {
    let mut lines = text.lines();
    let number = lines.next().map(str::trim).filter(|l| !l.is_empty());
    let notice = lines.next().map(str::trim) == Some("1");
    let rest: Vec<&str> = lines.collect();
    let joined = rest.join(" ");
    let text: String = joined.split_whitespace().collect::<Vec<_>>().join(" ");
    Trigger {
        number,
        notice,
        text: text.chars().take(MESSAGE_MAX_CHARS).collect(),
    }
}

/// Exit code of a completion file whose first line is not one: a failure,
/// never taken for success.
const MALFORMED_EXIT_CODE: i32 = 1;

fn parse_completion(name: &str, text: &str) -> JobRequest {
    let trigger = split_trigger(text);
    let code = match trigger.number.map(str::parse::<i32>) {
        Some(Ok(code)) => code,
        _ => {
            log::warn!(
                "{name}: the first line {:?} is not an exit code; the task ends with code {MALFORMED_EXIT_CODE}",
                trigger.number.unwrap_or_default().chars().take(40).collect::<String>()
            );
            MALFORMED_EXIT_CODE
        }
    };
    JobRequest::Complete {
        code,
        message: trigger.text,
        notice: trigger.notice,
    }
}

/// The client's own bounds on a temporary exit's delay, and its default.
const DELAY_MAX_SECS: u32 = 86_400;
const DELAY_DEFAULT_SECS: u32 = 300;

fn parse_temporary_exit(name: &str, text: &str) -> JobRequest {
    let trigger = split_trigger(text);
    let delay_secs = match trigger.number.map(str::parse::<u32>) {
        Some(Ok(delay)) if delay <= DELAY_MAX_SECS => delay,
        _ => {
            log::warn!(
                "{name}: the first line {:?} is not a delay of 0 to {DELAY_MAX_SECS} seconds; asking for {DELAY_DEFAULT_SECS} s",
                trigger.number.unwrap_or_default().chars().take(40).collect::<String>()
            );
            DELAY_DEFAULT_SECS
        }
    };
    let reason = if trigger.text.is_empty() {
        "the job asked for a temporary exit".to_string()
    } else {
        trigger.text
    };
    JobRequest::TemporaryExit {
        delay_secs,
        reason,
        notice: trigger.notice,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;

    /// The looks of these tests come a second apart: the watch keeps no
    /// cadence of its own, only the times it is given.
    const POLL: Duration = Duration::from_secs(1);

    #[test]
    fn trigger_files_are_parsed_leniently() {
        assert_eq!(
            parse_completion("done", "3\n1\nall good\nreally\n"),
            JobRequest::Complete {
                code: 3,
                message: "all good really".into(),
                notice: true
            }
        );
        assert_eq!(
            parse_completion("done", "0\n"),
            JobRequest::Complete {
                code: 0,
                message: String::new(),
                notice: false
            }
        );
        assert!(matches!(
            parse_completion("done", "zero\n"),
            JobRequest::Complete {
                code: MALFORMED_EXIT_CODE,
                ..
            }
        ));
        assert!(matches!(
            parse_completion("done", ""),
            JobRequest::Complete { code: 1, .. }
        ));
        assert_eq!(
            parse_temporary_exit("later", "600\n0\nwaiting for data\n"),
            JobRequest::TemporaryExit {
                delay_secs: 600,
                reason: "waiting for data".into(),
                notice: false
            }
        );
        for bad in ["-1", "9999999", "soon", ""] {
            assert!(
                matches!(
                    parse_temporary_exit("later", bad),
                    JobRequest::TemporaryExit {
                        delay_secs: DELAY_DEFAULT_SECS,
                        ..
                    }
                ),
                "{bad:?}"
            );
        }
        let long = format!("1\n1\n{}", "x".repeat(10_000));
        let JobRequest::TemporaryExit { reason, .. } = parse_temporary_exit("later", &long) else {
            panic!()
        };
        assert_eq!(reason.len(), MESSAGE_MAX_CHARS);
    }

    fn names() -> ControlFiles {
        ControlFiles {
            completion_trigger_file: Some("done".into()),
            temporary_exit_trigger_file: Some("later".into()),
            trickle_trigger_files: vec!["status".into(), "result".into()],
            intermediate_upload_files: vec!["out1".into()],
            heartbeat_filename: Some("beat".into()),
            minimum_heartbeat_interval_secs: 10,
            checkpoint_file: Some("ckpt".into()),
        }
    }

    #[test]
    fn a_trigger_file_is_acted_on_once_it_stands_still_and_then_removed() {
        let d = TestDir::new("control-trigger");
        let t0 = Instant::now();
        let mut watch = ControlWatch::new(&d.0, &names(), &[], t0).unwrap();
        std::fs::write(d.0.join("done"), "7\n0\nbye\n").unwrap();
        assert_eq!(watch.look(t0), vec![], "first seen: may still be written");
        let requests = watch.look(t0 + POLL);
        assert_eq!(
            requests,
            vec![JobRequest::Complete {
                code: 7,
                message: "bye".into(),
                notice: false
            }]
        );
        assert!(!d.0.join("done").exists());
        assert_eq!(watch.look(t0 + POLL * 2), vec![]);
    }

    #[test]
    fn trickles_go_one_a_look_and_uploads_once() {
        let d = TestDir::new("control-trickle");
        let out = d.0.join("project_out1");
        std::fs::write(&out, "").unwrap();
        let linked = [LinkedFile {
            name: "out1".into(),
            target: out.clone(),
        }];
        let t0 = Instant::now();
        let mut watch = ControlWatch::new(&d.0, &names(), &linked, t0).unwrap();
        std::fs::write(d.0.join("status"), "<p>1</p>").unwrap();
        std::fs::write(d.0.join("result"), "<r/>").unwrap();
        std::fs::write(&out, "data").unwrap();
        assert_eq!(watch.look(t0), vec![]);
        let first = watch.look(t0 + POLL);
        assert_eq!(first.len(), 2, "{first:?}");
        assert!(first.contains(&JobRequest::Upload {
            name: "out1".into()
        }));
        assert!(first
            .iter()
            .any(|r| matches!(r, JobRequest::Trickle { .. })));
        let second = watch.look(t0 + POLL * 2);
        assert!(
            matches!(&second[..], [JobRequest::Trickle { .. }]),
            "{second:?}"
        );
        std::fs::write(&out, "more data").unwrap();
        assert_eq!(
            watch.look(t0 + POLL * 3),
            vec![],
            "an upload is asked for once"
        );
        assert_eq!(watch.look(t0 + POLL * 4), vec![]);
    }

    #[test]
    fn a_hostile_trigger_file_is_refused_not_followed() {
        let d = TestDir::new("control-hostile");
        let t0 = Instant::now();
        let mut watch = ControlWatch::new(&d.0, &names(), &[], t0).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/passwd", d.0.join("status")).unwrap();
        std::fs::write(d.0.join("result"), vec![b'x'; 1 << 20]).unwrap();
        for n in 0..4 {
            let requests = watch.look(t0 + POLL * n);
            assert!(
                !requests
                    .iter()
                    .any(|r| matches!(r, JobRequest::Trickle { .. })),
                "{requests:?}"
            );
        }
        // Both are gone: refused once, not every second.
        assert!(std::fs::symlink_metadata(d.0.join("status")).is_err());
        assert!(!d.0.join("result").exists());
        assert!(std::path::Path::new("/etc/passwd").exists());
        // One that cannot be removed is refused once, then left alone.
        std::fs::create_dir(d.0.join("done")).unwrap();
        watch.look(t0 + POLL * 5);
        watch.look(t0 + POLL * 6);
        assert!(watch.unremovable.contains_key("done"));
        for n in 7..10 {
            assert_eq!(watch.look(t0 + POLL * n), vec![]);
        }
    }

    #[cfg(unix)]
    #[test]
    fn an_upload_file_that_is_a_link_is_refused_not_uploaded() {
        let d = TestDir::new("control-upload-link");
        let host = d.0.join("host_secret");
        std::fs::write(&host, "secret").unwrap();
        let slot = d.0.join("slot");
        std::fs::create_dir(&slot).unwrap();
        let t0 = Instant::now();
        let mut watch = ControlWatch::new(&slot, &names(), &[], t0).unwrap();
        std::os::unix::fs::symlink(&host, slot.join("out1")).unwrap();
        for n in 1..5 {
            assert_eq!(watch.look(t0 + POLL * n), vec![], "look {n}");
        }
        assert!(std::fs::symlink_metadata(slot.join("out1")).is_err());
        assert!(host.is_file());
    }

    #[test]
    fn silence_counts_only_while_the_watch_looks() {
        let d = TestDir::new("control-beat");
        let t0 = Instant::now();
        let mut watch = ControlWatch::new(&d.0, &names(), &[], t0).unwrap();
        let mut now = t0;
        for _ in 0..10 {
            now += POLL;
            assert_eq!(watch.look(now), vec![]);
        }
        // A suspension: no looks for an hour.
        now += Duration::from_secs(3600);
        assert_eq!(watch.look(now), vec![]);
        std::fs::write(d.0.join("beat"), "").unwrap();
        now += POLL;
        assert_eq!(watch.look(now), vec![], "a beat");
        for _ in 0..10 {
            now += POLL;
            assert_eq!(watch.look(now), vec![]);
        }
        now += POLL;
        assert_eq!(
            watch.look(now),
            vec![JobRequest::Silent {
                file: "beat".into(),
                silent_secs: 11,
                interval_secs: 10
            }]
        );
    }

    #[test]
    fn a_rewritten_checkpoint_file_is_a_checkpoint() {
        let d = TestDir::new("control-ckpt");
        std::fs::write(d.0.join("ckpt"), "1").unwrap();
        let t0 = Instant::now();
        let mut watch = ControlWatch::new(&d.0, &names(), &[], t0).unwrap();
        assert_eq!(watch.look(t0), vec![], "an earlier run's checkpoint");
        std::fs::write(d.0.join("ckpt"), "22").unwrap();
        assert_eq!(watch.look(t0 + POLL), vec![JobRequest::Checkpoint]);
        assert_eq!(watch.look(t0 + POLL * 2), vec![]);
    }

    #[test]
    fn nothing_to_watch_without_names() {
        let d = TestDir::new("control-none");
        assert!(ControlWatch::new(&d.0, &ControlFiles::default(), &[], Instant::now()).is_none());
    }
}
