//! The self-contained release files of `cargo xtask dist`, as tests and the
//! benchmark find them: in `dist/` at the top of the project, or `DW_DIST_DIR`.
use std::path::PathBuf;

/// The release file whose name ends in `suffix` (e.g. `_x86_64-pc-linux-gnu`).
pub fn release_file(suffix: &str) -> Result<PathBuf, String> {
    let dir = std::env::var_os("DW_DIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dist"));
    std::fs::read_dir(&dir)
        .ok()
        .and_then(|entries| {
            entries.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                name.starts_with("docker_wrapper_") && name.ends_with(suffix)
            })
        })
        .ok_or_else(|| {
            format!(
                "no docker_wrapper_*{suffix} in {}: build the release files with \
                 `cargo xtask dist` (or set DW_DIST_DIR)",
                dir.display()
            )
        })
}
