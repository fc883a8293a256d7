//! Sporadic apps (`--sporadic`, BOINC 8). As with the C++ wrapper, the API
//! copies the client's state into the slot file `ca` and the app's wish
//! from the slot file `ac` into its status messages; the job in the
//! container reads and writes them through the mounted slot.
//!
//! BOINC 7.20's library (Debian 12's libboinc-app-dev, what CI links) has no
//! sporadic support: tests/cli.rs checks the wrapper refuses `--sporadic`
//! there. These tests need a wrapper linked against BOINC 8's API, e.g. built
//! with `BOINC_SRC_DIR` pointing at a configured BOINC 8 tree:
//!
//! `DW_WRAPPER_BIN=/path/to/docker_wrapper cargo test --release --test sporadic -- --ignored`
#[macro_use]
mod emulator;

use emulator::*;

const WRAPPER: &str = env!("CARGO_BIN_EXE_docker_wrapper");
const TASK_TIMEOUT: Duration = Duration::from_secs(180);
/// BOINC's SPORADIC_AC_STATE / SPORADIC_CA_STATE values (lib/common_defs.h).
const AC_WANT_COMPUTE: i32 = 2;
const CA_COMPUTING: i32 = 3;

mod the_job_and_the_client_exchange_states {
    use super::emulator::EngineKind;
    #[test]
    #[ignore = "needs a wrapper linked against BOINC 8's API (see the file's comment)"]
    fn podman() {
        super::the_job_and_the_client_exchange_states(EngineKind::Podman);
    }
    #[test]
    #[ignore = "needs a wrapper linked against BOINC 8's API (see the file's comment)"]
    fn docker() {
        super::the_job_and_the_client_exchange_states(EngineKind::Docker);
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
    let mut task = TaskBuilder::on_engine("sporadic", WRAPPER, &engine)
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
