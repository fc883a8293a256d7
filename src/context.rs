//! What a task is, fixed once its inputs are read: names, paths, the job's
//! configuration and the client's data. Nothing here changes while it runs.
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::boinc::init_data::InitData;
use crate::cli::Cli;
use crate::config::JobConfig;
use crate::engine;
use crate::slot::journal::{Journal, Phase};

/// Where the wrapper runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// A slot directory of the BOINC client, with init_data.xml.
    Client,
    /// A plain directory (no client): for trying a job out by hand.
    Standalone,
}

pub struct TaskContext {
    pub slot_dir: PathBuf,
    pub slot: SlotKind,
    pub config: JobConfig,
    pub cli: Cli,
    pub init: InitData,
    pub container: String,
    /// Image archive to load instead of building, if the app version has one.
    pub archive: Option<PathBuf>,
}

impl TaskContext {
    pub fn is_standalone(&self) -> bool {
        self.slot == SlotKind::Standalone
    }

    /// This slot, as recorded on the container.
    pub fn slot_label(&self) -> String {
        self.slot_dir.to_string_lossy().into_owned()
    }

    /// The project's name as images and labels use it.
    pub fn project_name(&self) -> &str {
        match self.slot {
            SlotKind::Standalone => "standalone",
            SlotKind::Client => self.init.project_dir_name(),
        }
    }

    /// The project directory, which must exist (for `project_dir_mount`).
    pub fn project_dir(&self) -> Result<PathBuf> {
        let dir = match self.slot {
            SlotKind::Standalone => self.slot_dir.join("project"),
            SlotKind::Client => PathBuf::from(&self.init.project_dir),
        };
        anyhow::ensure!(
            dir.is_dir(),
            "project directory {} does not exist",
            dir.display()
        );
        Ok(dir)
    }

    /// Journals what this run did with the container, for the next run.
    pub fn save_journal(
        &self,
        image: Option<&str>,
        phase: Phase,
        cpu_time: f64,
        exit_code: Option<i32>,
    ) {
        let journal = Journal {
            container: self.container.clone(),
            image: image.map(str::to_string),
            phase,
            cpu_time,
            exit_code,
        };
        journal.save(&self.slot_dir);
    }

    /// Where the image cache keeps its records: the project dir, shared by
    /// all of the project's tasks on this host, else the slot.
    pub fn image_state_dir(&self) -> PathBuf {
        match &self.init.project_dir {
            dir if self.slot == SlotKind::Client && Path::new(dir).is_dir() => PathBuf::from(dir),
            _ => self.slot_dir.clone(),
        }
    }

    /// Where the engine's facts are remembered for the host's other tasks:
    /// the wrapper's dir in the BOINC data dir, else the project dir; None
    /// standalone (a directory of the user's, and no other tasks).
    pub fn engine_facts_dir(&self) -> Option<PathBuf> {
        if self.is_standalone() {
            return None;
        }
        let project_dir = Path::new(&self.init.project_dir);
        crate::image::sweep::host_dir(&self.init)
            .or_else(|| project_dir.is_dir().then(|| project_dir.to_path_buf()))
    }

    /// The file the job writes its progress to.
    pub fn fraction_done_file(&self) -> PathBuf {
        self.slot_dir.join(&self.config.fraction_done_file)
    }

    /// Labels that say whose the container is.
    pub fn labels(&self) -> Vec<(String, String)> {
        vec![
            (
                engine::WRAPPER_LABEL.into(),
                env!("CARGO_PKG_VERSION").into(),
            ),
            ("boinc.project".into(), self.init.project_dir_name().into()),
            ("boinc.wu".into(), self.init.wu_name.clone()),
            (engine::RESULT_LABEL.into(), self.init.result_name.clone()),
            (engine::SLOT_LABEL.into(), self.slot_label()),
        ]
    }
}

/// C++-compatible container name; standalone mode uses "boinc", as C++ does.
pub fn container_name(init: &InitData, slot: SlotKind) -> String {
    match slot {
        SlotKind::Standalone => "boinc".into(),
        SlotKind::Client => engine::task_container(init.project_dir_name(), &init.result_name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_follow_the_cpp_wrapper() {
        let init = InitData {
            project_dir: "/var/lib/boinc/projects/example.org_test".into(),
            wu_name: "WU_1".into(),
            result_name: "WU_1_0".into(),
            ..InitData::default()
        };
        assert_eq!(
            container_name(&init, SlotKind::Client),
            "boinc__example.org_test__wu_1_0"
        );
        assert_eq!(container_name(&init, SlotKind::Standalone), "boinc");
    }
}
