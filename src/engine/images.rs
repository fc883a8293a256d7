//! Images on the engine: whether one is there, building one (and removing
//! what a build that did not finish left), loading an archive, tagging, and
//! listing and removing the wrapper's images for the cache's clean-up.
use std::cell::RefCell;
use std::path::Path;

use super::build_trace::{self, BuildEvent, BuildTrace, Leftover};
use super::process::{self, Argv, Limits};
use super::{archive, failure, Engine, EngineError, EngineKind};

impl Engine {
    pub fn image_exists(&self, image: &str) -> Result<bool, EngineError> {
        let argv = match self.kind {
            // 0 = present, 1 = absent, anything else is an engine error.
            EngineKind::Podman => self.argv(["image", "exists", image]),
            EngineKind::Docker => self.argv(["image", "inspect", "--format", "{{.Id}}", image]),
        };
        let out = self.run_argv(&argv, self.limits(), &mut || false)?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(self.failed(&argv, &out)),
        }
    }

    /// Builds `tag` from `dockerfile` (relative to `context`) in `context`.
    /// On failure the error carries the tail of the build output.
    /// `event` hears of the build's process and of each container and step
    /// image the build makes, as it makes them: what to stop and remove
    /// should the build not finish (see `remove_build_leftovers`).
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        &self,
        context: &Path,
        dockerfile: &Path,
        tag: &str,
        labels: &[(String, String)],
        build_args: &[String],
        cancel: &mut dyn FnMut() -> bool,
        event: &mut dyn FnMut(BuildEvent),
    ) -> Result<(), EngineError> {
        let argv = self.build_argv(context, dockerfile, tag, labels, build_args);
        let limits = Limits {
            timeout: self.build_timeout,
            capture: 16 * 1024,
        };
        let mut trace = BuildTrace::new(self.kind);
        // Both callbacks report through `event`: one at a time.
        let event = RefCell::new(event);
        let mut line = |line: &str| {
            if let Some(made) = trace.line(line) {
                (event.borrow_mut())(BuildEvent::Made(made));
            }
        };
        let mut spawned = |process| (event.borrow_mut())(BuildEvent::Started(process));
        let watch = process::Watch {
            line: &mut line,
            keep: |line| !build_trace::is_debug_log(line),
            spawned: &mut spawned,
        };
        log::debug!("engine: {}", argv.display());
        let out = self.transport.run_watched(&argv, limits, cancel, watch)?;
        if out.success() {
            return Ok(());
        }
        let tail = process::last_lines(&format!("{}\n{}", out.stdout, out.stderr), 20);
        // A failed build stays a failure, whatever it says: its kind is
        // read from its output here, once.
        let detail = format!("{}\n{tail}", out.status);
        Err(EngineError::Failed {
            command: argv.display(),
            failure: failure::read(&detail).failure,
            detail,
        })
    }

    /// The `build` command: in the context with relative paths, since
    /// Podman parses `-f` values as CSV, so quotes in an absolute slot path
    /// would break it.
    fn build_argv(
        &self,
        context: &Path,
        dockerfile: &Path,
        tag: &str,
        labels: &[(String, String)],
        build_args: &[String],
    ) -> Argv {
        // Buildah names the working containers it creates only in its debug log.
        let global: &[&str] = if self.kind == EngineKind::Podman {
            &["--log-level=debug"]
        } else {
            &[]
        };
        let mut argv = self
            .argv(global.iter().chain(&["build", "-t", tag, "-f"]).copied())
            .arg(dockerfile.as_os_str())
            .current_dir(context);
        for (key, value) in labels {
            argv = argv.arg("--label").arg(format!("{key}={value}"));
        }
        if self.kind == EngineKind::Podman {
            // No registry retries: a FROM that cannot be pulled fails at once.
            // No intermediate images: the cache is by content of the whole
            // build, and a failed build then leaves no images behind.
            argv = argv.args(["--retry", "0", "--layers=false"]);
        }
        // Docker's classic builder keeps the container of a failed RUN step
        // unless told otherwise (Podman removes it by default).
        if self.kind == EngineKind::Docker {
            argv = argv.arg("--force-rm");
        }
        if self.kind == EngineKind::Docker && self.docker_needs_classic_builder() {
            argv = argv.env("DOCKER_BUILDKIT", "0");
        }
        argv.args(build_args.iter().map(String::as_str)).arg(".")
    }

    /// Removes what an unfinished build left (its `leftover`s). Containers
    /// go by id, whatever their state; step images only while they are
    /// untagged, and without force, so an image that another image or a
    /// container now uses (a later build took it from the cache) stays.
    /// Fails only when the engine does not answer.
    pub fn remove_build_leftovers(&self, leftovers: &[Leftover]) -> Result<(), EngineError> {
        for leftover in leftovers {
            if let Leftover::Container(id) = leftover {
                // An absent one is fine: the engine may have removed it itself.
                self.run_logged(["rm", "-f", id], || format!("build container {id}"))?;
            }
        }
        let images: Vec<&str> = leftovers
            .iter()
            .filter_map(|l| match l {
                Leftover::Image(id) => Some(id.as_str()),
                Leftover::Container(_) => None,
            })
            .collect();
        if images.is_empty() {
            return Ok(());
        }
        let dangling = match self.run([
            "images",
            "-a",
            "-q",
            "--no-trunc",
            "--filter",
            "dangling=true",
        ]) {
            Ok(out) => out.stdout,
            Err(EngineError::Failed { detail, .. }) => {
                log::debug!("build step images kept: cannot list untagged images: {detail}");
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        let is_dangling = |id: &str| {
            dangling
                .lines()
                .any(|line| line.trim().trim_start_matches("sha256:").starts_with(id))
        };
        // Children before their parents: each step's image is the next one's parent.
        for id in images.into_iter().rev().filter(|id| is_dangling(id)) {
            self.run_logged(["rmi", id], || format!("build step image {id}"))?;
        }
        Ok(())
    }

    /// Runs a command whose failure is only logged, as `what` failed;
    /// fails only when the engine does not answer.
    fn run_logged<const N: usize>(
        &self,
        args: [&str; N],
        what: impl FnOnce() -> String,
    ) -> Result<(), EngineError> {
        let out = self.run_argv(&self.argv(args), self.limits(), &mut || false)?;
        if !out.success() {
            log::debug!("{}: {}", what(), out.error_summary());
        }
        Ok(())
    }

    /// Loads an image archive (`docker save` format, gzip or not).
    /// `scratch` names a file the archive may be decompressed into while
    /// it loads; it is removed afterwards.
    pub fn load(
        &self,
        archive: &Path,
        scratch: &Path,
        cancel: &mut dyn FnMut() -> bool,
    ) -> Result<(), EngineError> {
        // Podman 4 cannot load gzip-compressed docker archives.
        let unpack = self.kind == EngineKind::Podman && archive::is_gzip(archive);
        let loaded = if unpack {
            archive::gunzip(archive, scratch)
                .map_err(|err| self.load_failed(err))
                .and_then(|()| self.load_file(scratch, cancel))
        } else {
            self.load_file(archive, cancel)
        };
        if unpack {
            let _ = std::fs::remove_file(scratch);
        }
        loaded
    }

    fn load_file(
        &self,
        archive: &Path,
        cancel: &mut dyn FnMut() -> bool,
    ) -> Result<(), EngineError> {
        let archive = self
            .path_in_engine(archive)
            .map_err(|err| self.load_failed(err))?;
        let argv = self.argv(["load", "-i"]).arg(archive.as_os_str());
        let limits = Limits {
            timeout: self.build_timeout,
            capture: 16 * 1024,
        };
        self.run_checked(&argv, limits, cancel).map(|_| ())
    }

    /// An archive that could not be made ready to load.
    fn load_failed(&self, err: impl std::fmt::Display) -> EngineError {
        EngineError::other(format!("{} load", self.cli.display()), err.to_string())
    }

    pub fn tag(&self, source: &str, target: &str) -> Result<(), EngineError> {
        self.run(["tag", source, target]).map(|_| ())
    }

    /// BuildKit is Docker's default builder but needs the buildx plugin,
    /// which Debian's docker.io lacks; the classic builder works everywhere.
    fn docker_needs_classic_builder(&self) -> bool {
        if std::env::var_os("DOCKER_BUILDKIT").is_some() {
            return false;
        }
        if let Some(known) = self.docker_classic_builder.get() {
            return known;
        }
        let has_buildx = self
            .run_argv(
                &self.argv(["buildx", "version"]),
                self.limits(),
                &mut || false,
            )
            .map(|out| out.success())
            .unwrap_or(false);
        self.docker_classic_builder.set(Some(!has_buildx));
        !has_buildx
    }

    /// Images of `repository` (any tag), with their sizes in bytes.
    pub fn images_in_repository(
        &self,
        repository: &str,
    ) -> Result<Vec<(String, u64)>, EngineError> {
        let tags = self.image_tags(repository)?;
        self.image_sizes(tags)
    }

    /// Tagged images whose reference matches `pattern` (a name, or a glob
    /// such as `repo/*`).
    pub fn image_tags(&self, pattern: &str) -> Result<Vec<String>, EngineError> {
        let filter = format!("reference={pattern}");
        let out = self.run([
            "images",
            "--filter",
            &filter,
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ])?;
        Ok(out
            .stdout
            .lines()
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.contains("<none>"))
            .map(String::from)
            .collect())
    }

    /// Sizes in bytes of `images`, leaving out those removed since they were
    /// listed (another task's clean-up): one `inspect` for all of them, and
    /// one each only when that fails.
    pub fn image_sizes(&self, images: Vec<String>) -> Result<Vec<(String, u64)>, EngineError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let size_args = |images: &[String]| {
            let mut args = vec![
                "image".to_string(),
                "inspect".into(),
                "--format".into(),
                "{{.Size}}".into(),
            ];
            args.extend(images.iter().cloned());
            args
        };
        let parse = |line: &str| line.trim().parse().unwrap_or(0);
        match self.run(size_args(&images)) {
            Ok(out) => Ok(images
                .into_iter()
                .zip(out.stdout.lines().map(parse))
                .collect()),
            Err(EngineError::Failed { .. }) if images.len() > 1 => Ok(images
                .into_iter()
                .filter_map(|image| {
                    let out = self.run(size_args(std::slice::from_ref(&image))).ok()?;
                    let size = out.stdout.lines().next().map(parse)?;
                    Some((image, size))
                })
                .collect()),
            Err(err) => Err(err),
        }
    }

    pub fn remove_image(&self, image: &str) -> Result<(), EngineError> {
        self.run(["image", "rm", image]).map(|_| ())
    }
}
