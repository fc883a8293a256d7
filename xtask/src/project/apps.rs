//! The project's apps, installed as the README tells an admin to:
//!
//! * a classic app: `dist/app_versions/<platform>__docker/` copied unchanged
//!   to `apps/<app>/<version>/` (or an admin's own files, laid out by the
//!   same generator), `plan_class_spec.xml` into the project's root, then
//!   `bin/update_versions`;
//! * BUDA: the `buda` app with `dist/buda_app_versions/` (the wrapper
//!   alone), and a science app with a variant made through BOINC's own
//!   `buda.php` from files put in the user's sandbox with `sandbox.php`.
use super::project::Project;
use super::web;
use crate::app_version::{self, JobFile};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

pub const PLATFORM: &str = "x86_64-pc-linux-gnu";
/// The app version number the runs install (BOINC's `major.minor`).
pub const APP_VERSION: &str = "1.0";
pub const BUDA_APP: &str = "buda";
/// The BUDA science app and its variant (x86-64 CPUs, no plan class of its
/// own: `buda.php` names it `<cpu>_<plan class or "cpu">`).
pub const SCIENCE_APP: &str = "dw_spin";
pub const VARIANT: &str = "intel_cpu";

/// The science app: a CPU-bound job (its CPU time must come out close to
/// its run time) that copies its input into its output.
const SCIENCE_DOCKERFILE: &str =
    "FROM docker.io/library/busybox:1.36\nWORKDIR /app\nENV ARGS=\"\"\n\
CMD [\"/bin/sh\", \"-c\", \"exec /bin/sh /app/spin.sh $ARGS\"]\n";
const SCIENCE_SCRIPT: &str = include_str!("spin.sh");

/// Copies the dist template for `PLATFORM` into `apps/<app>/`, or, with
/// `own_app`, the admin's files laid out by the same generator.
pub fn install_classic(
    project: &Project,
    dist: &Path,
    app: &str,
    own_app: Option<&Path>,
) -> Result<()> {
    let dir_name = format!("{PLATFORM}__{}", app_version::PLAN_CLASS);
    let target = project
        .root
        .join("apps")
        .join(app)
        .join(APP_VERSION)
        .join(&dir_name);
    let template = dist.join("app_versions").join(&dir_name);
    match own_app {
        None => copy_dir(&template, &target)?,
        Some(own) => {
            let wrapper = wrapper_in(&template)?;
            app_version::write_version_dir(
                &target,
                PLATFORM,
                APP_VERSION,
                &wrapper,
                &own_files(own)?,
            )?
        }
    }
    install_plan_class(project, dist)?;
    update_versions(project)
}

/// The `buda` app's version: the wrapper alone.
pub fn install_buda(project: &Project, dist: &Path) -> Result<()> {
    let dir_name = format!("{PLATFORM}__{}", app_version::PLAN_CLASS);
    let template = dist.join("buda_app_versions").join(&dir_name);
    let target = project
        .root
        .join("apps")
        .join(BUDA_APP)
        .join(APP_VERSION)
        .join(&dir_name);
    copy_dir(&template, &target)?;
    install_plan_class(project, dist)?;
    update_versions(project)
}

/// The science app and its variant, made by buda.php as the user `auth`
/// (who needs the right to manage apps: a `user_submit` row).
pub fn make_science_app(project: &Project, auth: &str) -> Result<()> {
    // buda.php makes apps under this dir and, without it, fails silently.
    let buda_root = project.root.join("buda_apps");
    fs::create_dir_all(&buda_root)?;
    project.own()?;
    put_in_sandbox(project, auth)?;
    add_science_app(project, auth, &buda_root)?;
    add_variant(project, auth, &buda_root)
}

/// The variant's files, into the user's sandbox (`sandbox.php`).
fn put_in_sandbox(project: &Project, auth: &str) -> Result<()> {
    for (name, contents) in [
        ("Dockerfile", SCIENCE_DOCKERFILE),
        ("spin.sh", SCIENCE_SCRIPT),
    ] {
        web::request(
            &format!("{}sandbox.php", project.url),
            &[
                ("action", "add_file"),
                ("name", name),
                ("contents", contents),
            ],
            Some(auth),
            true,
        )?;
    }
    Ok(())
}

fn add_science_app(project: &Project, auth: &str, buda_root: &Path) -> Result<()> {
    web::request(
        &format!("{}buda.php", project.url),
        &[
            ("action", "app_action"),
            ("name", SCIENCE_APP),
            ("long_name", "docker_wrapper CPU-bound test app"),
            (
                "description",
                "spins for the given seconds, then copies in to out",
            ),
            ("input_file_names", "in"),
            ("output_file_names", "out"),
            ("max_nbytes_mb", "10"),
            ("max_delay_days", "1"),
            ("submitters", ""),
        ],
        Some(auth),
        false,
    )?;
    let desc = buda_root.join(SCIENCE_APP).join("desc.json");
    if !desc.exists() {
        bail!("buda.php made no {} (see {})", desc.display(), apache_log());
    }
    Ok(())
}

