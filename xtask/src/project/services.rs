//! The project's database and web server: Debian's MariaDB and Apache with
//! PHP, started without systemd (the machines this runs on have none) and
//! left running for the next project; `stop` ends them.
use crate::run::{output, run};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The MySQL account every project here uses (local connections only).
pub const DB_USER: &str = "dw_boincadm";
pub const DB_PASSWORD: &str = "dw_boincadm";
const APACHE_LOG: &str = "/var/log/apache2/error.log";

pub fn start() -> Result<()> {
    for program in ["mysqld", "apache2ctl", "php"] {
        if !program_exists(program) {
            bail!("{program} is missing: run `bash .ci/setup` (it installs the BOINC server's packages)");
        }
    }
    if !answers(Command::new("mysqladmin").arg("ping")) {
        run(Command::new("service").args(["mariadb", "start"]))
            .context("starting MariaDB (its log: /var/log/mysql/error.log)")?;
        wait_until(
            Duration::from_secs(30),
            "MariaDB (see /var/log/mysql/error.log)",
            || answers(Command::new("mysqladmin").arg("ping")),
        )?;
    }
    sql(
        None,
        &format!(
            "CREATE USER IF NOT EXISTS '{DB_USER}'@'localhost' IDENTIFIED BY '{DB_PASSWORD}'; \
             GRANT ALL PRIVILEGES ON *.* TO '{DB_USER}'@'localhost'; FLUSH PRIVILEGES;"
        ),
    )?;
    // BOINC's scheduler and upload handler are CGI programs; Debian has
    // mod_cgi off.
    if !Path::new("/etc/apache2/mods-enabled/cgi.load").exists() {
        run(Command::new("a2enmod").args(["-q", "cgi"]))?;
    }
    if apache_running() {
        run(Command::new("apache2ctl").arg("graceful"))?;
    } else {
        run(Command::new("apache2ctl").arg("start"))
            .with_context(|| format!("starting Apache (its log: {APACHE_LOG})"))?;
    }
    wait_until(
        Duration::from_secs(30),
        &format!("Apache (see {APACHE_LOG})"),
        || answers(Command::new("curl").args(["-sf", "-o", "/dev/null", "http://127.0.0.1/"])),
    )
}

/// Apache rereads its configuration (a project's include added or removed).
pub fn reload_web() -> Result<()> {
    run(Command::new("apache2ctl").arg("graceful"))
        .with_context(|| format!("reloading Apache (its log: {APACHE_LOG})"))
}

pub fn stop() -> Result<()> {
    if apache_running() {
        run(Command::new("apache2ctl").arg("stop"))?;
    }
    if answers(Command::new("mysqladmin").arg("ping")) {
        run(Command::new("service").args(["mariadb", "stop"]))?;
    }
    Ok(())
}

/// Runs `statements` as MySQL's root (local socket), in `database` if
/// given, and returns the rows, tab-separated.
pub fn sql(database: Option<&str>, statements: &str) -> Result<String> {
    let mut command = Command::new("mysql");
    command.args(["-N", "-B"]);
    if let Some(db) = database {
        command.arg(db);
    }
    command.arg("-e").arg(statements);
    output(&mut command).with_context(|| format!("SQL failed: {statements}"))
}

fn apache_running() -> bool {
    Path::new("/var/run/apache2/apache2.pid").exists()
        && answers(Command::new("curl").args(["-s", "-o", "/dev/null", "http://127.0.0.1/"]))
}

fn answers(command: &mut Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn program_exists(name: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|dir| Path::new(dir).join(name).exists())
}

/// Polls `ready` every half second until it holds or `limit` passes.
pub fn wait_until(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !ready() {
        if Instant::now() >= deadline {
            bail!("{what} did not come up within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}
