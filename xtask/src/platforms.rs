//! The platforms a project ships the wrapper for, and how each is built.
//!
//! File names follow BOINC's app-version convention,
//! `<name>_<version>_<platform>[.exe]`, with BOINC's platform names.
use crate::boinc_source::{build_triple, BoincSource};
use crate::macho::Cpu;
use crate::run::{run, run_logged};
use crate::toolchain;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Platform {
    /// BOINC's name for it (app-version directories, file names).
    pub boinc_name: &'static str,
    pub rust_target: &'static str,
    pub how: Build,
}

pub enum Build {
    /// Fully static with musl, compiled by zig for `zig_target`.
    LinuxStatic {
        zig_target: &'static str,
        /// What `readelf -h` calls the machine.
        elf_machine: &'static str,
    },
    /// MinGW-w64 with BOINC's `lib/Makefile.mingw` libraries.
    WindowsMingw { prefix: &'static str },
    /// zig for `zig_target` with its own macOS headers and libSystem stubs
    /// (no Apple SDK): the API from source, zig's libc++ linked in.
    MacZig {
        zig_target: &'static str,
        /// configure's `--host`.
        host: &'static str,
        cpu: Cpu,
    },
}

/// The oldest macOS the Mac files declare (Big Sur, the first on Apple
/// silicon); the BOINC client's Podman needs a newer one anyway.
pub const MIN_MACOS: (u32, u32) = (11, 0);

pub const PLATFORMS: &[Platform] = &[
    Platform {
        boinc_name: "x86_64-pc-linux-gnu",
        rust_target: "x86_64-unknown-linux-musl",
        how: Build::LinuxStatic {
            zig_target: "x86_64-linux-musl",
            elf_machine: "Advanced Micro Devices X86-64",
        },
    },
    Platform {
        boinc_name: "aarch64-unknown-linux-gnu",
        rust_target: "aarch64-unknown-linux-musl",
        how: Build::LinuxStatic {
            zig_target: "aarch64-linux-musl",
            elf_machine: "AArch64",
        },
    },
    Platform {
        boinc_name: "x86_64-apple-darwin",
        rust_target: "x86_64-apple-darwin",
        how: Build::MacZig {
            zig_target: "x86_64-macos",
            host: "x86_64-apple-darwin",
            cpu: Cpu::X86_64,
        },
    },
    Platform {
        boinc_name: "arm64-apple-darwin",
        rust_target: "aarch64-apple-darwin",
        how: Build::MacZig {
            zig_target: "aarch64-macos",
            host: "aarch64-apple-darwin",
            cpu: Cpu::Arm64,
        },
    },
    Platform {
        boinc_name: "windows_x86_64",
        rust_target: "x86_64-pc-windows-gnu",
        how: Build::WindowsMingw {
            prefix: "x86_64-w64-mingw32",
        },
    },
];

impl Platform {
    pub fn file_name(&self, version: &str) -> String {
        format!("docker_wrapper_{version}{}", self.file_suffix())
    }

    /// What follows the version in the file name.
    pub fn file_suffix(&self) -> String {
        let extension = match self.how {
            Build::WindowsMingw { .. } => ".exe",
            Build::LinuxStatic { .. } | Build::MacZig { .. } => "",
        };
        format!("_{}{extension}", self.boinc_name)
    }

    pub fn by_name(name: &str) -> Option<&'static Platform> {
        PLATFORMS.iter().find(|p| p.boinc_name == name)
    }

    /// Readies BOINC for this platform (configure or make: slow and mostly
    /// single-threaded, so `dist` runs the platforms' side by side) and
    /// returns the cargo command that builds the wrapper against it.
    pub fn prepare(&self, source: &BoincSource) -> Result<Command> {
        match self.how {
            Build::LinuxStatic { zig_target, .. } => self.prepare_linux(source, zig_target),
            Build::WindowsMingw { prefix } => self.prepare_windows(source, prefix),
            Build::MacZig {
                zig_target, host, ..
            } => self.prepare_mac(source, zig_target, host),
        }
    }

    /// Runs the command from `prepare`; returns the built file.
    pub fn build(&self, workspace: &Path, mut cargo: Command) -> Result<PathBuf> {
        cargo.current_dir(workspace).args([
            "--release",
            "--package",
            "docker_wrapper",
            "--target",
            self.rust_target,
        ]);
        run(&mut cargo)?;
        let exe = if matches!(self.how, Build::WindowsMingw { .. }) {
            "docker_wrapper.exe"
        } else {
            "docker_wrapper"
        };
        Ok(workspace
            .join("target")
            .join(self.rust_target)
            .join("release")
            .join(exe))
    }

