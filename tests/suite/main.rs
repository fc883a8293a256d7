//! The wrapper's integration tests, one module per area, in one test
//! program: each test program is linked on its own (with the release
//! profile's LTO), so one program instead of two dozen saves minutes of
//! every build. The tests under the real BOINC clients are a program of
//! their own (tests/real_client.rs): an 8.2 client removes the containers
//! of every task not its own.
//!
//! Tests of all areas run at once here (`--test-threads 4`). Each holds a
//! claim (`dw_test_support::claim`) for as long as it runs: shared for most
//! (`on_both_engines!` takes it), the engine or the whole machine alone for
//! the few that may not overlap others, each saying why where it asks.
//!
//! `cargo test --release --test suite -- lifecycle::` runs one area.

mod accounting;
mod archive;
mod cli;
mod client_limits;
mod control_files;
mod dist;
mod emulator_selftest;
mod faults;
mod files;
mod hostile_slot;
mod images;
mod interrupted_build;
mod lifecycle;
mod lying_engine;
mod network;
mod priority;
mod run_job;
mod security;
mod soak;
mod sporadic;
mod standalone;
mod sweep;
mod unprivileged;
mod windows_exe;
mod wsl_transport;
