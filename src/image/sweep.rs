//! The host-wide sweep of the image cache: the images of projects this BOINC
//! client no longer has, then the least recently used images of all its
//! projects beyond one bound.
//!
//! A project's own garbage collection (`ImageCache::collect_garbage`) runs
//! only when one of its tasks builds, and the BOINC 8 client removes only
//! `boinc__` images, so without this a detached project's images would stay
//! forever.
//!
//! Which images are this client's: every task records the cache image it
//! runs as `<data dir>/docker_wrapper/images/<engine>/<project>/<hash>`,
//! whose mtime is the image's last use. Only recorded images are swept:
//! another BOINC client using the same engine has its own data dir and
//! projects, and its images are not ours to judge.
//!
//! Rarely: at most once a day per data dir and engine (a time stamp file),
//! by one task at a time (a lock that waits for no one). Never forced: the
//! engine refuses to remove an image a container uses, and that is fine.
use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use std::{fmt, fs};

use super::lock::BuildLock;
use super::{same_image, CACHE_REPOSITORY};
use crate::boinc::init_data::InitData;
use crate::engine::{self, Engine, EngineError};
use crate::slot::io as slot_io;

/// What all projects' cache images together may use. A project's own
/// default budget (`image_cache_max_mb`) is 10 GiB; three such projects fit.
/// Not a job.toml key: one project's settings must not decide how much disk
/// the others' images get.
pub const HOST_MAX_BYTES: u64 = 3 * 10 * 1024 * 1024 * 1024;
/// How often a host (data dir and engine) is swept at most.
const SWEEP_EVERY: Duration = Duration::from_secs(24 * 3600);
/// The wrapper's own files in the BOINC data dir.
const STATE_DIR: &str = "docker_wrapper";

/// A cache image this client's tasks used.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedImage {
    /// As the engine lists it (Podman's with `localhost/`).
    pub reference: String,
    /// The project part of the name (`boinc_wrapper/<project>:<hash>`).
    pub project: String,
    pub bytes: u64,
    pub last_used: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The project's directory is gone: the client left the project.
    ProjectGone,
    /// Least recently used, and all images together exceed the bound.
    OverBound,
}

/// Decides which images go and asks `remove` to remove each; it answers
/// whether the image is gone (not when a container still uses it). First
/// every image of a project not in `live_projects`, then the least recently
/// used ones until the rest fit in `max_bytes`. `keep` (the running task's
/// image) is never removed. Returns the removed images.
pub fn sweep(
    mut images: Vec<CachedImage>,
    live_projects: &HashSet<String>,
    keep: &str,
    max_bytes: u64,
    remove: &mut dyn FnMut(&CachedImage, Reason) -> bool,
) -> Vec<(CachedImage, Reason)> {
    images.sort_by(|a, b| {
        a.last_used
            .cmp(&b.last_used)
            .then_with(|| a.reference.cmp(&b.reference))
    });
    let removable = |image: &CachedImage| !same_image(&image.reference, keep);
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    for image in images {
        if removable(&image)
            && !live_projects.contains(&image.project)
            && remove(&image, Reason::ProjectGone)
        {
            removed.push((image, Reason::ProjectGone));
        } else {
            kept.push(image);
        }
    }
    // The running task's image counts too, though it is never removed.
    let mut total: u64 = kept.iter().map(|image| image.bytes).sum();
    for image in kept {
        if total <= max_bytes {
            break;
        }
        if removable(&image) && remove(&image, Reason::OverBound) {
            total = total.saturating_sub(image.bytes);
            removed.push((image, Reason::OverBound));
        }
    }
    removed
}

