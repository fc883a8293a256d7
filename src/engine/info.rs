//! What the engine's host set-up means for a new container's flags.
use super::{gpu, Engine, EngineKind, Facts};
use crate::host::background;
use crate::os;

impl Engine {
    /// A parent cgroup marked idle for the container, where this engine
    /// can use one: its form depends on the engine's cgroup driver.
    pub fn idle_cgroup_parent(&self, facts: &Facts) -> Option<String> {
        if let Some(reason) = self.cgroup_driver_unused() {
            log::debug!("no idle parent cgroup: {reason}");
            return None;
        }
        match facts.cgroup_driver {
            Some(driver) => background::idle_parent(driver),
            None => {
                log::debug!("cgroup driver unknown: no idle parent cgroup");
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

    /// The flags that give the container the GPU the client assigned; an
    /// error when it cannot have it.
    pub fn gpu_args(&self, gpu_type: &str, device_num: i32) -> Result<Vec<String>, gpu::GpuError> {
        let args = gpu::gpu_args(self.kind == EngineKind::Podman, gpu_type, device_num)?;
        // Device paths are the engine's host's: ours, unless it is in WSL.
        if self.transport().is_local() {
            if let Some(missing) =
                gpu::missing_device(&args, |path| std::path::Path::new(path).exists())
            {
                return Err(missing);
            }
        }
        Ok(args)
    }
}
