//! Images: one per distinct set of build inputs, shared by every workunit
//! of a project that has the same inputs; built once under a lock shared by
//! all tasks on the host; least recently used ones removed beyond a budget.
//!
//! Cache images are named `boinc_wrapper/<project>:<hash>` (garbage
//! collection finds them by that repository name), not `boinc__...`,
//! because the BOINC 8 client removes `boinc__*` images no running task
//! owns, and our images outlive their tasks on purpose.
pub mod archive;
mod build_record;
pub mod context;
pub mod dockerfile;
mod lock;
pub mod sweep;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use archive::ArchiveError;
use build_record::BuildRecord;
use context::{BuildInputs, ContextError};
use lock::{BuildLock, LockError};

use crate::engine::{self, BuildEvent, Engine, EngineError, Leftover};
use crate::slot::files::SlotFileError;
use crate::slot::io as slot_io;

/// The first part of every cache image's name.
const CACHE_REPOSITORY: &str = "boinc_wrapper";
/// Label on every cache image: the project it belongs to.
pub const PROJECT_LABEL: &str = "boinc.docker_wrapper.project";
const HASH_LABEL: &str = "boinc.docker_wrapper.inputs";
/// Hex digits of the input hash in the tag: plenty against accidental
/// clashes, short enough to read.
const TAG_HASH_LEN: usize = 24;
/// Staged build context, in the slot while a build runs.
const STAGING_DIR: &str = ".docker_wrapper_context";
/// Where an engine may decompress an image archive, in the slot while it loads.
const UNPACKED_ARCHIVE: &str = ".docker_wrapper_image.tar";

/// Where a task's image comes from.
#[derive(Debug, Clone, Copy)]
pub enum ImageSource<'a> {
    /// job.toml's `image_name`: used as it is, built from the Dockerfile
    /// only if the engine does not have it.
    Named {
        name: &'a str,
        dockerfile: &'a Path,
        build_args: &'a [String],
    },
    /// An image archive shipped with the app version (a slot file name).
    Archive(&'a Path),
    /// The slot's Dockerfile, cached by the hash of its inputs.
    Dockerfile {
        dockerfile: &'a Path,
        build_args: &'a [String],
    },
}

#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    pub max_images: usize,
    pub max_bytes: u64,
}

/// The images of one project on one engine.
pub struct ImageCache<'a> {
    engine: &'a Engine,
    project: String,
    /// Holds the build lock and the last-use markers (the project dir:
    /// shared by all of the project's tasks on this host).
    state_dir: PathBuf,
    limits: CacheLimits,
    build_timeout: Duration,
}

#[derive(Debug)]
pub enum ImageError {
    /// The build inputs are broken (missing Dockerfile, missing COPY source...).
    Inputs(InputsError),
    /// Another task's build holds the lock for too long: try again later.
    Busy(String),
    Engine(EngineError),
}

/// What is wrong with the app version's image inputs.
#[derive(Debug)]
pub enum InputsError {
    Context(ContextError),
    Archive(ArchiveError),
    /// The image archive job.toml names.
    SlotFile(SlotFileError),
    /// job.toml's `image_name` is not on the engine and cannot be built.
    NoDockerfile {
        image: String,
        dockerfile: PathBuf,
    },
    /// The project's build lock cannot be taken.
    Lock(LockError),
}

