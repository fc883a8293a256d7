//! One BOINC project made with BOINC's own `make_project`, set up as an
//! admin would: its web server include, its daemons (a sample validator and
//! assimilator per app), the plan class, its apps; and BOINC's tools run in
//! it as the web server's user, who owns the tree (Apache's CGI programs
//! write its logs and uploads).
use super::services::{self, DB_PASSWORD, DB_USER};
use crate::run::run_logged;
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The user Apache runs BOINC's CGI programs and PHP pages as (Debian).
pub const WEB_USER: &str = "www-data";
/// Where projects live: beside each other, one directory each.
pub const PROJECTS_DIR: &str = "/srv/docker_wrapper_boinc";
/// BOINC's tools are Python and PHP scripts: Debian's own interpreters
/// (a pyenv Python first in PATH lacks MySQLdb).
const TOOL_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct Project {
    pub name: String,
    pub root: PathBuf,
    /// The master URL volunteers attach to, ending in '/'.
    pub url: String,
    /// `log_<host>`: where the scheduler and the daemons write.
    pub log_dir: PathBuf,
}

impl Project {
    pub fn at(name: &str) -> Project {
        let root = Path::new(PROJECTS_DIR).join(name);
        let host = host_name();
        Project {
            name: name.to_string(),
            log_dir: root.join(format!("log_{host}")),
            url: format!("http://127.0.0.1/{name}/"),
            root,
        }
    }

    /// Makes the project from scratch (an earlier one of this name goes).
    pub fn create(name: &str, tree: &Path) -> Result<Project> {
        let project = Project::at(name);
        project.remove()?;
        fs::create_dir_all(PROJECTS_DIR)?;
        let log = Path::new(PROJECTS_DIR).join(format!("{name}.make_project.log"));
        run_logged(
            Command::new(tree.join("tools/make_project"))
                .current_dir(tree)
                .env("PATH", TOOL_PATH)
                .env("USER", "root")
                .args(["--no_query", "--drop_db_first", "--delete_prev_inst"])
                .args(["--srcdir"])
                .arg(tree)
                .args(["--url_base", "http://127.0.0.1/"])
                // The CGI programs log to log_<this>: with another name the
                // scheduler cannot open its log and says the project is down.
                .args(["--project_host", &host_name()])
                .args(["--db_user", DB_USER, "--db_passwd", DB_PASSWORD])
                .arg("--project_root")
                .arg(&project.root)
                .arg(name),
            &log,
        )?;
        project.own()?;
        let include = project.apache_include();
        let _ = fs::remove_file(&include);
        std::os::unix::fs::symlink(project.root.join(format!("{name}.httpd.conf")), &include)?;
        services::reload_web()?;
        Ok(project)
    }

    /// Stops its daemons, drops its database, removes its tree.
    pub fn remove(&self) -> Result<()> {
        if self.root.join("bin/stop").exists() {
            let _ = self.tool("bin/stop", &[]);
        }
        let _ = services::sql(None, &format!("DROP DATABASE IF EXISTS {}", self.name));
        if fs::remove_file(self.apache_include()).is_ok() {
            let _ = services::reload_web();
        }
        match fs::remove_dir_all(&self.root) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(err).with_context(|| format!("cannot remove {}", self.root.display()))
            }
            _ => Ok(()),
        }
    }

    fn apache_include(&self) -> PathBuf {
        PathBuf::from(format!(
            "/etc/apache2/sites-enabled/docker_wrapper_{}.conf",
            self.name
        ))
    }

    /// make_project leaves dirs root-owned with mode 2770, which Apache
    /// cannot enter: the whole tree goes to the web server's user.
    pub fn own(&self) -> Result<()> {
        crate::run::run(
            Command::new("chown")
                .args(["-R", &format!("{WEB_USER}:{WEB_USER}")])
                .arg(&self.root),
        )
    }

    /// Runs a project tool (`bin/xadd`, ...) as the web server's user in the
    /// project's root; fails on a nonzero exit, and returns its output.
    pub fn tool(&self, program: &str, args: &[&str]) -> Result<String> {
        let out = self.tool_output(program, args)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            bail!(
                "{program} {} failed ({}):\n{text}",
                args.join(" "),
                out.status
            );
        }
        Ok(text)
    }

    pub fn tool_output(&self, program: &str, args: &[&str]) -> Result<Output> {
        println!("+ [{}] {program} {}", self.name, args.join(" "));
        Command::new("runuser")
            .args(["-u", WEB_USER, "--"])
            .arg(program)
            .args(args)
            .current_dir(&self.root)
            .env("PATH", TOOL_PATH)
            .env("USER", WEB_USER)
            .env("HOME", &self.root)
            .output()
            .with_context(|| format!("cannot run {program}"))
    }

    /// Adds apps to project.xml and the database (`bin/xadd`).
    pub fn add_apps(&self, apps: &[(&str, &str)]) -> Result<()> {
        let path = self.root.join("project.xml");
        let mut xml = fs::read_to_string(&path)?;
        let entries: String = apps
            .iter()
            .map(|(name, title)| {
                format!(
                    "    <app>\n        <name>{name}</name>\n        <user_friendly_name>{title}</user_friendly_name>\n    </app>\n"
                )
            })
            .collect();
        let end = xml
            .rfind("</boinc>")
            .context("project.xml has no </boinc>")?;
        xml.insert_str(end, &entries);
        fs::write(&path, xml)?;
        self.tool("bin/xadd", &[])?;
        Ok(())
    }

    /// config.xml's daemons: the feeder and transitioner make_project put
    /// there, a sample validator and assimilator per app; no file deleter
    /// (the output files are read after assimilation).
    pub fn set_daemons(&self, apps: &[&str]) -> Result<()> {
        let path = self.root.join("config.xml");
        let xml = fs::read_to_string(&path)?;
        let start = xml
            .find("<daemons>")
            .context("config.xml has no <daemons>")?;
        let end = xml
            .find("</daemons>")
            .context("config.xml has no </daemons>")?;
        let mut daemons = String::from("<daemons>\n");
        for cmd in ["feeder -d 3", "transitioner -d 3"] {
            daemons.push_str(&daemon(cmd, None));
        }
        for app in apps {
            // Two daemons from one program need their own log and pid file,
            // or the second silently does not start.
            daemons.push_str(&daemon(
                &format!("sample_trivial_validator -d 3 --app {app}"),
                Some(&format!("validator_{app}")),
            ));
            daemons.push_str(&daemon(
                &format!("sample_dummy_assimilator -d 3 --app {app}"),
                Some(&format!("assimilator_{app}")),
            ));
        }
        let xml = format!("{}{daemons}  {}", &xml[..start], &xml[end..]);
        fs::write(&path, xml)?;
        Ok(())
    }

    pub fn start_daemons(&self) -> Result<()> {
        self.tool("bin/start", &[])?;
        Ok(())
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.log_dir.join(name)
    }

    /// The project's database (make_project names it after the project).
    pub fn database(&self) -> &str {
        &self.name
    }
}

fn daemon(cmd: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!(
            "    <daemon>\n      <cmd>{cmd}</cmd>\n      <output>{name}.log</output>\n      <pid_file>{name}.pid</pid_file>\n    </daemon>\n"
        ),
        None => format!("    <daemon>\n      <cmd>{cmd}</cmd>\n    </daemon>\n"),
    }
}

pub fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
