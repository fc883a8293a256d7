//! App-version templates a project admin copies into the project's `apps/`
//! tree, per platform:
//!
//! * `app_versions/<platform>__docker/`: the wrapper as main program with
//!   the sample job (examples/hello's job.toml and main.sh, with a Dockerfile
//!   that builds from a registry image, as volunteers' engines can);
//! * `buda_app_versions/<platform>__docker/`: the wrapper alone, for BOINC's
//!   `buda` app (the Dockerfile and the science app's files come with each
//!   job);
//!
//! and once, the plan class spec for Docker hosts.
//!
//! A BOINC project keeps every file under its physical name in one
//! `download/` directory and refuses a changed file under a name it already
//! has ("BOINC files are immutable"). So each job file's physical name
//! carries a hash of its content (`main_1a2b3c4d.sh`); the logical name,
//! the one the wrapper and the job see in the slot, stays `main.sh`. Two
//! versions or apps with the same file share it; a changed file gets a new name.
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::Path;

const DOCKERFILE: &str = include_str!("../templates/Dockerfile");
pub const PLAN_CLASS_SPEC: &str = include_str!("../templates/plan_class_spec.xml");
/// The plan class the templates use (its name must contain "docker").
pub const PLAN_CLASS: &str = "docker";
/// The sample job's files besides the Dockerfile, from examples/hello.
const SAMPLE_FILES: &[&str] = &["job.toml", "main.sh"];

/// A file of an app version: its logical name and its content.
pub struct JobFile {
    pub logical: String,
    pub content: Vec<u8>,
}

/// Writes `<dist>/app_versions/<platform>__docker/` (the sample job) and
/// `<dist>/buda_app_versions/<platform>__docker/` (the wrapper alone).
pub fn write(
    workspace: &Path,
    dist: &Path,
    platform: &str,
    version: &str,
    wrapper: &Path,
) -> Result<()> {
    let mut files = vec![JobFile {
        logical: "Dockerfile".into(),
        content: DOCKERFILE.as_bytes().to_vec(),
    }];
    let sample = workspace.join("examples/hello");
    for name in SAMPLE_FILES {
        files.push(JobFile {
            logical: name.to_string(),
            content: fs::read(sample.join(name))
                .with_context(|| format!("cannot read examples/hello/{name}"))?,
        });
    }
    let dir_name = format!("{platform}__{PLAN_CLASS}");
    write_version_dir(
        &dist.join("app_versions").join(&dir_name),
        platform,
        version,
        wrapper,
        &files,
    )?;
    write_version_dir(
        &dist.join("buda_app_versions").join(&dir_name),
        platform,
        version,
        wrapper,
        &[],
    )
}

/// One app version directory: the wrapper, each job file under its
/// physical name, and `version.xml` naming them.
pub fn write_version_dir(
    dir: &Path,
    platform: &str,
    version: &str,
    wrapper: &Path,
    files: &[JobFile],
) -> Result<()> {
    if dir.exists() {
        // Old job files under other hashes must not stay behind.
        fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    fs::create_dir_all(dir)?;
    let wrapper_name = wrapper
        .file_name()
        .context("the wrapper has a file name")?
        .to_string_lossy()
        .into_owned();
    fs::copy(wrapper, dir.join(&wrapper_name))
        .with_context(|| format!("cannot copy {}", wrapper.display()))?;
    let mut named = Vec::new();
    for file in files {
        let physical = physical_name(&file.logical, &file.content);
        fs::write(dir.join(&physical), &file.content)?;
        named.push((physical, file.logical.as_str()));
    }
    fs::write(
        dir.join("version.xml"),
        version_xml(platform, version, &wrapper_name, &named),
    )?;
    Ok(())
}

/// `main.sh` -> `main_<hash>.sh`, `Dockerfile` -> `Dockerfile_<hash>`: the
/// first 8 hex digits of the content's SHA-256 before the extension.
pub fn physical_name(logical: &str, content: &[u8]) -> String {
    let digest = Sha256::digest(content);
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    match logical.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}_{hash}.{ext}"),
        _ => format!("{logical}_{hash}"),
    }
}

fn version_xml(platform: &str, version: &str, wrapper: &str, files: &[(String, &str)]) -> String {
    let mut xml = format!(
        "<!--\n  App version of docker_wrapper {version} for {platform}, plan class \"{PLAN_CLASS}\".\n  \
         Copy this directory to apps/APP_NAME/VERSION_NUMBER/{platform}__{PLAN_CLASS}/ and\n  \
         run bin/update_versions. Physical names are unique in a project: each job\n  \
         file's name carries a hash of its content. When you change a file, rename\n  \
         it (a new hash, or any new name) here and on disk; keep its logical name.\n-->\n\
         <version>\n  <file>\n    <physical_name>{wrapper}</physical_name>\n    <main_program/>\n  </file>\n"
    );
    for (physical, logical) in files {
        xml.push_str(&format!(
            "  <file>\n    <physical_name>{physical}</physical_name>\n    <logical_name>{logical}</logical_name>\n  </file>\n"
        ));
    }
    // The client then runs the wrapper (and so its containers) at normal
    // priority rather than idle, as for BOINC's own wrappers.
    xml.push_str("  <is_wrapper/>\n</version>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_xml_names_the_wrapper_as_main_program() {
        let files = vec![
            (physical_name("Dockerfile", b"FROM x"), "Dockerfile"),
            (physical_name("main.sh", b"echo"), "main.sh"),
        ];
        let xml = version_xml(
            "x86_64-pc-linux-gnu",
            "1.0",
            "docker_wrapper_1.0_x86_64-pc-linux-gnu",
            &files,
        );
        let main = xml.find("<main_program/>").expect("a main program");
        let wrapper = xml
            .find("docker_wrapper_1.0_x86_64-pc-linux-gnu</physical_name>")
            .unwrap();
        assert!(wrapper < main);
        for (physical, logical) in &files {
            assert!(xml.contains(&format!("<physical_name>{physical}</physical_name>")));
            assert!(xml.contains(&format!("<logical_name>{logical}</logical_name>")));
        }
        assert!(xml.contains("<is_wrapper/>"));
    }

    #[test]
    fn physical_names_carry_the_content_hash() {
        let a = physical_name("main.sh", b"one");
        let b = physical_name("main.sh", b"two");
        assert_ne!(a, b);
        assert!(a.starts_with("main_") && a.ends_with(".sh"), "{a}");
        assert_eq!(a, physical_name("main.sh", b"one"));
        let docker = physical_name("Dockerfile", b"FROM x");
        assert!(docker.starts_with("Dockerfile_") && !docker.contains('.'));
    }

    #[test]
    fn the_plan_class_asks_for_docker() {
        assert!(PLAN_CLASS.contains("docker"));
        assert!(PLAN_CLASS_SPEC.contains(&format!("<name>{PLAN_CLASS}</name>")));
        assert!(PLAN_CLASS_SPEC.contains("<docker/>"));
    }
}
