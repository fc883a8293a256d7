//! Facts about the engine's host set-up, asked only when a container is created.
use super::{Engine, EngineError, EngineKind};
use crate::background::CgroupDriver;

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
}