/// Once the task has its image: records that the image is used, and sweeps
/// the host if no task did today. Never fails the task; problems are logged.
/// Standalone runs (no client, no data dir) do neither.
pub fn after_start(engine: &Engine, init: &InitData, image: &str, standalone: bool) {
    if standalone {
        return;
    }
    let Some(data_dir) = data_dir(Path::new(&init.project_dir), Path::new(&init.boinc_dir)) else {
        return log::debug!(
            "no BOINC data dir with a projects dir found: image cache sweep skipped"
        );
    };
    let state = State {
        dir: data_dir.join(STATE_DIR),
        engine: engine.kind.cli_name(),
    };
    // A fixed `image_name` is no cache image: nothing to record, but the
    // sweep's dir must exist for its lock and stamp.
    let ready = match cache_name(image) {
        Some((project, hash)) => state.record_use(project, hash),
        None => fs::create_dir_all(&state.dir),
    };
    if let Err(err) = ready {
        // The lock and the stamp would fail the same way: one warning.
        return log::warn!(
            "image cache sweep skipped: cannot record the use of {image} in {}: {err}",
            state.dir.display()
        );
    }
    if !state.due(SystemTime::now()) {
        return;
    }
    let _lock = match BuildLock::try_acquire(&state.dir.join("sweep.lock")) {
        Ok(Some(lock)) => lock,
        Ok(None) => return log::debug!("another task is sweeping the image cache"),
        Err(err) => return log::warn!("image cache sweep skipped: cannot lock it: {err}"),
    };
    // Another task may have swept while we looked.
    if !state.due(SystemTime::now()) {
        return;
    }
    // Stamped first: a sweep that fails is tried again tomorrow, not by every task.
    if let Err(err) = slot_io::replace(&state.stamp(), b"", false) {
        return log::warn!("image cache sweep skipped: cannot write its time stamp: {err}");
    }
    if let Err(why) = sweep_now(engine, &state, &data_dir.join("projects"), image) {
        log::warn!("image cache sweep stopped: {why}");
    }
}

/// The wrapper's own dir in the BOINC data dir of the task's client:
/// shared by all its tasks on this host. None when the data dir cannot be
/// told (see `data_dir`).
pub fn host_dir(init: &InitData) -> Option<PathBuf> {
    let data_dir = data_dir(Path::new(&init.project_dir), Path::new(&init.boinc_dir))?;
    Some(data_dir.join(STATE_DIR))
}

/// The BOINC data dir: the one holding `projects/<project dir>`.
fn data_dir(project_dir: &Path, boinc_dir: &Path) -> Option<PathBuf> {
    let name = project_dir.file_name()?;
    let from_project = project_dir
        .parent()
        .filter(|p| p.file_name() == Some("projects".as_ref()))
        .and_then(Path::parent);
    let dir = from_project.or(Some(boinc_dir).filter(|d| !d.as_os_str().is_empty()))?;
    // Our own project must be there: else this is not the client's view of
    // the data dir, and every project would look gone.
    dir.join("projects")
        .join(name)
        .is_dir()
        .then(|| dir.to_path_buf())
}

/// `(project, hash)` of a cache image reference; None for any other image.
fn cache_name(reference: &str) -> Option<(&str, &str)> {
    let name = reference
        .trim_start_matches("localhost/")
        .strip_prefix(CACHE_REPOSITORY)?
        .strip_prefix('/')?;
    let (project, hash) = name.split_once(':')?;
    // As the engines allow them: starting with a letter or digit, so never
    // a path like "..".
    let plain = |s: &str, extra: &[u8]| {
        s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    };
    (plain(project, b"._-") && plain(hash, b"")).then_some((project, hash))
}

/// The sweep's files in the data dir, for one engine.
struct State {
    dir: PathBuf,
    engine: &'static str,
}

impl State {
    fn stamp(&self) -> PathBuf {
        self.dir.join(format!("swept_{}", self.engine))
    }

    fn images(&self) -> PathBuf {
        self.dir.join("images").join(self.engine)
    }

    fn record(&self, project: &str, hash: &str) -> PathBuf {
        self.images().join(project).join(hash)
    }

    /// A new file each time: its mtime is the time of use.
    fn record_use(&self, project: &str, hash: &str) -> io::Result<()> {
        let record = self.record(project, hash);
        fs::create_dir_all(self.images().join(project))?;
        slot_io::replace(&record, hash.as_bytes(), false)
    }

    /// When the recorded image was last used; None when it is not recorded.
    fn last_use(&self, project: &str, hash: &str) -> Option<SystemTime> {
        let meta = fs::symlink_metadata(self.record(project, hash)).ok()?;
        meta.is_file().then(|| meta.modified().ok()).flatten()
    }

    /// No sweep for a day, or the clock moved back more than that.
    fn due(&self, now: SystemTime) -> bool {
        let Ok(meta) = fs::symlink_metadata(self.stamp()) else {
            return true;
        };
        let Ok(swept) = meta.modified() else {
            return true;
        };
        match now.duration_since(swept) {
            Ok(age) => age >= SWEEP_EVERY,
            Err(ahead) => ahead.duration() >= SWEEP_EVERY,
        }
    }

