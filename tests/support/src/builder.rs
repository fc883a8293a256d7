//! Describing a task: dirs, app and input files, init_data.xml, how to start the wrapper.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::engine::TestEngine;
use crate::init_data::{ClientVersion, DockerHostInfo, InitData};
use crate::jobs::TestJob;
use crate::shm::{SharedMemory, MMAP_FILE_NAME};
use crate::slot::{BoincDirs, LinkKind, DEFAULT_DATA_DIR_NAME, DEFAULT_PROJECT_DIR_NAME};
use crate::task::{Launch, Task};
use crate::tempdir::file_name_safe;
use crate::user::HostUser;

/// Overrides the wrapper binary given by the test (to run the same tests against another build).
pub const WRAPPER_BIN_VAR: &str = "DW_WRAPPER_BIN";

/// The wrapper named by `DW_WRAPPER_BIN`, if set.
pub fn wrapper_from_env() -> Option<PathBuf> {
    std::env::var_os(WRAPPER_BIN_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

static NEXT_TASK_ID: AtomicU32 = AtomicU32::new(0);

#[derive(Clone, Debug)]
enum DockerFields {
    /// From the engine given to the builder, if any (an 8.x client that found it).
    FromEngine,
    Custom(Option<DockerHostInfo>),
}

struct ProjectFile {
    open_name: String,
    physical_name: String,
    /// None: an output file, linked before it exists.
    contents: Option<Vec<u8>>,
    kind: LinkKind,
}

type InitDataEdit = Box<dyn FnOnce(&mut InitData)>;

/// Describes a task; `prepare()` lays out the dirs, `start()` also starts the wrapper.
pub struct TaskBuilder {
    test_name: String,
    program: PathBuf,
    /// Runs the program through this one (e.g. qemu-user for another CPU).
    runner: Option<PathBuf>,
    data_dir_name: String,
    /// An existing data dir to add a slot to, instead of a fresh one.
    shared_data_dir: Option<PathBuf>,
    project_dir_name: String,
    slot: u32,
    wu_name: Option<String>,
    result_name: Option<String>,
    client_version: ClientVersion,
    docker_fields: DockerFields,
    init_edits: Vec<InitDataEdit>,
    raw_init_data: Option<String>,
    job: Option<TestJob>,
    app_dir: Option<PathBuf>,
    app_files: LinkKind,
    project_files: Vec<ProjectFile>,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    engine: Option<TestEngine>,
    /// Who owns the data dir when not the engine's user.
    data_owner: Option<HostUser>,
    heartbeats: bool,
    client_priority: bool,
}

impl TaskBuilder {
    /// A task of test `test_name` on `engine`, named after both.
    pub fn on_engine(
        test_name: &str,
        wrapper_bin: impl AsRef<Path>,
        engine: &TestEngine,
    ) -> TaskBuilder {
        TaskBuilder::new(
            &format!("{test_name}_{}", engine.kind().name()),
            wrapper_bin,
        )
        .engine(engine)
    }

    /// `wrapper_bin` is normally `env!("CARGO_BIN_EXE_docker_wrapper")`;
    /// `DW_WRAPPER_BIN` replaces it when set.
    pub fn new(test_name: &str, wrapper_bin: impl AsRef<Path>) -> TaskBuilder {
        let program = wrapper_from_env().unwrap_or_else(|| wrapper_bin.as_ref().to_path_buf());
        TaskBuilder {
            test_name: test_name.to_string(),
            program,
            runner: None,
            data_dir_name: DEFAULT_DATA_DIR_NAME.to_string(),
            shared_data_dir: None,
            project_dir_name: DEFAULT_PROJECT_DIR_NAME.to_string(),
            slot: 0,
            wu_name: None,
            result_name: None,
            client_version: ClientVersion::V8_2_4,
            docker_fields: DockerFields::FromEngine,
            init_edits: Vec::new(),
            raw_init_data: None,
            job: None,
            app_dir: None,
            app_files: LinkKind::Copy,
            project_files: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            engine: None,
            data_owner: None,
            heartbeats: true,
            client_priority: false,
        }
    }

    /// Runs exactly this program, ignoring `DW_WRAPPER_BIN` (for tests of the emulator itself).
    pub fn program_exact(mut self, program: impl AsRef<Path>) -> Self {
        self.program = program.as_ref().to_path_buf();
        self
    }

    /// Starts the program as `runner program args...`: qemu-user runs a
    /// wrapper built for another CPU in the same process, so the client's
    /// pid and signals still reach the wrapper.
    pub fn runner(mut self, runner: impl AsRef<Path>) -> Self {
        self.runner = Some(runner.as_ref().to_path_buf());
        self
    }

    /// Name of the data dir inside the temp dir; see `slot::ODD_DATA_DIR_NAME`.
    pub fn data_dir_name(mut self, name: &str) -> Self {
        self.data_dir_name = name.to_string();
        self
    }

    /// Puts the task into this existing data dir (created if missing) instead
    /// of a fresh one, in the first unused slot from `slot(n)` up: tasks built
    /// with the same dir and project share the project dir, as tasks of one
    /// client do. The caller owns the dir (e.g. a `TempDir`'s path) and removes
    /// it; `data_dir_name` is ignored.
    pub fn shared_data_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.shared_data_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// The escaped project URL, e.g. `example.org_test`.
    pub fn project_dir_name(mut self, name: &str) -> Self {
        self.project_dir_name = name.to_string();
        self
    }

    pub fn slot(mut self, slot: u32) -> Self {
        self.slot = slot;
        self
    }

    pub fn wu_name(mut self, name: &str) -> Self {
        self.wu_name = Some(name.to_string());
        self
    }

    pub fn result_name(mut self, name: &str) -> Self {
        self.result_name = Some(name.to_string());
        self
    }

    /// Writes init_data.xml as Debian's 7.20 client does: no docker fields.
    pub fn client_7_20(mut self) -> Self {
        self.client_version = ClientVersion::V7_20_5;
        self.docker_fields = DockerFields::Custom(None);
        self
    }

    /// Docker fields to write regardless of the engine (None: write none).
    pub fn docker_host_info(mut self, info: Option<DockerHostInfo>) -> Self {
        self.docker_fields = DockerFields::Custom(info);
        self
    }

    pub fn ncpus(self, ncpus: f64) -> Self {
        self.edit_init_data(move |d| d.ncpus = ncpus)
    }

    pub fn memory_bound(self, bytes: f64) -> Self {
        self.edit_init_data(move |d| d.rsc_memory_bound = bytes)
    }

    pub fn disk_bound(self, bytes: f64) -> Self {
        self.edit_init_data(move |d| d.rsc_disk_bound = bytes)
    }

    pub fn gpu(self, gpu_type: &str, device_num: i32) -> Self {
        let gpu_type = gpu_type.to_string();
        self.edit_init_data(move |d| {
            d.gpu_type = gpu_type;
            d.gpu_device_num = device_num;
            d.gpu_opencl_dev_index = device_num;
            d.gpu_usage = 1.0;
        })
    }

    /// The pid the app watches; 0 makes it rely on heartbeats instead (the BOINC
    /// API declares "no heartbeat" only when client_pid is 0; otherwise it checks
    /// every 10 s that this pid exists).
    pub fn client_pid(self, pid: u32) -> Self {
        self.edit_init_data(move |d| d.client_pid = pid)
    }

    pub fn wu_cpu_time(self, seconds: f64) -> Self {
        self.edit_init_data(move |d| d.wu_cpu_time = seconds)
    }

    /// Any other change to the generated init_data.xml.
    pub fn edit_init_data(mut self, edit: impl FnOnce(&mut InitData) + 'static) -> Self {
        self.init_edits.push(Box::new(edit));
        self
    }

    /// Writes this text as init_data.xml instead of the generated one (malformed-input tests).
    pub fn raw_init_data(mut self, text: &str) -> Self {
        self.raw_init_data = Some(text.to_string());
        self
    }

    /// The app files: written into `<temp>/job`, then installed into the slot.
    pub fn job(mut self, job: TestJob) -> Self {
        self.job = Some(job);
        self
    }

    /// App files from an existing directory (e.g. `examples/<job>`).
    pub fn app_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.app_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// How app files reach the slot: copies (default), soft-link files or symlinks
    /// to the project dir.
    pub fn app_files_as(mut self, kind: LinkKind) -> Self {
        self.app_files = kind;
        self
    }

    /// An input file in the project dir, linked into the slot as a soft-link file.
    pub fn input_file(self, open_name: &str, contents: impl Into<Vec<u8>>) -> Self {
        let physical = format!("in_{}", open_name.replace('/', "_"));
        self.project_file(open_name, &physical, contents, LinkKind::SoftLinkFile)
    }

    pub fn project_file(
        mut self,
        open_name: &str,
        physical_name: &str,
        contents: impl Into<Vec<u8>>,
        kind: LinkKind,
    ) -> Self {
        self.project_files.push(ProjectFile {
            open_name: open_name.to_string(),
            physical_name: physical_name.to_string(),
            contents: Some(contents.into()),
            kind,
        });
        self
    }

    /// An output file: a soft-link file in the slot to a project file the app is to write.
    pub fn output_file(mut self, open_name: &str, physical_name: &str) -> Self {
        self.project_files.push(ProjectFile {
            open_name: open_name.to_string(),
            physical_name: physical_name.to_string(),
            contents: None,
            kind: LinkKind::SoftLinkFile,
        });
        self
    }

    /// Command-line arguments of the wrapper (all but its own options reach the job as ARGS).
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Gives the data dir to `user` while the wrapper runs as the engine's
    /// user: a helper that runs the engine as `user` then meets its own files.
    pub fn data_owner(mut self, user: &HostUser) -> Self {
        self.data_owner = Some(user.clone());
        self
    }

    pub fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.push((
            name.as_ref().to_os_string(),
            Some(value.as_ref().to_os_string()),
        ));
        self
    }

    pub fn env_remove(mut self, name: impl AsRef<OsStr>) -> Self {
        self.env.push((name.as_ref().to_os_string(), None));
        self
    }

    /// The engine the task is expected to use: its environment is passed to the
    /// wrapper, its docker fields go into init_data.xml (unless told otherwise),
    /// and the task's container is removed from it when the task is dropped.
    pub fn engine(mut self, engine: &TestEngine) -> Self {
        self.engine = Some(engine.clone());
        self
    }

    /// Heartbeats on (default) or off from the start. Without heartbeats the app
    /// gives up after 30 s only if `client_pid(0)` is set too.
    pub fn heartbeats(mut self, on: bool) -> Self {
        self.heartbeats = on;
        self
    }

    /// Run the wrapper at nice 19 with SCHED_IDLE, as the real client does.
    pub fn client_priority(mut self, on: bool) -> Self {
        self.client_priority = on;
        self
    }

    /// Lays out the data dir, project dir and slot, without starting anything.
    pub fn prepare(mut self) -> Result<Task, String> {
        let dirs = match &self.shared_data_dir {
            Some(data_dir) => std::fs::create_dir_all(data_dir).and_then(|()| {
                BoincDirs::in_shared_data_dir(
                    &self.test_name,
                    data_dir,
                    &self.project_dir_name,
                    self.slot,
                )
            }),
            None => BoincDirs::create(
                &self.test_name,
                &self.data_dir_name,
                &self.project_dir_name,
                self.slot,
            ),
        }
        .map_err(|e| format!("cannot create the BOINC dirs: {e}"))?;
        self.install_app_files(&dirs)?;
        self.install_project_files(&dirs)?;
        let mut init_data = self.init_data(&dirs);
        for edit in std::mem::take(&mut self.init_edits) {
            edit(&mut init_data);
        }
        let shm = SharedMemory::create(&dirs.slot_file(MMAP_FILE_NAME))
            .map_err(|e| format!("cannot create {MMAP_FILE_NAME}: {e}"))?;
        let owner = self
            .data_owner
            .as_ref()
            .or_else(|| self.engine.as_ref().and_then(TestEngine::user));
        if let Some(user) = owner {
            user.own_tree(dirs.root()).map_err(|e| {
                format!(
                    "cannot give {} to {}: {e}",
                    dirs.root().display(),
                    user.name
                )
            })?;
        }
        let launch = Launch {
            program: self.program,
            runner: self.runner,
            args: self.args,
            env: self.env,
            client_priority: self.client_priority,
        };
        Ok(Task::new(
            dirs,
            init_data,
            self.raw_init_data,
            shm,
            self.heartbeats,
            launch,
            self.engine,
        ))
    }

    /// `prepare()` then `Task::start()`.
    pub fn start(self) -> Result<Task, String> {
        let mut task = self.prepare()?;
        task.start()?;
        Ok(task)
    }

    fn install_app_files(&self, dirs: &BoincDirs) -> Result<(), String> {
        let mut sources = Vec::new();
        if let Some(job) = &self.job {
            let job_dir = dirs.root().join("job");
            job.write_to(&job_dir)?;
            sources.push(job_dir);
        }
        sources.extend(self.app_dir.clone());
        for source in sources {
            let installed = match self.app_files {
                LinkKind::Copy => dirs.copy_into_slot(&source),
                kind => dirs.install_via_project_dir(&source, kind),
            };
            installed
                .map_err(|e| format!("cannot install app files from {}: {e}", source.display()))?;
        }
        Ok(())
    }

    fn install_project_files(&self, dirs: &BoincDirs) -> Result<(), String> {
        for f in &self.project_files {
            let context =
                |e: std::io::Error| format!("cannot set up project file {}: {e}", f.physical_name);
            if let Some(contents) = &f.contents {
                dirs.write_project_file(&f.physical_name, contents)
                    .map_err(context)?;
            }
            dirs.link_into_slot(&f.open_name, &f.physical_name, f.kind)
                .map_err(context)?;
        }
        Ok(())
    }

    fn init_data(&self, dirs: &BoincDirs) -> InitData {
        let n = NEXT_TASK_ID.fetch_add(1, Ordering::Relaxed);
        let default_wu = format!(
            "wu_{}_{}_{}",
            file_name_safe(&self.test_name),
            std::process::id(),
            n
        );
        let wu_name = self.wu_name.clone().unwrap_or(default_wu);
        let result_name = self
            .result_name
            .clone()
            .unwrap_or_else(|| format!("{wu_name}_0"));
        let mut data = InitData::new(
            dirs.data_dir(),
            dirs.project_dir(),
            &wu_name,
            &result_name,
            dirs.slot(),
        );
        data.client_version = self.client_version;
        data.docker = match &self.docker_fields {
            DockerFields::FromEngine => self.engine.as_ref().map(TestEngine::docker_host_info),
            DockerFields::Custom(info) => info.clone(),
        };
        data
    }
}
