//! Resource numbers in init_data.xml beyond what the host has: the task
//! runs with the host's own figures and stderr.txt says so.

use dw_test_support::*;

const WRAPPER: &str = wrapper_path!();

on_both_engines!(out_of_range_numbers_are_lowered_to_the_hosts);

fn out_of_range_numbers_are_lowered_to_the_hosts(kind: EngineKind) {
    let engine = TestEngine::require(kind);
    let mut task = TaskBuilder::on_engine("huge_bounds", WRAPPER, &engine)
        .memory_bound(1e30)
        .ncpus(1e6)
        .disk_bound(1e30)
        .job(TestJob::shell("echo the job ran"))
        .start()
        .unwrap();
    let outcome = task.wait_exit(TASK_TIMEOUT).unwrap();
    outcome.assert_finished(0);
    outcome.assert_said(&["the job ran"]);
    for said in [
        "rsc_memory_bound of 1e30 bytes is more than this host's memory",
        "the client asked for 1000000 CPUs",
        "rsc_disk_bound of 1e30 bytes is more than this host's disk",
    ] {
        outcome.assert_said_times(said, 1);
    }
    engine.assert_no_container(&task);
}
