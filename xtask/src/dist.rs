//! `cargo xtask dist`: every platform's release file into `dist/`, each
//! checked for portability, with SHA256SUMS and app-version templates.
use crate::app_version;
use crate::boinc_source::BoincSource;
use crate::platforms::{Build, Platform, MIN_MACOS, PLATFORMS};
use crate::portability::{self, Report};
use crate::toolchain;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::Path;
use std::process::Command;

pub fn run(workspace: &Path, names: &[String]) -> Result<()> {
    let platforms = chosen(names)?;
    let version = package_version(workspace)?;
    let source = BoincSource::prepare(workspace)?;
    println!("BOINC {} source ready", source.version);
    let dist = workspace.join("dist");
    fs::create_dir_all(&dist)?;
    for platform in &platforms {
        toolchain::require_rust_target(platform.rust_target)?;
    }
    let commands: Vec<Result<Command>> = std::thread::scope(|scope| {
        let preparing: Vec<_> = platforms
            .iter()
            .map(|platform| scope.spawn(|| platform.prepare(&source)))
            .collect();
        preparing
            .into_iter()
            .map(|handle| handle.join().expect("preparing a platform does not panic"))
            .collect()
    });
    for (platform, cargo) in platforms.iter().zip(commands) {
        let built = platform.build(workspace, cargo?)?;
        let shipped = dist.join(platform.file_name(&version));
        fs::copy(&built, &shipped)
            .with_context(|| format!("cannot copy {} to dist/", built.display()))?;
        app_version::write(workspace, &dist, platform.boinc_name, &version, &shipped)?;
    }
    fs::write(
        dist.join("plan_class_spec.xml"),
        app_version::PLAN_CLASS_SPEC,
    )?;
    write_checksums(&dist)?;
    check(&dist)
}

/// Checks every release file in `dir` and prints what it found.
pub fn check(dir: &Path) -> Result<()> {
    let mut found = 0;
    println!("\n| file | size | dynamic dependencies | highest glibc symbol or oldest macOS | BOINC API |");
    println!("|---|---|---|---|---|");
    for platform in PLATFORMS {
        let suffix = platform.file_suffix();
        let files = fs::read_dir(dir)
            .with_context(|| {
                format!(
                    "cannot read {}: run `cargo xtask dist` first",
                    dir.display()
                )
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                name.starts_with("docker_wrapper_") && name.ends_with(&suffix)
            });
        for file in files {
            let report = check_file(platform, &file)?;
            found += 1;
            println!(
                "| {} | {:.2} MiB | {} | {} | {} |",
                file.file_name().unwrap_or_default().to_string_lossy(),
                report.size as f64 / (1024.0 * 1024.0),
                report.dependencies_text(),
                report.glibc_text(),
                report.api_version
            );
        }
    }
    if found == 0 {
        bail!(
            "no release files in {}: run `cargo xtask dist` first",
            dir.display()
        );
    }
    println!("\nall {found} release files are self-contained");
    Ok(())
}

fn check_file(platform: &Platform, file: &Path) -> Result<Report> {
    match platform.how {
        Build::LinuxStatic { elf_machine, .. } => portability::check_linux(file, elf_machine),
        Build::WindowsMingw { prefix } => portability::check_windows(file, prefix),
        Build::MacZig { cpu, .. } => portability::check_macos(file, cpu, MIN_MACOS),
    }
}

fn chosen(names: &[String]) -> Result<Vec<&'static Platform>> {
    if names.is_empty() {
        return Ok(PLATFORMS.iter().collect());
    }
    names
        .iter()
        .map(|name| {
            Platform::by_name(name).with_context(|| {
                let known: Vec<&str> = PLATFORMS.iter().map(|p| p.boinc_name).collect();
                format!("unknown platform {name:?}; known: {}", known.join(", "))
            })
        })
        .collect()
}

/// `sha256sum`'s format, so `sha256sum -c SHA256SUMS` verifies a download.
fn write_checksums(dist: &Path) -> Result<()> {
    let mut names: Vec<String> = fs::read_dir(dist)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("docker_wrapper_"))
        .collect();
    names.sort();
    let mut sums = String::new();
    for name in names {
        let digest = Sha256::digest(fs::read(dist.join(&name))?);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        sums.push_str(&format!("{hex}  {name}\n"));
    }
    fs::write(dist.join("SHA256SUMS"), sums)?;
    Ok(())
}

/// The wrapper's version, from the top-level Cargo.toml.
fn package_version(workspace: &Path) -> Result<String> {
    let manifest = fs::read_to_string(workspace.join("Cargo.toml"))?;
    let mut in_package = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if let Some(value) = line.strip_prefix("version").filter(|_| in_package) {
            let value = value.trim_start().trim_start_matches('=').trim();
            return Ok(value.trim_matches('"').to_string());
        }
    }
    bail!("no [package] version in Cargo.toml")
}
