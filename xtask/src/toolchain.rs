//! The cross toolchains the release builds need, found or explained.
//!
//! * Linux (x86_64, aarch64): zig as the C/C++ compiler and linker, through
//!   cargo-zigbuild, for Rust's `*-linux-musl` targets. The result is fully
//!   static: musl, zig's libc++ and the BOINC API inside, nothing loaded at
//!   run time, so it runs on any Linux kernel volunteers have, whatever their
//!   glibc. (Debian's cross g++ would tie the binary to Debian 12's glibc
//!   2.36; musl-tools has no C++ library.)
//! * Windows: Debian's MinGW-w64 (`x86_64-w64-mingw32-g++`), which BOINC's
//!   own `lib/Makefile.mingw` is written for, and Rust's `x86_64-pc-windows-gnu`.
use crate::run::{available, output, run};
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::process::Command;

/// Versions known to work together; `.ci/setup` installs these.
pub const PIP_INSTALL_HINT: &str = "python3 -m pip install ziglang==0.15.2 cargo-zigbuild==0.24.1";

/// The zig compiler: `ZIG`, else `zig` in PATH, else the one the PyPI
/// package `ziglang` carries (which is what cargo-zigbuild finds too).
pub fn zig() -> Result<PathBuf> {
    if let Some(zig) = std::env::var_os("ZIG").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(zig));
    }
    if available("zig", "version") {
        return Ok(PathBuf::from("zig"));
    }
    let from_pip = Command::new("python3")
        .args([
            "-c",
            "import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), 'zig'))",
        ])
        .output();
    if let Ok(out) = from_pip {
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && path.is_file() {
            return Ok(path);
        }
    }
    bail!("zig not found (it compiles the Linux release files). Install it: {PIP_INSTALL_HINT}")
}

pub fn require_cargo_zigbuild() -> Result<()> {
    if !available("cargo-zigbuild", "--version") {
        bail!("cargo-zigbuild not found (it builds the Linux release files with zig). Install it: {PIP_INSTALL_HINT}");
    }
    Ok(())
}

pub fn require_mingw(prefix: &str) -> Result<()> {
    for tool in ["g++", "ar"] {
        let program = format!("{prefix}-{tool}");
        if !available(&program, "--version") {
            bail!(
                "{program} not found (it builds the Windows release file). \
                 Install MinGW-w64: apt-get install g++-mingw-w64-x86-64"
            );
        }
    }
    Ok(())
}

/// Adds Rust's standard library for `target` when rustup lacks it.
pub fn require_rust_target(target: &str) -> Result<()> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))
        .map_err(|err| anyhow::anyhow!("{err}: rustup is needed to add the target {target}"))?;
    if installed.lines().any(|line| line.trim() == target) {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", target]))
}
