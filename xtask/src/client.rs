//! `cargo xtask client`: BOINC's client (`boinc`, `boinccmd`) built for this
//! host from the same source as the release files, for the tests that run
//! the wrapper under the client volunteers run for Docker apps.
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
    Ok(())
}
