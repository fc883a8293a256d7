//! A harness that runs the wrapper under the real BOINC client (Debian's
//! `boinc-client`, 7.20.5) with no project server.
//!
//! Each test gets a fresh client data dir under a temp dir (kept when
//! `DW_KEEP_TEST_DIRS` is set): a hand-written `client_state.xml` whose app
//! version has a copy of the built `docker_wrapper` as main program and the
//! Dockerfile, job.toml, main.sh and a static busybox as app-version files, a
//! workunit with input files and a command line, and a result ready to run
//! (see `data_dir`). `RealClient` starts `/usr/bin/boinc` on it with a free
//! loopback GUI RPC port and its own password, drives it with `boinccmd`
//! (every call with a timeout), reads the result's state, exit status and
//! stderr from `client_state.xml`, and on drop stops the client (`--quit`,
//! then SIGKILL) and removes the task's container. Nothing else on the
//! machine is touched: images the wrapper builds stay in its cache, shared by
//! all tests on an engine.
//!
//! ```ignore
//! let engine = Engine::require(EngineKind::Podman);
//! let job = Job::shell("echo hello; exit 3");
//! let client = RealClient::start("exit", &engine, &job).unwrap();
//! let result = client.wait_final(Duration::from_secs(120)).unwrap();
//! assert_eq!((result.state, result.exit_status), (RESULT_COMPUTE_ERROR, 3));
//! ```
//!
//! Client behaviour worth knowing (7.20, read in its sources and seen here):
//! * apps get the client's environment: the engine is chosen with
//!   `DOCKER_WRAPPER_ENGINE`, since a 7.20 client writes no docker fields;
//! * input and app-version files reach the slot as `<soft_link>` files;
//! * with "leave applications in memory" off (the default) a task that has
//!   reported a checkpoint is sent `<quit/>` instead of `<suspend/>` when it
//!   is suspended, and is started again on resume;
//! * `--quit` makes the client send `<quit/>` to its apps and wait for them;
//!   on the next start it restarts the task in the same slot.
#![allow(dead_code)]

pub mod client;
#[path = "../emulator/command.rs"]
pub mod command;
pub mod data_dir;
pub mod engine;
pub mod state;
#[path = "../emulator/tempdir.rs"]
pub mod tempdir;
#[path = "../emulator/procfs.rs"]
pub mod procfs;
#[path = "../emulator/user.rs"]
pub mod user;

pub use client::RealClient;
pub use command::wait_until;
pub use data_dir::Job;
pub use engine::{Engine, EngineKind};
pub use state::*;
pub use std::time::{Duration, Instant};
