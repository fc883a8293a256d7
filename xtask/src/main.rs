//! Build tasks of docker_wrapper, run as `cargo xtask <command>`:
//!
//! * `dist`: the self-contained files a BOINC project ships, one per
//!   platform, built from a BOINC source tree, checked for portability, with
//!   SHA256SUMS and app-version templates, into `dist/`;
//! * `check-dist [DIR]`: the portability checks alone, on files already built;
//! * `client`: the BOINC client of the same source tree, for the tests that
//!   run the wrapper under the real client;
//! * `project run|down`: a BOINC project on this machine (server built from
//!   the same tree) that sends the release files to that client.
//!
//! The BOINC tree comes from `BOINC_SRC_DIR` (a checkout) or
//! `BOINC_SRC_TARBALL`, else `../shared/vendor/boinc-*.tar.xz` beside the
//! project. Unpacked and configured trees are kept, keyed by the source's
//! hash, under `DW_BOINC_BUILD_DIR` (default `~/.cache/docker_wrapper/boinc-build`).
mod app_version;
mod boinc_source;
mod client;
mod dist;
mod macho;
mod platforms;
mod portability;
mod project;
mod run;
mod toolchain;

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
Usage: cargo xtask <command>

Commands:
  dist [--platform NAME]...  build the self-contained release files into dist/
                             (all platforms unless named: x86_64-pc-linux-gnu,
                             aarch64-unknown-linux-gnu, windows_x86_64)
  check-dist [DIR]           check the portability of the files in DIR (default dist/)
  client                     build BOINC's client (boinc, boinccmd) from the same
                             source into target/boinc-client-<version>/
  project run [--engine podman|docker] [--keep] [--app DIR] [--timeout SECONDS]
                             stand up a BOINC server and project here (as root),
                             install dist/ as app versions, create classic and
                             BUDA work, run it under that client and check each
                             result (after dist and client)
  project down               stop and remove the projects, their clients,
                             MariaDB and Apache

Environment:
  BOINC_SRC_DIR       a BOINC source checkout to build from
  BOINC_SRC_TARBALL   a BOINC source tarball (.tar.xz/.tar.gz) to build from
                      (default: ../shared/vendor/boinc-*.tar.xz beside the project)
  DW_BOINC_BUILD_DIR  where unpacked and configured BOINC trees are kept, by
                      source hash (default: ~/.cache/docker_wrapper/boinc-build)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run_command(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_command(args: &[String]) -> Result<()> {
    let workspace = workspace_root();
    match args.first().map(String::as_str) {
        Some("dist") => dist::run(&workspace, &platform_names(&args[1..])?),
        Some("check-dist") => {
            let dir = args
                .get(1)
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace.join("dist"));
            dist::check(&dir)
        }
        Some("client") => client::run(&workspace),
        Some("project") => project::command(&workspace, &args[1..]),
        Some("help" | "--help" | "-h") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

fn platform_names(args: &[String]) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--platform" => match rest.next() {
                Some(name) => names.push(name.clone()),
                None => bail!("--platform needs a name\n\n{USAGE}"),
            },
            other => bail!("unknown argument {other:?} to dist\n\n{USAGE}"),
        }
    }
    Ok(names)
}

/// The workspace root: xtask's own manifest sits one level below it.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}