    /// Removes records of images the engine no longer has (another task's
    /// garbage collection removed them), unless written after `listed_at`.
    fn prune(&self, listed: &HashSet<(String, String)>, listed_at: SystemTime) {
        let Ok(projects) = fs::read_dir(self.images()) else {
            return;
        };
        for project in projects.flatten() {
            let project_name = project.file_name().to_string_lossy().into_owned();
            let Ok(records) = fs::read_dir(project.path()) else {
                continue;
            };
            for record in records.flatten() {
                let hash = record.file_name().to_string_lossy().into_owned();
                let old = record
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < listed_at);
                if old && !listed.contains(&(project_name.clone(), hash)) {
                    let _ = fs::remove_file(record.path());
                }
            }
            // Only when empty.
            let _ = fs::remove_dir(project.path());
        }
    }
}

/// Why a sweep stopped before removing anything.
#[derive(Debug)]
enum SweepError {
    ListProjects { dir: PathBuf, source: io::Error },
    Engine(EngineError),
}

impl fmt::Display for SweepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SweepError::ListProjects { dir, source } => {
                write!(f, "cannot list {}: {source}", dir.display())
            }
            SweepError::Engine(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for SweepError {}

impl From<EngineError> for SweepError {
    fn from(err: EngineError) -> Self {
        SweepError::Engine(err)
    }
}

fn sweep_now(
    engine: &Engine,
    state: &State,
    projects_dir: &Path,
    keep: &str,
) -> Result<(), SweepError> {
    log::info!(
        "sweeping the image cache of all projects in {}",
        projects_dir.display()
    );
    // Read before the images are listed, so a project attached meanwhile
    // cannot look gone.
    let live_projects = live_projects(projects_dir)?;
    let images = cached_images(engine, state)?;
    let removed = sweep(
        images,
        &live_projects,
        keep,
        HOST_MAX_BYTES,
        &mut |image, reason| remove_cached(engine, state, image, reason),
    );
    log::debug!("image cache sweep removed {} images", removed.len());
    Ok(())
}

/// The projects attached now, by the name their images carry. An
/// unreadable dir stops the sweep: it must never make every project look
/// gone.
fn live_projects(projects_dir: &Path) -> Result<HashSet<String>, SweepError> {
    Ok(fs::read_dir(projects_dir)
        .map_err(|source| SweepError::ListProjects {
            dir: projects_dir.to_path_buf(),
            source,
        })?
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .map(|entry| engine::name_component(&entry.file_name().to_string_lossy()))
        .collect())
}

/// The cache's images on the engine that this host's records know, with
/// their sizes and last use; records of images no longer there go.
fn cached_images(engine: &Engine, state: &State) -> Result<Vec<CachedImage>, SweepError> {
    let listed_at = SystemTime::now();
    let listed = engine.image_tags(&format!("{CACHE_REPOSITORY}/*"))?;
    let mut on_engine = HashSet::new();
    let mut recorded = Vec::new();
    for reference in listed {
        let Some((project, hash)) = cache_name(&reference) else {
            continue;
        };
        on_engine.insert((project.to_string(), hash.to_string()));
        // Not recorded here: another client's, or from before records were kept.
        if state.last_use(project, hash).is_some() {
            recorded.push(reference);
        }
    }
    state.prune(&on_engine, listed_at);
    let sized = engine.image_sizes(recorded)?;
    Ok(sized
        .into_iter()
        .filter_map(|(reference, bytes)| {
            let (project, hash) = cache_name(&reference)?;
            let last_used = state.last_use(project, hash)?;
            Some(CachedImage {
                project: project.to_string(),
                reference,
                bytes,
                last_used,
            })
        })
        .collect())
}

/// Removes one image the sweep chose, and its record; false when the
/// engine keeps it (a container still uses it).
fn remove_cached(engine: &Engine, state: &State, image: &CachedImage, reason: Reason) -> bool {
    if let Err(err) = engine.remove_image(&image.reference) {
        log::debug!("image {} kept: {err}", image.reference);
        return false;
    }
    let why = match reason {
        Reason::ProjectGone => "its project is gone",
        Reason::OverBound => "least recently used beyond the host-wide bound",
    };
    log::info!(
        "removed image {} ({} MiB): {why}",
        image.reference,
        image.bytes >> 20
    );
    if let Some((project, hash)) = cache_name(&image.reference) {
        let _ = fs::remove_file(state.record(project, hash));
        let _ = fs::remove_dir(state.images().join(project));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;

    const MIB: u64 = 1024 * 1024;

    fn image(project: &str, hash: &str, mib: u64, used: u64) -> CachedImage {
        CachedImage {
            reference: format!("localhost/boinc_wrapper/{project}:{hash}"),
            project: project.into(),
            bytes: mib * MIB,
            last_used: SystemTime::UNIX_EPOCH + Duration::from_secs(used),
        }
    }

    fn live(projects: &[&str]) -> HashSet<String> {
        projects.iter().map(|p| p.to_string()).collect()
    }

    /// Runs `sweep` with a fake engine that records what it was asked to
    /// remove and refuses the images in `in_use`.
    fn run(
        images: Vec<CachedImage>,
        projects: &[&str],
        keep: &str,
        max_mib: u64,
        in_use: &[&str],
    ) -> Vec<(String, Reason)> {
        let mut asked = Vec::new();
        let removed = sweep(
            images,
            &live(projects),
            keep,
            max_mib * MIB,
            &mut |image, reason| {
                asked.push((image.reference.clone(), reason));
                !in_use.iter().any(|r| image.reference.ends_with(r))
            },
        );
        let short = |r: &str| r.rsplit('/').next().unwrap().to_string();
        let removed: Vec<(String, Reason)> = removed
            .into_iter()
            .map(|(i, why)| (short(&i.reference), why))
            .collect();
        let asked_removed: Vec<(String, Reason)> = asked
            .into_iter()
            .filter(|(r, _)| !in_use.iter().any(|u| r.ends_with(u)))
            .map(|(r, why)| (short(&r), why))
            .collect();
        assert_eq!(
            removed, asked_removed,
            "the result must list what was removed"
        );
        removed
    }

    #[test]
    fn sweep_removes_every_image_of_a_gone_project() {
        let images = vec![
            image("a", "1", 10, 5),
            image("gone", "1", 10, 100),
            image("gone", "2", 10, 1),
        ];
        let removed = run(images, &["a"], "", 1_000, &[]);
        assert_eq!(
            removed,
            vec![
                ("gone:2".into(), Reason::ProjectGone),
                ("gone:1".into(), Reason::ProjectGone)
            ]
        );
    }

    #[test]
    fn sweep_keeps_everything_of_live_projects_within_the_bound() {
        let images = vec![image("a", "1", 10, 5), image("b", "1", 10, 1)];
        assert!(run(images, &["a", "b"], "", 20, &[]).is_empty());
    }

    #[test]
    fn sweep_removes_least_recently_used_across_projects_beyond_the_bound() {
        let images = vec![
            image("a", "new", 40, 30),
            image("b", "old", 40, 10),
            image("a", "mid", 40, 20),
            image("b", "newest", 40, 40),
        ];
        let removed = run(images, &["a", "b"], "", 100, &[]);
        assert_eq!(
            removed,
            vec![
                ("b:old".into(), Reason::OverBound),
                ("a:mid".into(), Reason::OverBound)
            ]
        );
    }

    #[test]
    fn sweep_counts_gone_projects_before_the_bound() {
        // Once the gone project's 60 MiB are removed, the rest fits.
        let images = vec![
            image("gone", "1", 60, 50),
            image("a", "1", 40, 1),
            image("a", "2", 40, 2),
        ];
        let removed = run(images, &["a"], "", 100, &[]);
        assert_eq!(removed, vec![("gone:1".into(), Reason::ProjectGone)]);
    }

    #[test]
    fn sweep_never_removes_the_running_tasks_image() {
        let images = vec![image("a", "1", 100, 1), image("a", "2", 100, 2)];
        let removed = run(images.clone(), &["a"], "boinc_wrapper/a:1", 50, &[]);
        assert_eq!(removed, vec![("a:2".into(), Reason::OverBound)]);
        // Even of a project that looks gone.
        let removed = run(images, &[], "localhost/boinc_wrapper/a:1", 1_000, &[]);
        assert_eq!(removed, vec![("a:2".into(), Reason::ProjectGone)]);
    }

    #[test]
    fn an_image_in_use_stays_and_still_counts() {
        // a:1 is the oldest but a container uses it: the next one goes instead.
        let images = vec![
            image("a", "1", 60, 1),
            image("a", "2", 60, 2),
            image("a", "3", 60, 3),
        ];
        let removed = run(images, &["a"], "", 120, &["a:1"]);
        assert_eq!(removed, vec![("a:2".into(), Reason::OverBound)]);
        // A gone project's image in use stays, and counts toward the bound.
        let images = vec![
            image("gone", "1", 60, 9),
            image("a", "1", 60, 1),
            image("a", "2", 60, 2),
        ];
        let removed = run(images, &["a"], "", 100, &["gone:1"]);
        assert_eq!(
            removed,
            vec![
                ("a:1".into(), Reason::OverBound),
                ("a:2".into(), Reason::OverBound)
            ]
        );
    }

    #[test]
    fn cache_names_are_ours_only() {
        assert_eq!(
            cache_name("localhost/boinc_wrapper/example.org_p:0a1b"),
            Some(("example.org_p", "0a1b"))
        );
        assert_eq!(cache_name("boinc_wrapper/p-1:ff"), Some(("p-1", "ff")));
        assert_eq!(cache_name("boinc__p__wu:latest"), None);
        assert_eq!(cache_name("other/boinc_wrapper/p:1"), None);
        assert_eq!(cache_name("boinc_wrapper/p"), None);
        assert_eq!(cache_name("boinc_wrapper/a/../b:1"), None);
        assert_eq!(cache_name("boinc_wrapper/p:../x"), None);
        assert_eq!(cache_name("boinc_wrapper/:1"), None);
        assert_eq!(cache_name("boinc_wrapper/..:1"), None);
    }

    #[test]
    fn the_data_dir_holds_our_project() {
        let root = TestDir::new("sweep-data");
        let data = root.0.join("boinc");
        let project = data.join("projects").join("example.org_p");
        fs::create_dir_all(&project).unwrap();
        assert_eq!(data_dir(&project, Path::new("")), Some(data.clone()));
        // init_data's boinc_dir, when the project dir is elsewhere.
        let elsewhere = root.0.join("elsewhere").join("example.org_p");
        assert_eq!(data_dir(&elsewhere, &data), Some(data.clone()));
        // Our project missing: not the data dir we think it is.
        assert_eq!(
            data_dir(&data.join("projects").join("other"), Path::new("")),
            None
        );
        assert_eq!(data_dir(Path::new(""), Path::new("")), None);
    }

    #[test]
    fn sweeps_are_due_once_a_day() {
        let root = TestDir::new("sweep-stamp");
        let state = State {
            dir: root.0.clone(),
            engine: "podman",
        };
        let now = SystemTime::now();
        assert!(state.due(now), "never swept");
        slot_io::replace(&state.stamp(), b"", false).unwrap();
        assert!(!state.due(now));
        assert!(!state.due(now + SWEEP_EVERY - Duration::from_secs(60)));
        assert!(state.due(now + SWEEP_EVERY + Duration::from_secs(60)));
        // The clock went back by more than a day.
        assert!(state.due(now - SWEEP_EVERY - Duration::from_secs(60)));
        // Per engine.
        assert!(State {
            dir: root.0.clone(),
            engine: "docker"
        }
        .due(now));
    }

    #[test]
    fn records_say_when_an_image_was_used_and_are_pruned_with_it() {
        let root = TestDir::new("sweep-records");
        let state = State {
            dir: root.0.clone(),
            engine: "docker",
        };
        assert_eq!(state.last_use("p", "1"), None);
        state.record_use("p", "1").unwrap();
        state.record_use("q", "2").unwrap();
        let used = state.last_use("p", "1").unwrap();
        assert!(used <= SystemTime::now());
        // q:2 is no longer on the engine.
        let listed: HashSet<(String, String)> = [("p".to_string(), "1".to_string())].into();
        state.prune(&listed, SystemTime::now() + Duration::from_secs(1));
        assert!(state.last_use("p", "1").is_some());
        assert_eq!(state.last_use("q", "2"), None);
        assert!(!state.images().join("q").exists());
        // A record newer than the listing stays.
        state.record_use("q", "3").unwrap();
        state.prune(&listed, SystemTime::UNIX_EPOCH);
        assert!(state.last_use("q", "3").is_some());
    }
}