impl std::fmt::Display for ImageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageError::Inputs(err) => err.fmt(f),
            ImageError::Busy(why) => f.write_str(why),
            ImageError::Engine(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for ImageError {}

impl std::fmt::Display for InputsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputsError::Context(err) => err.fmt(f),
            InputsError::Archive(err) => err.fmt(f),
            InputsError::SlotFile(err) => err.fmt(f),
            InputsError::NoDockerfile { image, dockerfile } => write!(
                f,
                "image {image} does not exist and there is no {} to build it",
                dockerfile.display()
            ),
            InputsError::Lock(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for InputsError {}

impl From<EngineError> for ImageError {
    fn from(err: EngineError) -> Self {
        ImageError::Engine(err)
    }
}

impl From<ContextError> for ImageError {
    fn from(err: ContextError) -> Self {
        ImageError::Inputs(InputsError::Context(err))
    }
}

impl From<ArchiveError> for ImageError {
    fn from(err: ArchiveError) -> Self {
        ImageError::Inputs(InputsError::Archive(err))
    }
}

impl From<SlotFileError> for ImageError {
    fn from(err: SlotFileError) -> Self {
        ImageError::Inputs(InputsError::SlotFile(err))
    }
}

impl<'a> ImageCache<'a> {
    pub fn new(
        engine: &'a Engine,
        project_dir_name: &str,
        state_dir: &Path,
        limits: CacheLimits,
        build_timeout: Duration,
    ) -> Self {
        ImageCache {
            engine,
            project: engine::name_component(project_dir_name),
            state_dir: state_dir.to_path_buf(),
            limits,
            build_timeout,
        }
    }

    /// The image `source` gives, named without asking the engine whether
    /// it has it (a container is created from it at once; the engine says
    /// when it is missing, and `ensure_source` makes it).
    pub fn reference(&self, slot_dir: &Path, source: ImageSource) -> Result<String, ImageError> {
        match source {
            ImageSource::Named { name, .. } => Ok(name.to_string()),
            ImageSource::Archive(archive) => {
                let path = crate::slot::files::resolve(slot_dir, archive)?;
                Ok(self.cache_tag(&context::file_hash(&path)?))
            }
            ImageSource::Dockerfile {
                dockerfile,
                build_args,
            } => {
                let inputs = BuildInputs::collect(slot_dir, dockerfile, build_args)?;
                Ok(self.cache_tag(&inputs.hash()?))
            }
        }
    }

    /// The engine had the image `reference` names: what `ensure` does for
    /// an image it finds (the log, and the time of use for garbage
    /// collection; a fixed `image_name` is never collected).
    pub fn found(&self, source: ImageSource, reference: &str) {
        match source {
            ImageSource::Named { .. } => log::info!("image {reference} is present"),
            ImageSource::Archive(archive) => {
                log::info!("image {reference} (from {}) is cached", archive.display());
                self.mark_used(reference);
            }
            ImageSource::Dockerfile { .. } => {
                log::info!("image {reference} is cached");
                self.mark_used(reference);
            }
        }
    }

    /// The image `source` gives, loaded or built if the engine does not
    /// have it. None when `cancel` said stop while waiting or building.
    pub fn ensure_source(
        &self,
        slot_dir: &Path,
        source: ImageSource,
        cancel: &mut dyn FnMut() -> bool,
    ) -> Result<Option<String>, ImageError> {
        match source {
            ImageSource::Named {
                name,
                dockerfile,
                build_args,
            } => self.ensure_named(name, slot_dir, dockerfile, build_args, cancel),
            ImageSource::Archive(archive) => self.ensure_archive(slot_dir, archive, cancel),
            ImageSource::Dockerfile {
                dockerfile,
                build_args,
            } => self.ensure(slot_dir, dockerfile, build_args, cancel),
        }
    }

    /// The image for this slot's Dockerfile, built if no task built it yet.
    /// None when `cancel` said stop while waiting or building.
    fn ensure(
        &self,
        slot_dir: &Path,
        dockerfile: &Path,
        build_args: &[String],
        cancel: &mut dyn FnMut() -> bool,
    ) -> Result<Option<String>, ImageError> {
        let inputs = BuildInputs::collect(slot_dir, dockerfile, build_args)?;
        let hash = inputs.hash()?;
        let tag = self.cache_tag(&hash);
        if self.engine.image_exists(&tag)? {
            log::info!("image {tag} is cached");
            self.mark_used(&tag);
            return Ok(Some(tag));
        }
        let Some(_lock) = self.lock(cancel)? else {
            return Ok(None);
        };
        // Another task may have built it while we waited for the lock.
        if self.engine.image_exists(&tag)? {
            log::info!("image {tag} was built by another task");
            self.mark_used(&tag);
            return Ok(Some(tag));
        }
        log::info!(
            "building image {tag} from {} context files",
            inputs.file_count()
        );
        if !self.build(&tag, &inputs, Some(&hash), build_args, slot_dir, cancel)? {
            return Ok(None);
        }
        self.mark_used(&tag);
        self.collect_garbage(&tag);
        Ok(Some(tag))
    }

    /// The image in a shipped archive, loaded once and cached by the
    /// archive's content hash.
    fn ensure_archive(
        &self,
        slot_dir: &Path,
        archive: &Path,
        cancel: &mut dyn FnMut() -> bool,
    ) -> Result<Option<String>, ImageError> {
        let path = crate::slot::files::resolve(slot_dir, archive)?;
        let hash = context::file_hash(&path)?;
        let tag = self.cache_tag(&hash);
        if self.engine.image_exists(&tag)? {
            log::info!("image {tag} (from {}) is cached", archive.display());
            self.mark_used(&tag);
            return Ok(Some(tag));
        }
        let id = archive::image_id(&path)?;
        let Some(_lock) = self.lock(cancel)? else {
            return Ok(None);
        };
        if !self.engine.image_exists(&tag)? {
            log::info!("loading image archive {}", archive.display());
            let started = std::time::Instant::now();
            let scratch = slot_dir.join(UNPACKED_ARCHIVE);
            match self.engine.load(&path, &scratch, cancel) {
                Ok(()) => {}
                Err(EngineError::Cancelled) => return Ok(None),
                Err(err) => return Err(err.into()),
            }
            self.engine.tag(&id, &tag)?;
            log::info!(
                "image {tag} loaded in {:.1}s",
                started.elapsed().as_secs_f64()
            );
        }
        self.mark_used(&tag);
        self.collect_garbage(&tag);
        Ok(Some(tag))
    }

    fn repository(&self) -> String {
        format!("{CACHE_REPOSITORY}/{}", self.project)
    }

    fn cache_tag(&self, hash: &str) -> String {
        format!("{}:{}", self.repository(), &hash[..TAG_HASH_LEN])
    }

    /// The image job.toml names (`image_name`): built from the Dockerfile if
    /// missing, never garbage-collected, as in the C++ wrapper.
    fn ensure_named(
        &self,
        name: &str,
        slot_dir: &Path,
        dockerfile: &Path,
        build_args: &[String],
        cancel: &mut dyn FnMut() -> bool,
    ) -> Result<Option<String>, ImageError> {
        if self.engine.image_exists(name)? {
            log::info!("image {name} is present");
            return Ok(Some(name.to_string()));
        }
        if !slot_dir.join(dockerfile).exists() {
            return Err(ImageError::Inputs(InputsError::NoDockerfile {
                image: name.to_string(),
                dockerfile: dockerfile.to_path_buf(),
            }));
        }
        let inputs = BuildInputs::collect(slot_dir, dockerfile, build_args)?;
        let Some(_lock) = self.lock(cancel)? else {
            return Ok(None);
        };
        if self.engine.image_exists(name)? {
            return Ok(Some(name.to_string()));
        }
        log::info!("building image {name}");
        // No cache labels: garbage collection must never see this image.
        Ok(self
            .build(name, &inputs, None, build_args, slot_dir, cancel)?
            .then(|| name.to_string()))
    }

    /// Waits for the project's build lock; None when cancelled.
    fn lock(&self, cancel: &mut dyn FnMut() -> bool) -> Result<Option<BuildLock>, ImageError> {
        let lock_path = self.state_dir.join("docker_wrapper_build.lock");
        // Bounded by the longest a build may take, plus slack for its start.
        let max_wait = self.build_timeout + Duration::from_secs(60);
        match BuildLock::acquire(&lock_path, max_wait, cancel) {
            Ok(lock) => Ok(lock),
            Err(err @ LockError::TimedOut(_)) => Err(ImageError::Busy(err.to_string())),
            Err(err) => Err(ImageError::Inputs(InputsError::Lock(err))),
        }
    }

    /// Stages the context and builds; false when cancelled. Cache images
    /// (with their input `hash`) get the labels garbage collection looks for.
    /// Called with the build lock held: no other build of the project runs,
    /// so what an earlier one recorded is left over, not in use.
    fn build(
        &self,
        tag: &str,
        inputs: &BuildInputs,
        hash: Option<&str>,
        build_args: &[String],
        slot_dir: &Path,
        cancel: &mut dyn FnMut() -> bool,
    ) -> Result<bool, ImageError> {
        let staging = slot_dir.join(STAGING_DIR);
        inputs.stage(&staging)?;
        let labels = match hash {
            Some(hash) => vec![
                (PROJECT_LABEL.to_string(), self.project.clone()),
                (HASH_LABEL.to_string(), hash.to_string()),
            ],
            None => Vec::new(),
        };
        let record_path = BuildRecord::path(&self.state_dir);
        self.remove_killed_build_leftovers(&record_path);
        let mut record = BuildRecord::start(&record_path, self.engine.kind);
        let started = std::time::Instant::now();
        let built = self.engine.build(
            &staging,
            Path::new(context::STAGED_DOCKERFILE),
            tag,
            &labels,
            build_args,
            cancel,
            &mut |event| match event {
                BuildEvent::Started(process) => record.started(process),
                BuildEvent::Made(leftover) => record.add(leftover),
            },
        );
        let _ = fs::remove_dir_all(&staging);
        // A finished build's containers are gone and its step images are
        // the image's own layers; an unfinished one's are litter.
        let cleaned = match &built {
            Ok(()) => true,
            Err(err) => self.remove_unfinished_build(record.leftovers(), err),
        };
        if cleaned {
            record.close();
        }
        match built {
            Ok(()) => {
                log::info!("image built in {:.1}s", started.elapsed().as_secs_f64());
                Ok(true)
            }
            Err(err) => cancelled_or(err),
        }
    }

    /// Removes what a build that ended with `err` left; false when the
    /// engine did not answer (the record then stays for the next build).
    fn remove_unfinished_build(&self, leftovers: &[Leftover], err: &EngineError) -> bool {
        if leftovers.is_empty() {
            return true;
        }
        let why = if matches!(err, EngineError::Cancelled) {
            "stopped"
        } else {
            "failed"
        };
        log::info!("build {why}: removing {}", describe(leftovers));
        match self.engine.remove_build_leftovers(leftovers) {
            Ok(()) => true,
            Err(err) => {
                log::warn!("cannot remove what the build left: {err}");
                false
            }
        }
    }

    /// Whether `process` runs our engine's `build` (the record is a file;
    /// the process it names must be the one it claims to be).
    fn is_build_command(&self, process: crate::host::process_tree::ProcessId) -> bool {
        let args = crate::host::process_tree::command_line(process);
        // A helper (macOS) may run the CLI as its child, or become it.
        let names = [self.engine.cli(), self.engine.program()].map(Path::file_name);
        args.first()
            .is_some_and(|program| names.contains(&Path::new(program).file_name()))
            && args.iter().any(|a| a == "build")
    }

    /// A record left in the project dir means a build was killed before it
    /// could clean up: stops its command if that still runs (it leads its
    /// own process group, so it outlives a killed wrapper), then removes
    /// exactly what the record names.
    fn remove_killed_build_leftovers(&self, record: &Path) {
        let Some(earlier) = BuildRecord::read(record, self.engine.kind) else {
            return;
        };
        if let Some(process) = earlier.process.filter(|p| self.is_build_command(*p)) {
            log::info!(
                "stopping the build an earlier task left running (pid {})",
                process.pid
            );
            engine::terminate_orphan(process);
        }
        let leftovers = earlier.leftovers;
        if !leftovers.is_empty() {
            log::info!(
                "an earlier build of this project was interrupted: removing {}",
                describe(&leftovers)
            );
            if let Err(err) = self.engine.remove_build_leftovers(&leftovers) {
                return log::warn!("cannot remove what the interrupted build left: {err}");
            }
        }
        build_record::remove(record);
    }

    fn marker(&self, tag: &str) -> PathBuf {
        let name = tag.rsplit(':').next().unwrap_or(tag);
        self.state_dir.join("docker_wrapper_images").join(name)
    }

    /// Records that `tag` was used now (the marker file's mtime).
    pub fn mark_used(&self, tag: &str) {
        let marker = self.marker(tag);
        if let Some(dir) = marker.parent() {
            let _ = fs::create_dir_all(dir);
        }
        // A new file each time: its mtime is the time of use, and in a
        // standalone run the state dir is the slot.
        if let Err(err) = slot_io::replace(&marker, tag.as_bytes(), false) {
            log::debug!("cannot record use of {tag}: {err}");
        }
    }

    fn last_used(&self, tag: &str) -> SystemTime {
        fs::metadata(self.marker(tag))
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// Removes this project's least recently used images beyond the limits.
    /// The engine refuses to remove an image a container uses; such an image
    /// is skipped. Failures only cost disk space, so they are just logged.
    pub fn collect_garbage(&self, keep: &str) {
        let images = match self.engine.images_in_repository(&self.repository()) {
            Ok(images) => images,
            Err(err) => return log::warn!("image cleanup skipped: {err}"),
        };
        let mut images: Vec<(String, u64, SystemTime)> = images
            .into_iter()
            .map(|(tag, bytes)| {
                let used = self.last_used(&tag);
                (tag, bytes, used)
            })
            .collect();
        images.sort_by_key(|(_, _, used)| *used);
        let mut count = images.len();
        let mut bytes: u64 = images.iter().map(|(_, b, _)| b).sum();
        for (tag, size, _) in &images {
            if count <= self.limits.max_images && bytes <= self.limits.max_bytes {
                break;
            }
            if same_image(tag, keep) {
                continue;
            }
            match self.engine.remove_image(tag) {
                Ok(()) => {
                    log::info!(
                        "removed least recently used image {tag} ({} MiB)",
                        size >> 20
                    );
                    let _ = fs::remove_file(self.marker(tag));
                    count -= 1;
                    bytes = bytes.saturating_sub(*size);
                }
                Err(err) => log::debug!("image {tag} kept: {err}"),
            }
        }
    }
}

/// false for a cancelled build, else the build's error.
fn cancelled_or(err: EngineError) -> Result<bool, ImageError> {
    match err {
        EngineError::Cancelled => Ok(false),
        err => Err(err.into()),
    }
}

/// "1 build container and 2 build step images", for the log.
fn describe(leftovers: &[Leftover]) -> String {
    let containers = leftovers
        .iter()
        .filter(|l| matches!(l, Leftover::Container(_)))
        .count();
    let images = leftovers.len() - containers;
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    match (containers, images) {
        (c, 0) => plural(c, "build container"),
        (0, i) => plural(i, "build step image"),
        (c, i) => format!(
            "{} and {}",
            plural(c, "build container"),
            plural(i, "build step image")
        ),
    }
}

/// Podman prefixes local images with "localhost/".
fn same_image(a: &str, b: &str) -> bool {
    a.trim_start_matches("localhost/") == b.trim_start_matches("localhost/")
}

/// Whether `image` (a container's, as the engine recorded it) is one this
/// project's tasks run: an image of its cache, or job.toml's `image_name`.
pub fn is_task_image(project_dir_name: &str, image_name: Option<&str>, image: &str) -> bool {
    let image = reference(image);
    match image_name {
        Some(name) => image == reference(name),
        None => image
            .strip_prefix(CACHE_REPOSITORY)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|rest| rest.strip_prefix(engine::name_component(project_dir_name).as_str()))
            .is_some_and(|tag| tag.starts_with(':')),
    }
}

/// An image reference as both engines may record it, in one spelling:
/// without the registry a local or Docker Hub image gets, with a tag.
fn reference(name: &str) -> String {
    let name = name.trim();
    let name = ["localhost/", "docker.io/library/", "docker.io/"]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))
        .unwrap_or(name);
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || last.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_containers_image_is_the_tasks_only_if_the_project_could_run_it() {
        let ours = |image_name: Option<&str>, image: &str| {
            is_task_image("example.org_p", image_name, image)
        };
        assert!(ours(None, "boinc_wrapper/example.org_p:0a1b2c"));
        assert!(ours(None, "localhost/boinc_wrapper/example.org_p:0a1b2c"));
        assert!(!ours(None, "boinc_wrapper/example.org_p2:0a1b2c"));
        assert!(!ours(None, "boinc_wrapper/other:0a1b2c"));
        assert!(!ours(None, "busybox"));
        assert!(!ours(None, ""));
        assert!(ours(Some("debian"), "docker.io/library/debian:latest"));
        assert!(ours(Some("localhost/app:2"), "app:2"));
        assert!(ours(
            Some("reg.example:5000/app"),
            "reg.example:5000/app:latest"
        ));
        assert!(!ours(Some("debian"), "debian:12"));
        assert!(!ours(Some("debian"), "boinc_wrapper/example.org_p:0a1b2c"));
    }

    #[test]
    fn leftovers_are_counted_for_the_log() {
        let container = Leftover::Container("3ca21ee4f2eb".into());
        let image = Leftover::Image("7a30133db9aa".into());
        assert_eq!(
            describe(std::slice::from_ref(&container)),
            "1 build container"
        );
        assert_eq!(
            describe(&[image.clone(), image.clone()]),
            "2 build step images"
        );
        assert_eq!(
            describe(&[container, image.clone(), image]),
            "1 build container and 2 build step images"
        );
    }
}

