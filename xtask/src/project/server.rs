//! BOINC's server programs (scheduler, file upload handler, feeder,
//! transitioner, sample validator and assimilator, the project tools), built
//! once from the same source as the release files and kept by its hash.
//!
//! Needs the packages `.ci/setup` installs (MariaDB's client library,
//! nlohmann-json3-dev and libzip-dev besides the client's).
use crate::boinc_source::BoincSource;
use crate::run::run_logged;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub struct ServerBuild {
    /// The built tree; `tools/make_project` installs from it.
    pub tree: PathBuf,
    pub version: String,
    /// How long getting it took (near zero when it was already built).
    pub took: std::time::Duration,
}

pub fn build(workspace: &Path) -> Result<ServerBuild> {
    let started = Instant::now();
    let source = BoincSource::prepare(workspace)?;
    let tree = source.tree_for("server", |tree| {
        run_logged(
            Command::new("./configure").current_dir(tree).args([
                "--enable-server",
                "--disable-client",
                "--disable-manager",
            ]),
            &source.log("server-configure"),
        )
        .context(
            "configuring BOINC's server (it needs default-libmysqlclient-dev, libssl-dev, \
             libcurl4-openssl-dev, zlib1g-dev: run .ci/setup)",
        )?;
        let jobs = format!(
            "-j{}",
            std::thread::available_parallelism().map_or(2, |n| n.get())
        );
        // Two makes in lib/ at once race to link libboinc.la (from the top
        // level's parallel subdirs): the libraries first, alone.
        run_logged(
            Command::new("make")
                .arg(&jobs)
                .arg("-C")
                .arg(tree.join("lib"))
                .args(["libboinc.la", "libboinc_crypt.la"]),
            &source.log("server-make-lib"),
        )?;
        run_logged(
            Command::new("make").arg(&jobs).arg("-C").arg(tree),
            &source.log("server-make"),
        )
        .context("building BOINC's server (the scheduler needs nlohmann-json3-dev, the tools libzip-dev)")
    })?;
    Ok(ServerBuild {
        tree,
        version: source.version,
        took: started.elapsed(),
    })
}
