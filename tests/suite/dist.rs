//! The self-contained release files from `cargo xtask dist`, run as a
//! volunteer's host would run them, under the client emulator: the x86_64
//! Linux file on Podman and on Docker, the aarch64 Linux file under
//! qemu-user (the engine stays native) on Podman. Each runs the key
//! scenarios: output, exit code, suspend/resume, quit and restart, abort.
//!
//! The files are looked up in `dist/` (or `DW_DIST_DIR`); a missing file
//! fails the test with the command that builds it. The Windows file is
//! tested under Wine in tests/suite/windows_exe.rs.
#![cfg(target_os = "linux")]

use dw_test_support::scenarios::{self, Wrapper};
use dw_test_support::{Claim, EngineKind};
use std::path::PathBuf;

const QEMU_AARCH64: &str = "qemu-aarch64-static";

/// The release file whose name ends in `suffix`.
fn release_file(suffix: &str) -> PathBuf {
    dw_test_support::release::release_file(suffix, env!("CARGO_PKG_VERSION"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn x86_64() -> Wrapper {
    Wrapper::exact("dist_x86_64", &release_file("_x86_64-pc-linux-gnu"), None)
}

fn aarch64() -> Wrapper {
    let qemu = which_qemu();
    Wrapper::exact(
        "dist_aarch64",
        &release_file("_aarch64-unknown-linux-gnu"),
        Some(&qemu),
    )
}

fn which_qemu() -> PathBuf {
    dw_test_support::engine::find_in_path(QEMU_AARCH64)
        .unwrap_or_else(|| panic!("{QEMU_AARCH64} not found: apt-get install qemu-user-static"))
}

/// `<scenario>::{x86_64_podman, x86_64_docker, aarch64_podman}`.
macro_rules! on_each_release_file {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[test]
            fn x86_64_podman() {
                let _claim = Claim::shared(EngineKind::Podman);
                scenarios::$name(&x86_64(), EngineKind::Podman);
            }
            #[test]
            fn x86_64_docker() {
                let _claim = Claim::shared(EngineKind::Docker);
                scenarios::$name(&x86_64(), EngineKind::Docker);
            }
            #[test]
            fn aarch64_podman() {
                let _claim = Claim::shared(EngineKind::Podman);
                scenarios::$name(&aarch64(), EngineKind::Podman);
            }
        }
    )*};
}

on_each_release_file!(
    output_reaches_the_slot,
    exit_code_is_forwarded,
    suspend_pauses_and_resume_unpauses,
    an_undisturbed_task_sleeps,
    quit_and_restart_continue_the_same_container,
    abort_removes_the_container_promptly,
);

/// The macOS files cannot run here: each is checked to be a 64-bit Mach-O
/// executable for its CPU (`cargo xtask dist` checks their load commands).
#[test]
fn macos_files_are_mach_o_executables_for_their_cpu() {
    let _claim = Claim::no_engine();
    const MH_MAGIC_64: u32 = 0xfeed_facf;
    const MH_EXECUTE: u32 = 2;
    for (suffix, cpu) in [
        ("_x86_64-apple-darwin", 0x0100_0007u32),
        ("_arm64-apple-darwin", 0x0100_000c),
    ] {
        let file = release_file(suffix);
        let bytes = std::fs::read(&file).unwrap();
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        assert!(bytes.len() > 4096, "{}", file.display());
        assert_eq!(
            (word(0), word(4), word(12)),
            (MH_MAGIC_64, cpu, MH_EXECUTE),
            "{}",
            file.display()
        );
    }
}
