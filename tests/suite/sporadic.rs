//! Sporadic apps (`--sporadic`, BOINC 8). As with the C++ wrapper, the API
//! copies the client's state into the slot file `ca` and the app's wish
//! from the slot file `ac` into its status messages; the job in the
//! container reads and writes them through the mounted slot.
//!
//! BOINC 7.20's library (Debian 12's libboinc-app-dev, what `cargo build`
//! links) has no sporadic support: tests/suite/cli.rs checks that the default
//! wrapper refuses `--sporadic`. These tests run the wrapper that volunteers
//! get, linked against BOINC 8.2.15's API: `DW_WRAPPER_BIN` when set, else
//! the self-contained x86_64 binary `cargo xtask dist` puts into `dist/`
//! (`DW_DIST_DIR` overrides the directory), the file whose name ends in
//! `_x86_64-pc-linux-gnu`. Without either they fail and say so.
//!
//! `cargo xtask dist && cargo test --release --test suite -- sporadic::`

use std::path::PathBuf;

use dw_test_support::builder::{wrapper_from_env, WRAPPER_BIN_VAR};
use dw_test_support::*;

/// BOINC's SPORADIC_AC_STATE / SPORADIC_CA_STATE values (lib/common_defs.h).
const AC_WANT_COMPUTE: i32 = 2;
const CA_COMPUTING: i32 = 3;

on_both_engines!(the_job_and_the_client_exchange_states);

/// The wrapper linked against BOINC 8's API: `DW_WRAPPER_BIN`, else the
/// x86_64 Linux release file. Panics, saying how to get one, when there is none.
fn boinc8_wrapper() -> PathBuf {
    if let Some(bin) = wrapper_from_env() {
        return bin;
    }
    dw_test_support::release::release_file("_x86_64-pc-linux-gnu", env!("CARGO_PKG_VERSION"))
        .unwrap_or_else(|e| {
            panic!(
                "sporadic apps need a wrapper linked against BOINC 8's API and there is none \
             ({WRAPPER_BIN_VAR} is not set): {e}"
            )
        })
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
    let wish = task.wait_for_status(Duration::from_secs(90), |s| {
        s.sporadic_ac == Some(AC_WANT_COMPUTE)
    });
    assert!(
        wish.is_ok(),
        "the job's wish never reached the client: {wish:?}\n{}",
        task.logs_tail(30)
    );
    task.set_sporadic_ca(CA_COMPUTING);
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    assert_eq!(
        task.read_slot_file("seen.txt").as_deref(),
        Some("computing\n")
    );
    engine.assert_no_container(&task);
}
