//! Sporadic apps (`--sporadic`, BOINC 8). As with the C++ wrapper, the API
//! copies the client's state into the slot file `ca` and the app's wish
//! from the slot file `ac` into its status messages; the job in the
//! container reads and writes them through the mounted slot.
//!
//! BOINC 7.20's library (Debian 12's libboinc-app-dev, what `cargo build`
//! links) has no sporadic support: tests/cli.rs checks that the default
//! wrapper refuses `--sporadic`. These tests run the wrapper that volunteers
//! get, linked against BOINC 8.2.15's API: `DW_WRAPPER_BIN` when set, else
//! the self-contained x86_64 binary `cargo xtask dist` puts into `dist/`
//! (`DW_DIST_DIR` overrides the directory), the file whose name ends in
//! `_x86_64-pc-linux-gnu`. Without either they fail and say so.
//!
//! `cargo xtask dist && cargo test --release --test sporadic`
#[macro_use]
mod emulator;

use std::path::PathBuf;

use emulator::*;

/// Replaces the wrapper under test (the emulator's TaskBuilder reads it too).
const WRAPPER_BIN_VAR: &str = "DW_WRAPPER_BIN";

const TASK_TIMEOUT: Duration = Duration::from_secs(180);
/// BOINC's SPORADIC_AC_STATE / SPORADIC_CA_STATE values (lib/common_defs.h).
const AC_WANT_COMPUTE: i32 = 2;
const CA_COMPUTING: i32 = 3;
/// Where `cargo xtask dist` writes the binaries it ships.
const DIST_DIR_VAR: &str = "DW_DIST_DIR";
/// The file name suffix of the x86_64 Linux binary in the dist directory.
const DIST_LINUX_SUFFIX: &str = "_x86_64-pc-linux-gnu";

mod the_job_and_the_client_exchange_states {
    use super::emulator::EngineKind;
    #[test]
    fn podman() {
        super::the_job_and_the_client_exchange_states(EngineKind::Podman);
    }
    #[test]
    fn docker() {
        super::the_job_and_the_client_exchange_states(EngineKind::Docker);
    }
}

/// The wrapper linked against BOINC 8's API: `DW_WRAPPER_BIN`, else the
/// x86_64 Linux binary in the dist directory (this version's, or the only
/// one there). Panics, saying how to get one, when there is none.
fn boinc8_wrapper() -> PathBuf {
    if let Some(bin) = std::env::var_os(WRAPPER_BIN_VAR).filter(|v| !v.is_empty()) {
        return PathBuf::from(bin);
    }
    let dir = std::env::var_os(DIST_DIR_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dist"));
    let this_version = dir.join(format!("docker_wrapper_{}{DIST_LINUX_SUFFIX}", env!("CARGO_PKG_VERSION")));
    if this_version.is_file() {
        return this_version;
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.to_string_lossy().ends_with(DIST_LINUX_SUFFIX))
                .collect()
        })
        .unwrap_or_default();
    match found.len() {
        1 => found.remove(0),
        0 => panic!(
            "sporadic apps need a wrapper linked against BOINC 8's API and there is none: \
             no *{DIST_LINUX_SUFFIX} binary in {} ({DIST_DIR_VAR} overrides the directory) and \
             {WRAPPER_BIN_VAR} is not set. Build it with `cargo xtask dist`.",
            dir.display()
        ),
        _ => panic!(
            "{} holds several *{DIST_LINUX_SUFFIX} binaries and none of version {}: {:?}. \
             Run `cargo xtask dist` again or set {WRAPPER_BIN_VAR}.",
            dir.display(),
            env!("CARGO_PKG_VERSION"),
            found
        ),
    }
}

/// The job says it wants to compute (`ac`), waits until the client says
/// computing (`ca`, which the API writes as a number and a newline padded
/// with NULs: read the first line), then finishes.
fn the_job_and_the_client_exchange_states(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let script = format!(
        "echo {AC_WANT_COMPUTE} > ac; \
         state=; while [ \"$state\" != {CA_COMPUTING} ]; do sleep 0.2; read -r state < ca; done; echo computing > seen.txt"
    );
    let mut task = TaskBuilder::on_engine("sporadic", boinc8_wrapper(), &engine)
        .arg("--sporadic")
        .job(TestJob::shell(&script))
        .start()
        .unwrap();
    let wish = task.wait_for_status(Duration::from_secs(90), |s| s.sporadic_ac == Some(AC_WANT_COMPUTE));
    assert!(wish.is_ok(), "the job's wish never reached the client: {wish:?}\n{}", task.logs_tail(30));
    task.set_sporadic_ca(CA_COMPUTING);
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    assert_eq!(outcome.finish_code(), Some(0), "{}", outcome.describe());
    assert_eq!(task.read_slot_file("seen.txt").as_deref(), Some("computing\n"));
    engine.assert_no_container(&task);
}
