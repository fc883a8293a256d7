//! A BOINC client emulator for integration tests: it prepares a data dir with a
//! project dir and a slot (app files, soft-link input files, `init_data.xml`,
//! `boinc_mmap_file`), starts the wrapper in the slot as the client would, and
//! plays the client's side of the shared-memory protocol (heartbeats,
//! suspend/resume/quit/abort, status and graphics messages).
//!
//! ```ignore
//! use dw_test_support::*;
//!
//! let engine = TestEngine::require(EngineKind::Podman);
//! let mut task = Task::builder("exit_code", wrapper_path!())
//!     .engine(&engine)
//!     .job(TestJob::shell("echo hello; exit 3"))
//!     .start()
//!     .unwrap();
//! let outcome = task.wait_exit(Duration::from_secs(120)).unwrap();
//! assert_eq!(outcome.finish_code(), Some(3), "{}", outcome.describe());
//! ```
//!
//! Facts of the BOINC API worth knowing when writing tests (checked with the
//! 7.20 library): a wrapper must use `handle_process_control` to receive
//! control messages; "no heartbeat" is detected only when `client_pid` is 0
//! (`TaskBuilder::client_pid(0)`), after 30 s; otherwise the API checks every
//! 10 s that the client pid exists.
//!
//! Used by the wrapper's tests, its benchmark and its example `emulate`,
//! and by the real-client harness (tests/real_client/).

/// The wrapper binary cargo built for the test or benchmark being compiled
/// (`CARGO_BIN_EXE_docker_wrapper` of the calling program; examples have none).
#[macro_export]
macro_rules! wrapper_path {
    () => {
        env!("CARGO_BIN_EXE_docker_wrapper")
    };
}

/// Generates `<name>::podman` and `<name>::docker` tests from one function
/// `fn name(kind: EngineKind)`. Each holds the claim its test needs (see
/// `claim`): shared by default; `engine_alone: a, b` or `machine_alone: c`
/// for tests that may not overlap others.
#[macro_export]
macro_rules! on_both_engines {
    (engine_alone: $($name:ident),* $(,)?) => {
        $crate::on_both_engines!(@each EngineAlone; $($name),*);
    };
    (machine_alone: $($name:ident),* $(,)?) => {
        $crate::on_both_engines!(@each MachineAlone; $($name),*);
    };
    (@each $need:ident; $($name:ident),*) => {$(
        mod $name {
            #[test]
            fn podman() {
                let _claim = $crate::claim::Claim::take(
                    $crate::claim::Need::$need,
                    $crate::EngineKind::Podman,
                );
                super::$name($crate::EngineKind::Podman);
            }
            #[test]
            fn docker() {
                let _claim = $crate::claim::Claim::take(
                    $crate::claim::Need::$need,
                    $crate::EngineKind::Docker,
                );
                super::$name($crate::EngineKind::Docker);
            }
        }
    )*};
    ($($name:ident),* $(,)?) => {
        $crate::on_both_engines!(@each Shared; $($name),*);
    };
}

pub mod builder;
pub mod claim;
pub mod client;
pub mod command;
pub mod engine;
pub mod init_data;
pub mod jobs;
pub mod procfs;
pub mod release;
pub mod scenarios;
pub mod shm;
pub mod slot;
pub mod task;
pub mod tempdir;
pub mod user;

/// Bounds a whole task, image build included.
pub const TASK_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a running job may take to count on.
pub const COUNT_WAIT: Duration = Duration::from_secs(60);

pub use builder::TaskBuilder;
pub use claim::Claim;
pub use client::AppStatus;
pub use command::{run_with_timeout, wait_until, CommandOutput};
pub use engine::{EngineKind, TestEngine};
pub use init_data::{ClientVersion, DockerHostInfo, DockerType, InitData, GIB, MIB};
pub use jobs::{TestJob, COUNTER_JOB};
pub use shm::{Channel, SharedMemory};
pub use slot::{BoincDirs, LinkKind, ODD_DATA_DIR_NAME};
pub use std::time::Duration;
pub use task::{container_name, Control, Outcome, Task};
pub use tempdir::TempDir;
pub use user::{HostUser, BOINC_USER};
