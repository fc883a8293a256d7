//! `cargo xtask client`: BOINC's client (`boinc`, `boinccmd`) built for this
//! host from the same source as the release files, for the tests that run
//! the wrapper under the client volunteers run for Docker apps; and BOINC's
//! own C++ docker_wrapper from that source, for the tests that run images
//! written for it under both wrappers.
//!
//! Needs libcurl4-openssl-dev, libssl-dev and zlib1g-dev (Debian).
use crate::boinc_source::BoincSource;
use crate::run::run_logged;
use anyhow::{Context, Result};
use std::fs;
use std::path::Path;
use std::process::Command;

const PROGRAMS: &[&str] = &["boinc", "boinccmd"];

pub fn run(workspace: &Path) -> Result<()> {
    let source = BoincSource::prepare(workspace)?;
    let log = source.log("client");
    let tree = source.tree_for("client", |tree| {
        run_logged(
            Command::new("./configure").current_dir(tree).args([
                "--disable-server",
                "--disable-manager",
                "--disable-fcgi",
                "--enable-client",
            ]),
            &log,
        )
        .context(
            "configuring BOINC's client (it needs libcurl4-openssl-dev, libssl-dev, zlib1g-dev)",
        )?;
        let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
        for dir in ["lib", "api", "client"] {
            run_logged(
                Command::new("make")
                    .arg(format!("-j{jobs}"))
                    .arg("-C")
                    .arg(tree.join(dir)),
                &source.log(&format!("client-make-{dir}")),
            )?;
        }
        Ok(())
    })?;
    let installed = workspace.join(format!("target/boinc-client-{}", source.version));
    fs::create_dir_all(&installed)?;
    for program in PROGRAMS {
        let built = tree.join("client").join(program);
        fs::copy(&built, installed.join(program))
            .with_context(|| format!("cannot copy {}", built.display()))?;
    }
    println!(
        "BOINC {} client: {}/{{{}}}",
        source.version,
        installed.display(),
        PROGRAMS.join(",")
    );
    let cxx = installed.join(CXX_WRAPPER);
    if !cxx.is_file() {
        build_cxx_wrapper(&tree, &cxx, &source.log("cxx-docker-wrapper"))?;
    }
    println!(
        "BOINC {} C++ docker_wrapper: {}",
        source.version,
        cxx.display()
    );
    Ok(())
}

/// The C++ wrapper's file name beside the client programs.
const CXX_WRAPPER: &str = "docker_wrapper_cxx";

/// One compiler run over the sample's single source file, against the
/// libraries the client build made (its own Makefile wants a release
/// suffix and a static libstdc++ link, neither of use to a test).
fn build_cxx_wrapper(tree: &Path, out: &Path, log: &Path) -> Result<()> {
    let sample = tree.join("samples/docker_wrapper");
    let include = |dir: &Path| format!("-I{}", dir.display());
    run_logged(
        Command::new("g++")
            .args(["-O1", "-o"])
            .arg(out)
            .arg(include(tree))
            .arg(include(&tree.join("lib")))
            .arg(include(&tree.join("api")))
            .arg(include(&sample))
            .arg(sample.join("docker_wrapper.cpp"))
            .arg(tree.join("api/.libs/libboinc_api.a"))
            .arg(tree.join("lib/libboinc.a"))
            .arg("-lpthread"),
        log,
    )
    .context("building BOINC's C++ docker_wrapper (it needs g++)")
}