/// Property tests: cache image references are valid for both engines
/// whatever the project's name.
#[cfg(test)]
mod props {
    use super::*;
    use crate::engine::name_props::{hostile_text, matches, PATH_COMPONENT};
    use crate::engine::EngineKind;
    use crate::property_tests::config;
    use proptest::prelude::*;

    /// An image tag (Go's `\w` is ASCII).
    const TAG: &str = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$";
    /// The engines' limit on a reference's name (without the tag).
    const MAX_NAME: usize = 255;

    proptest! {
        #![proptest_config(config(1024))]

        #[test]
        fn cache_tags_are_valid_references(
            project in hostile_text(),
            hash in "[0-9a-f]{64}",
            podman in any::<bool>(),
        ) {
            let kind = if podman { EngineKind::Podman } else { EngineKind::Docker };
            let timeout = Duration::from_secs(1);
            let engine = Engine::new(kind, PathBuf::from("engine"), timeout, timeout);
            let limits = CacheLimits { max_images: 1, max_bytes: 1 };
            let cache = ImageCache::new(&engine, &project, Path::new("/state"), limits, timeout);
            let reference = cache.cache_tag(&hash);

            let (name, tag) = reference.rsplit_once(':').unwrap();
            prop_assert!(matches(TAG, tag), "{:?}", reference);
            prop_assert!(name.split('/').all(|c| matches(PATH_COMPONENT, c)), "{:?}", reference);
            // Podman stores it as localhost/<name>.
            prop_assert!(
                format!("localhost/{name}").len() <= MAX_NAME,
                "{} bytes: {:?}", name.len(), reference
            );
            prop_assert_eq!(cache.cache_tag(&hash), reference);
        }
    }
}
