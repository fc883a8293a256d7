//! The self-contained release files of `cargo xtask dist`, as tests and the
//! benchmark find them: in `dist/` at the top of the project, or `DW_DIST_DIR`.
use std::path::{Path, PathBuf};

/// Names a directory of release files other than `dist/`.
pub const DIST_DIR_VAR: &str = "DW_DIST_DIR";
const PREFIX: &str = "docker_wrapper_";

/// The project's top directory: this crate is its `tests/support/`.
pub fn project_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/support lies two levels below the project")
}

/// `DW_DIST_DIR`, else `dist/` of the project.
pub fn dist_dir() -> PathBuf {
    std::env::var_os(DIST_DIR_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| project_dir().join("dist"))
}

/// The release file whose name ends in `suffix` (e.g. `_x86_64-pc-linux-gnu`):
/// that of `version` (the caller's `env!("CARGO_PKG_VERSION")`), else the only one there.
pub fn release_file(suffix: &str, version: &str) -> Result<PathBuf, String> {
    let dir = dist_dir();
    let this_version = dir.join(format!("{PREFIX}{version}{suffix}"));
    if this_version.is_file() {
        return Ok(this_version);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && version_of(p, suffix).is_some())
                .collect()
        })
        .unwrap_or_default();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(format!(
            "no {PREFIX}*{suffix} in {}: build the release files with \
             `cargo xtask dist` (or set {DIST_DIR_VAR})",
            dir.display()
        )),
        _ => Err(format!(
            "{} holds several {PREFIX}*{suffix} and none of version {version}: {found:?}; \
             run `cargo xtask dist` again or set {DIST_DIR_VAR}",
            dir.display(),
        )),
    }
}

/// The version in a release file's name `docker_wrapper_<version><suffix>`.
pub fn version_of(file: &Path, suffix: &str) -> Option<String> {
    let name = file.file_name()?.to_str()?;
    let version = name.strip_prefix(PREFIX)?.strip_suffix(suffix)?;
    Some(version.to_string())
}

/// BOINC's own C++ docker_wrapper, built by `cargo xtask client` beside
/// the 8.2 client (`DW_BOINC8_CLIENT_DIR`, else `target/boinc-client-8.2.15`),
/// to run images written for it under both wrappers. Err names the command
/// that builds it.
pub fn cxx_wrapper() -> Result<PathBuf, String> {
    let dir = std::env::var_os("DW_BOINC8_CLIENT_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| project_dir().join("target/boinc-client-8.2.15"));
    let file = dir.join("docker_wrapper_cxx");
    if file.is_file() {
        Ok(file)
    } else {
        Err(format!(
            "BOINC's C++ docker_wrapper is missing ({}): build it with `cargo xtask client`",
            file.display()
        ))
    }
}
