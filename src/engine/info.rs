//! Facts about the engine's host set-up, asked only when a container is
//! created, and what they mean for the container's flags.
use super::{gpu, Engine, EngineError, EngineKind};
use crate::background::{self, CgroupDriver};
use crate::os;

impl Engine {
    /// How the engine manages cgroups (decides the form of `--cgroup-parent`).
    pub fn cgroup_driver(&self) -> Result<Option<CgroupDriver>, EngineError> {
        let format = match self.kind {
            EngineKind::Docker => "{{.CgroupDriver}}",
            EngineKind::Podman => "{{.Host.CgroupManager}}",
        };
        let out = self.run(["info", "--format", format])?;
        Ok(CgroupDriver::parse(&out.stdout))
    }

    /// A parent cgroup marked idle for the container, where this engine
    /// can use one.
    pub fn idle_cgroup_parent(&self) -> Option<String> {
        // Windows: the engine's cgroups are inside WSL's VM, not under this
        // host's /sys/fs/cgroup (README: not available there).
        if cfg!(windows) {
            log::debug!("no idle parent cgroup: the engine runs in WSL");
            return None;
        }
        // Rootless Podman has no cgroup hierarchy of its own to place us in.
        if self.kind == EngineKind::Podman && os::user_and_group().0 != 0 {
            return None;
        }
        match self.cgroup_driver() {
            Ok(Some(driver)) => background::idle_parent(driver),
            Ok(None) => None,
            Err(err) => {
                log::debug!("cgroup driver unknown ({err}): no idle parent cgroup");
                None
            }
        }
    }

    /// The user to run the job as, when job.toml wants the wrapper's own
    /// (`run_as_wrapper_user`). Docker runs containers as root by default,
    /// so files the job writes into the slot would belong to root; rootless
    /// Podman maps root to the wrapper's user already. Not when the wrapper
    /// is root itself: then the image's USER stands.
    pub fn job_user(&self, run_as_wrapper_user: bool) -> Option<(u32, u32)> {
        let (uid, gid) = os::user_and_group();
        (self.kind == EngineKind::Docker && run_as_wrapper_user && uid != 0).then_some((uid, gid))
    }

    /// The flags that give the container the GPU the client assigned.
    pub fn gpu_args(&self, gpu_type: &str, device_num: i32) -> Result<Vec<String>, gpu::GpuError> {
        gpu::gpu_args(self.kind == EngineKind::Podman, gpu_type, device_num)
    }
}
