//! The container's specification: limits, mounts, user, GPU, labels, and
//! its creation, without the limits where the engine refuses them.
use anyhow::{Context, Result};

use super::Task;
use crate::background;
use crate::boinc;
use crate::engine::create::CreateSpec;
use crate::engine::{gpu, names, EngineError, EngineKind, Failure};
use crate::os;
use crate::slot_files;

impl Task {
    /// Creates and starts the container. An engine that refuses the cgroup
    /// limits (no delegated controllers for a rootless user, a kernel without
    /// them) gets the container without them, with one warning.
    pub(super) fn create_and_start(&self) -> Result<()> {
        let spec = self.create_spec()?;
        let create_then_start = |spec: &CreateSpec| -> Result<()> {
            self.engine
                .create(spec)
                .context("cannot create the container")?;
            self.owns_container.set(true);
            self.engine
                .start(&self.container)
                .context("cannot start the container")
        };
        let err = match create_then_start(&spec) {
            Ok(()) => return Ok(()),
            Err(err) => err,
        };
        let failure = err.downcast_ref::<EngineError>().map(EngineError::failure);
        if failure != Some(Failure::LimitsRefused) {
            return Err(err);
        }
        log::warn!("the engine refused the resource limits, so the job runs without them: {err:#}");
        // A refusal at start leaves the created container in the way.
        if let Err(err) = self.engine.remove(&self.container) {
            log::debug!("{err}");
        }
        create_then_start(&CreateSpec {
            resource_limits: false,
            ..spec
        })
    }

    fn labels(&self) -> Vec<(String, String)> {
        vec![
            (
                "boinc.docker_wrapper".into(),
                env!("CARGO_PKG_VERSION").into(),
            ),
            ("boinc.project".into(), self.init.project_dir_name().into()),
            ("boinc.wu".into(), self.init.wu_name.clone()),
            ("boinc.result".into(), self.init.result_name.clone()),
            (names::SLOT_LABEL.into(), self.slot_label()),
        ]
    }

    fn create_spec(&self) -> Result<CreateSpec> {
        let env = vec![("ARGS".to_string(), self.cli.job_args.join(" "))];
        let project_mount = match &self.config.project_dir_mount {
            Some(guest) => Some((self.engine_path(&self.project_dir()?)?, guest.clone())),
            None => None,
        };
        let memory_bytes =
            (self.init.rsc_memory_bound > 0.0).then_some(self.init.rsc_memory_bound as u64);
        let mut mounts = self.config.mounts.clone();
        mounts.extend(self.linked_file_mounts()?);
        let mut portmaps = self.config.portmaps.clone();
        if let Some(guest) = self.config.web_graphics_guest_port {
            match boinc::free_port(false) {
                Ok(host) => {
                    log::info!("web graphics: host port {host} -> container port {guest}");
                    portmaps.push(format!("127.0.0.1:{host}:{guest}"));
                    self.web_graphics_port.set(Some(host));
                }
                Err(code) => {
                    log::warn!("no free port for web graphics (error {code}); continuing without")
                }
            }
        }
        Ok(CreateSpec {
            name: self.container.clone(),
            image: self.image.borrow().clone(),
            labels: self.labels(),
            slot_dir: self.engine_path(&self.slot_dir)?,
            workdir: self.config.workdir.clone(),
            project_mount,
            mounts,
            portmaps,
            env,
            proxy_env: self.init.proxy_env(),
            resource_limits: true,
            // Docker refuses more CPUs than the host has; the client's ncpus
            // can exceed them (a volunteer's <ncpus> override).
            cpus: self.init.ncpus.min(host_cpus()),
            memory_bytes,
            cpu_shares: self.config.cpu_shares,
            pids_limit: self.config.pids_limit,
            network: self.config.network,
            log_max_bytes: 64 * 1024 * 1024,
            cgroup_parent: self.idle_cgroup_parent(),
            cap_add: self.config.cap_add.clone(),
            user: self.container_user(),
            gpu_args: self.gpu_args(),
            extra_args: self.config.create_args.clone(),
        })
    }

    /// The client leaves input and output files in the slot as soft-link
    /// files (or symlinks) unless the app version asks for copies; a job
    /// would read the link text. Mount each real file at its open name:
    /// inputs read-only, outputs read-write into the project file the client
    /// uploads (created empty first, as bind mounts need an existing source).
    fn linked_file_mounts(&self) -> Result<Vec<String>> {
        let linked = slot_files::linked_files(&self.slot_dir).map_err(anyhow::Error::msg)?;
        let mut mounts = Vec::new();
        for file in linked {
            let guest = format!(
                "{}/{}",
                self.config.workdir.trim_end_matches('/'),
                file.name
            );
            let source = self.engine_path(&file.target)?;
            if file.name.contains(':') || source.to_string_lossy().contains(':') {
                log::warn!(
                    "{}: a ':' in the path cannot be mounted; the job sees the link file",
                    file.name
                );
                continue;
            }
            let mode = if file.target.exists() {
                "ro"
            } else {
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&file.target)
                    .with_context(|| {
                        format!("cannot create output file {}", file.target.display())
                    })?;
                "rw"
            };
            log::debug!("{} -> {} ({mode})", file.name, file.target.display());
            mounts.push(format!("{}:{guest}:{mode}", source.display()));
        }
        Ok(mounts)
    }

    fn idle_cgroup_parent(&self) -> Option<String> {
        if !self.config.idle_priority {
            return None;
        }
        // Windows: the engine's cgroups are inside WSL's VM, not under this
        // host's /sys/fs/cgroup (README: not available there).
        if cfg!(windows) {
            log::debug!("no idle parent cgroup: the engine runs in WSL");
            return None;
        }
        // Rootless Podman has no cgroup hierarchy of its own to place us in.
        if self.engine.kind == EngineKind::Podman && os::user_and_group().0 != 0 {
            return None;
        }
        match self.engine.cgroup_driver() {
            Ok(Some(driver)) => background::idle_parent(driver),
            Ok(None) => None,
            Err(err) => {
                log::debug!("cgroup driver unknown ({err}): no idle parent cgroup");
                None
            }
        }
    }

    /// Docker runs containers as root by default, so files the job writes
    /// into the slot would belong to root; run as the wrapper's user instead.
    /// (Not when the wrapper is root itself: then the image's USER stands.)
    fn container_user(&self) -> Option<(u32, u32)> {
        let (uid, gid) = os::user_and_group();
        (self.engine.kind == EngineKind::Docker && self.config.run_as_wrapper_user && uid != 0)
            .then_some((uid, gid))
    }

    fn gpu_args(&self) -> Vec<String> {
        if !self.config.use_gpu {
            return Vec::new();
        }
        let podman = self.engine.kind == EngineKind::Podman;
        gpu::gpu_args(podman, &self.init.gpu_type, self.init.gpu_device_num).unwrap_or_else(|why| {
            log::warn!("{why}: running without a GPU");
            Vec::new()
        })
    }
}

fn host_cpus() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}
