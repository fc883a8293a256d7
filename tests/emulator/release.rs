//! The self-contained release files of `cargo xtask dist`, as tests and the
//! benchmark find them: in `dist/` at the top of the project, or `DW_DIST_DIR`.
use std::path::PathBuf;

/// The release file whose name ends in `suffix` (e.g. `_x86_64-pc-linux-gnu`):
/// this version's, else the only one there.
pub fn release_file(suffix: &str) -> Result<PathBuf, String> {
    let dir = std::env::var_os("DW_DIST_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dist"));
    let this_version = dir.join(format!(
        "docker_wrapper_{}{suffix}",
        env!("CARGO_PKG_VERSION")
    ));
    if this_version.is_file() {
        return Ok(this_version);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().unwrap_or_default().to_string_lossy();
                    p.is_file() && name.starts_with("docker_wrapper_") && name.ends_with(suffix)
                })
                .collect()
        })
        .unwrap_or_default();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(format!(
            "no docker_wrapper_*{suffix} in {}: build the release files with \
             `cargo xtask dist` (or set DW_DIST_DIR)",
            dir.display()
        )),
        _ => Err(format!(
            "{} holds several docker_wrapper_*{suffix} and none of version {}: {found:?}; \
             run `cargo xtask dist` again or set DW_DIST_DIR",
            dir.display(),
            env!("CARGO_PKG_VERSION"),
        )),
    }
}