    /// Configures a BOINC tree for macOS with zig (config.h must describe
    /// macOS's headers) and returns the cargo command that compiles the API
    /// from it; boinc-sys supplies what zig's headers lack.
    fn prepare_mac(&self, source: &BoincSource, zig_target: &str, host: &str) -> Result<Command> {
        toolchain::require_cargo_zigbuild()?;
        let zig = toolchain::zig()?;
        let log = source.log(&format!("configure-{}", self.boinc_name));
        let tree = source.tree_for(self.boinc_name, |tree| {
            configure(tree, &zig, zig_target, host, &log)
        })?;
        let mut cargo = Command::new("cargo");
        cargo
            .arg("zigbuild")
            .env("BOINC_SRC_DIR", &tree)
            .env(
                "MACOSX_DEPLOYMENT_TARGET",
                format!("{}.{}", MIN_MACOS.0, MIN_MACOS.1),
            )
            .env_remove("BOINC_INCLUDE_DIR")
            .env_remove("BOINC_LIB_DIR");
        Ok(cargo)
    }

    /// Configures a BOINC tree for the target (config.h must describe musl,
    /// not the host's glibc) and returns the cargo command that compiles the
    /// API from it (boinc-sys's source mode).
    fn prepare_linux(&self, source: &BoincSource, zig_target: &str) -> Result<Command> {
        toolchain::require_cargo_zigbuild()?;
        let zig = toolchain::zig()?;
        let log = source.log(&format!("configure-{}", self.boinc_name));
        let tree = source.tree_for(self.boinc_name, |tree| {
            configure(tree, &zig, zig_target, zig_target, &log)
        })?;
        let mut cargo = Command::new("cargo");
        cargo
            .arg("zigbuild")
            .env("BOINC_SRC_DIR", &tree)
            .env_remove("BOINC_INCLUDE_DIR")
            .env_remove("BOINC_LIB_DIR");
        Ok(cargo)
    }

    /// Builds BOINC's static Windows libraries with its Makefile.mingw and
    /// returns the cargo command that links them.
    fn prepare_windows(&self, source: &BoincSource, prefix: &str) -> Result<Command> {
        toolchain::require_mingw(prefix)?;
        let log = source.log(&format!("make-{}", self.boinc_name));
        let tree = source.tree_for(self.boinc_name, |tree| {
            let lib = tree.join("lib");
            let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
            run_logged(
                Command::new("make")
                    .arg(format!("-j{jobs}"))
                    .arg("-C")
                    .arg(&lib)
                    .args(["-f", "Makefile.mingw"])
                    .arg(format!("MINGW={prefix}"))
                    // Makefile.mingw's libboinc leaves out network.cpp, where
                    // boinc_get_port (the web graphics port) lives.
                    .args(["libboinc.a", "libboinc_api.a", "network.o"]),
                &log,
            )?;
            run(Command::new(format!("{prefix}-ar"))
                .arg("rs")
                .arg(lib.join("libboinc.a"))
                .arg(lib.join("network.o")))
            .context("adding network.o to libboinc.a")
        })?;
        let includes =
            std::env::join_paths(["api", "lib", "win_build", ""].map(|dir| tree.join(dir)))?;
        let mut cargo = Command::new("cargo");
        cargo
            .arg("build")
            .env("BOINC_INCLUDE_DIR", includes)
            .env("BOINC_LIB_DIR", tree.join("lib"))
            .env_remove("BOINC_SRC_DIR");
        Ok(cargo)
    }
}

/// BOINC's configure for the libraries only, compiling with zig for `zig_target`.
fn configure(tree: &Path, zig: &Path, zig_target: &str, host: &str, log: &Path) -> Result<()> {
    let compiler = |language: &str| format!("{} {language} -target {zig_target}", zig.display());
    run_logged(
        Command::new("./configure")
            .current_dir(tree)
            .arg(format!("--host={host}"))
            .arg(format!("--build={}", build_triple()?))
            .args([
                "--disable-server",
                "--disable-client",
                "--disable-manager",
                "--disable-fcgi",
            ])
            .arg(format!("CC={}", compiler("cc")))
            .arg(format!("CXX={}", compiler("c++"))),
        log,
    )
}