/// The variant for x86-64 CPUs, from the files in the sandbox.
fn add_variant(project: &Project, auth: &str, buda_root: &Path) -> Result<()> {
    let answer = web::request(
        &format!("{}buda.php", project.url),
        &[
            ("action", "variant_action"),
            ("app", SCIENCE_APP),
            ("cpu_type", "intel"),
            ("plan_class", ""),
            ("dockerfile", "Dockerfile"),
            ("app_files[]", "spin.sh"),
        ],
        Some(auth),
        false,
    )?;
    let variant = buda_root
        .join(SCIENCE_APP)
        .join(VARIANT)
        .join("variant.json");
    if !variant.exists() {
        bail!(
            "buda.php made no {} (see {}); it answered:\n{}",
            variant.display(),
            apache_log(),
            answer.chars().take(2000).collect::<String>()
        );
    }
    Ok(())
}

fn apache_log() -> &'static str {
    "/var/log/apache2/error.log"
}

fn install_plan_class(project: &Project, dist: &Path) -> Result<()> {
    // The 8.2 scheduler reads plan_class_spec.xml in the project's root.
    fs::copy(
        dist.join("plan_class_spec.xml"),
        project.root.join("plan_class_spec.xml"),
    )
    .context("copying dist/plan_class_spec.xml: run `cargo xtask dist` first")?;
    Ok(())
}

/// `bin/update_versions`, failing on the immutability message too (the
/// tool prints it and still exits 0).
fn update_versions(project: &Project) -> Result<()> {
    project.own()?;
    let text = project.tool("bin/update_versions", &["--noconfirm"])?;
    if refused(&text) {
        bail!("bin/update_versions refused the app version:\n{text}");
    }
    // update_versions takes <api_version> from the main program's
    // API_VERSION_x.y.z text; without it the client uses System V shm.
    let missing = super::services::sql(
        Some(project.database()),
        "SELECT COUNT(*) FROM app_version WHERE xml_doc NOT LIKE '%<api_version>%'",
    )?;
    if missing.trim() != "0" {
        bail!(
            "bin/update_versions recorded no <api_version> for {} app version(s):\n{text}",
            missing.trim()
        );
    }
    Ok(())
}

/// Whether update_versions' output says it refused a file: it prints an
/// error (a changed file under a name the project has) and exits 0.
fn refused(output: &str) -> bool {
    output.contains("BOINC files are immutable") || output.lines().any(|l| l.starts_with("Error"))
}

fn wrapper_in(template: &Path) -> Result<PathBuf> {
    fs::read_dir(template)
        .with_context(|| {
            format!(
                "cannot read {}: run `cargo xtask dist` first",
                template.display()
            )
        })?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("docker_wrapper_"))
        })
        .with_context(|| format!("no docker_wrapper_* in {}", template.display()))
}

/// Files of an admin's app dir that describe the sample work unit rather
/// than belong to the app version.
pub const OWN_APP_OUTPUTS: &str = "outputs";
pub const OWN_APP_CMDLINE: &str = "cmdline";

/// An admin's app dir: every regular file at its top (Dockerfile, job.toml,
/// scripts) goes into the app version, except `outputs` (the output files'
/// names, one a line; default output.txt) and `cmdline` (the sample work
/// unit's command line); `input/` holds the sample work unit's inputs.
fn own_files(dir: &Path) -> Result<Vec<JobFile>> {
    if !dir.join("Dockerfile").is_file() {
        bail!("{} has no Dockerfile", dir.display());
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_file() && name != OWN_APP_OUTPUTS && name != OWN_APP_CMDLINE {
            files.push(JobFile {
                logical: entry.file_name().to_string_lossy().into_owned(),
                content: fs::read(&path)?,
            });
        }
    }
    files.sort_by(|a, b| a.logical.cmp(&b.logical));
    Ok(files)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    if !from.is_dir() {
        bail!(
            "{} is missing: run `cargo xtask dist` first",
            from.display()
        );
    }
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)?.flatten() {
        fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::refused;

    #[test]
    fn an_immutable_file_is_a_refusal_even_with_exit_0() {
        let text = "Error: files apps/a/1.0/x86_64-pc-linux-gnu__docker/main.sh and download/main.sh differ.\n\
                    BOINC files are immutable.\nIf you change a file, you must give it a new name.\n";
        assert!(refused(text));
        assert!(!refused("App version added successfully; ID=1\n"));
    }
}
