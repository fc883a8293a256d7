//! App-version templates a project admin copies into the project's `apps/`
//! tree: per platform, the wrapper as main program with `version.xml`, the
//! sample job (examples/hello's job.toml and main.sh, with a Dockerfile that
//! builds from a registry image, as volunteers' engines can), and once, the
//! plan class spec for Docker hosts.
use anyhow::{Context, Result};
use std::fs;
use std::path::Path;

const VERSION_XML: &str = include_str!("../templates/version.xml");
const DOCKERFILE: &str = include_str!("../templates/Dockerfile");
pub const PLAN_CLASS_SPEC: &str = include_str!("../templates/plan_class_spec.xml");
/// The plan class the templates use (its name must contain "docker").
pub const PLAN_CLASS: &str = "docker";

/// Writes `<dist>/app_versions/<platform>__docker/`.
pub fn write(
    workspace: &Path,
    dist: &Path,
    platform: &str,
    version: &str,
    wrapper: &Path,
) -> Result<()> {
    let dir = dist
        .join("app_versions")
        .join(format!("{platform}__{PLAN_CLASS}"));
    fs::create_dir_all(&dir)?;
    let wrapper_name = wrapper
        .file_name()
        .context("the wrapper has a file name")?
        .to_string_lossy()
        .into_owned();
    fs::copy(wrapper, dir.join(&wrapper_name))?;
    let version_xml = VERSION_XML
        .replace("@VERSION@", version)
        .replace("@PLATFORM@", platform)
        .replace("@WRAPPER@", &wrapper_name);
    fs::write(dir.join("version.xml"), version_xml)?;
    fs::write(dir.join("Dockerfile"), DOCKERFILE)?;
    let sample = workspace.join("examples/hello");
    for file in ["job.toml", "main.sh"] {
        fs::copy(sample.join(file), dir.join(file))
            .with_context(|| format!("cannot copy examples/hello/{file}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_xml_names_the_wrapper_as_main_program() {
        let xml = VERSION_XML.replace("@WRAPPER@", "docker_wrapper_1.0_x86_64-pc-linux-gnu");
        let main = xml.find("<main_program/>").expect("a main program");
        let wrapper = xml
            .find("docker_wrapper_1.0_x86_64-pc-linux-gnu</physical_name>")
            .unwrap();
        assert!(wrapper < main);
        for logical in ["Dockerfile", "job.toml", "main.sh"] {
            assert!(xml.contains(&format!("<logical_name>{logical}</logical_name>")));
        }
    }

    #[test]
    fn the_plan_class_asks_for_docker() {
        assert!(PLAN_CLASS.contains("docker"));
        assert!(PLAN_CLASS_SPEC.contains(&format!("<name>{PLAN_CLASS}</name>")));
        assert!(PLAN_CLASS_SPEC.contains("<docker/>"));
    }
}
