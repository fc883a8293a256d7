//! A harness that runs the wrapper under the real BOINC client (Debian's
//! `boinc-client`, 7.20.5, or 8.2.15 built from BOINC's tree; see `variant`)
//! with no project server.
//!
//! Each test gets a fresh client data dir under a temp dir (kept when
//! `DW_KEEP_TEST_DIRS` is set): a hand-written `client_state.xml` whose app
//! version has a copy of the built `docker_wrapper` as main program and the
//! Dockerfile, job.toml, main.sh and a static busybox as app-version files, a
//! workunit with input files and a command line, and a result ready to run
//! (see `data_dir`). `RealClient` starts the client on it with a free
//! loopback GUI RPC port and its own password, drives it with `boinccmd`
//! (every call with a timeout), reads the result's state, exit status and
//! stderr from `client_state.xml`, and on drop stops the client (`--quit`,
//! then SIGKILL) and removes the task's container. Nothing else on the
//! machine is touched: images the wrapper builds stay in its cache, shared by
//! all tests on an engine.
//!
//! ```ignore
//! let variant = Variant::new(ClientVersion::V8_2, engine::as_root(EngineKind::Podman));
//! let workunit = Workunit::shell("echo hello; exit 3");
//! let client = RealClient::start("exit", &variant, &workunit).unwrap();
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
//!
//! What the 8.2 client does besides (read in its sources and seen here):
//! * at startup it runs `podman --version` and `podman run --rm hello-world`,
//!   and only if Podman fails, the same with `docker`, each found in PATH;
//!   an engine counts only if hello-world prints "Hello". The harness builds
//!   a local hello-world image (no registry here) and, for Docker, gives the
//!   client a PATH without podman (`ClientEngine::client_path`). The engine found
//!   goes into every init_data.xml (`host_info/docker_type`), from which the
//!   wrapper takes it (no `DOCKER_WRAPPER_ENGINE` for 8.2 clients);
//! * apps whose plan class contains `docker` run only when it found an
//!   engine, and at startup it removes every `boinc__` container that is no
//!   active task's, unless `allow_multiple_clients` is set. The 8.2 clients
//!   run without it, as volunteers' do, and hold their engine's containers
//!   to themselves meanwhile (`engine_lock`).

pub mod client;
pub mod data_dir;
pub mod engine;
pub mod engine_lock;
pub mod state;
pub mod variant;

pub use client::RealClient;
pub use data_dir::Workunit;
pub use dw_test_support::{wait_until, EngineKind, TestEngine};
pub use engine::ClientEngine;
pub use state::*;
pub use std::time::{Duration, Instant};
pub use variant::{ClientVersion, Variant};
