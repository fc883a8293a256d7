//! The BOINC client a test runs (Debian's 7.20.5, or 8.2.15 built from
//! BOINC's tree, the client volunteers run for Docker apps) and the engine
//! it runs the wrapper on.

use std::path::PathBuf;

use dw_test_support::TestEngine;

/// Overrides for the 7.20 client programs (defaults: Debian's boinc-client).
pub const CLIENT_VAR: &str = "DW_BOINC_CLIENT";
pub const BOINCCMD_VAR: &str = "DW_BOINCCMD";
/// The directory holding the 8.2.15 `boinc` and `boinccmd`; default
/// `target/boinc-client-8.2.15/` of this crate, where `cargo xtask client` puts them.
pub const BOINC8_DIR_VAR: &str = "DW_BOINC8_CLIENT_DIR";
const BOINC8_DEFAULT_DIR: &str = "target/boinc-client-8.2.15";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientVersion {
    /// Debian 12's boinc-client: no Docker code at all.
    V7_20,
    /// BOINC 8.2.15: detects Podman or Docker, reports it in init_data.xml,
    /// treats apps whose plan class contains `docker` as Docker apps and
    /// removes other `boinc__` containers when it starts.
    V8_2,
}

impl ClientVersion {
    /// The client's `boinc` and `boinccmd`; Err says how to get them.
    pub fn programs(self) -> Result<(PathBuf, PathBuf), String> {
        match self {
            ClientVersion::V7_20 => {
                let env_or = |var: &str, default: &str| {
                    std::env::var_os(var)
                        .map(PathBuf::from)
                        .unwrap_or_else(|| PathBuf::from(default))
                };
                let (client, boinccmd) = (
                    env_or(CLIENT_VAR, "/usr/bin/boinc"),
                    env_or(BOINCCMD_VAR, "/usr/bin/boinccmd"),
                );
                if client.is_file() && boinccmd.is_file() {
                    Ok((client, boinccmd))
                } else {
                    Err(format!(
                        "the BOINC 7.20 client is not installed ({} / {} missing): `apt-get install -y boinc-client` \
                         (or run `bash .ci/setup`)",
                        client.display(),
                        boinccmd.display()
                    ))
                }
            }
            ClientVersion::V8_2 => {
                let dir = std::env::var_os(BOINC8_DIR_VAR)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(BOINC8_DEFAULT_DIR)
                    });
                let (client, boinccmd) = (dir.join("boinc"), dir.join("boinccmd"));
                if client.is_file() && boinccmd.is_file() {
                    Ok((client, boinccmd))
                } else {
                    Err(format!(
                        "the BOINC 8.2.15 client is missing ({} / {} not found): build it with `cargo xtask client`, \
                         which puts boinc and boinccmd into {BOINC8_DEFAULT_DIR}/, or set {BOINC8_DIR_VAR} to a \
                         directory holding both",
                        client.display(),
                        boinccmd.display()
                    ))
                }
            }
        }
    }

    /// The 7.20 client is started with `--allow_multiple_clients` (and the
    /// cc_config option); the 8.2 client as a volunteer's is, alone on the
    /// host, which makes it clean up other `boinc__` containers at startup
    /// (the option turns that off).
    pub fn allow_multiple_clients(self) -> bool {
        self == ClientVersion::V7_20
    }
}

/// One client on one engine: what a test runs.
#[derive(Clone, Debug)]
pub struct Variant {
    pub client: ClientVersion,
    pub engine: TestEngine,
}

impl Variant {
    pub fn new(client: ClientVersion, engine: TestEngine) -> Variant {
        Variant { client, engine }
    }

    /// As in the test's path: "podman", "docker_as_boinc" (7.20),
    /// "boinc8::podman" (8.2).
    pub fn label(&self) -> String {
        match self.client {
            ClientVersion::V7_20 => self.engine.label(),
            ClientVersion::V8_2 => format!("boinc8::{}", self.engine.label()),
        }
    }

    /// The label as a part of file, workunit and container names.
    pub fn name_part(&self) -> String {
        self.label().replace("::", "_")
    }

    /// `host_info/docker_type` the client writes into init_data.xml: none
    /// from 7.20, the engine the 8.2 client found otherwise.
    pub fn expected_docker_type(&self) -> Option<u32> {
        match self.client {
            ClientVersion::V7_20 => None,
            ClientVersion::V8_2 => Some(self.engine.kind().docker_type() as u32),
        }
    }
}
