//! docker_wrapper: runs a BOINC job in a Docker or Podman container.
mod argv;
mod boinc;
mod check;
mod cli;
mod config;
mod context;
mod engine;
mod host;
mod image;
mod logging;
mod os;
mod outcome;
#[cfg(test)]
mod property_tests;
mod slot;
mod supervise;
mod task;
#[cfg(test)]
mod test_dir;

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;

use boinc::exit_code::WrapperExit;
use boinc::wakeup::Wakeup;
use cli::CliAction;
use config::JobConfig;
use outcome::Outcome;

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args_os().skip(1).collect()) {
        Ok(CliAction::Help) => {
            print!("{}", cli::help_text());
            return ExitCode::SUCCESS;
        }
        Ok(CliAction::Version) => {
            println!("{}", version_line());
            return ExitCode::SUCCESS;
        }
        // Outside any slot, for volunteers and admins: no BOINC client.
        Ok(CliAction::Check) => {
            println!("{}", version_line());
            return if check::run() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
        }
        Ok(CliAction::Run(cli)) => Ok(cli),
        Err(err) => Err(err),
    };
    // Before this, stderr is not yet stderr.txt in a slot.
    if let Err(code) = boinc::init_wrapper() {
        eprintln!("docker_wrapper: cannot attach to the BOINC client (error {code})");
        return ExitCode::from(1);
    }
    logging::init();
    log::info!("{} starting", version_line());
    let cli = match cli {
        Ok(cli) => cli,
        Err(err) => fail(&format!("{err} (see docker_wrapper --help)")),
    };
    let config_path = match config_path(&cli.config_file) {
        Ok(path) => path,
        Err(err) => fail(&format!("{err:#}")),
    };
    let config = match JobConfig::load(&config_path, cli.config_given) {
        Ok((config, warnings)) => {
            warnings.iter().for_each(|w| log::warn!("{w}"));
            config
        }
        Err(err) => fail(&err.to_string()),
    };
    // The library also says standalone when init_data.xml exists but does not
    // parse (e.g. empty): that is a slot with a damaged file, not a plain
    // directory, and reading it gives the error.
    let standalone = boinc::is_standalone() && !std::path::Path::new("init_data.xml").exists();
    logging::set_verbosity(if cli.verbose || standalone {
        2
    } else {
        config.verbose
    });
    log::debug!("{}", config.describe());
    if standalone {
        log::info!("standalone mode (no init_data.xml): image and container are named 'boinc'");
    }
    if cli.sporadic {
        start_sporadic();
    }
    // Lives until the process ends: the library keeps its descriptor.
    let wakeup: &'static Wakeup = match Wakeup::new() {
        Ok(wakeup) => Box::leak(Box::new(wakeup)),
        Err(err) => fail(&format!("cannot create the wake-up pipe: {err}")),
    };
    #[cfg(unix)]
    boinc::notify_status_changes(wakeup);
    let terminated = Arc::new(AtomicBool::new(false));
    #[cfg(unix)]
    for signal in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGQUIT,
    ] {
        let registered = signal_hook::flag::register(signal, Arc::clone(&terminated))
            .and_then(|_| wakeup.writer())
            .and_then(|writer| signal_hook::low_level::pipe::register(signal, writer));
        if let Err(err) = registered {
            log::warn!("cannot handle signal {signal}: {err}");
        }
    }
    let slot = if standalone {
        task::SlotKind::Standalone
    } else {
        task::SlotKind::Client
    };
    match task::run(cli, config, slot, terminated, wakeup) {
        Ok(Outcome::Finished(code)) => finish(code, None),
        Ok(Outcome::Completed { code, message }) => finish(code, Some(&message)),
        Ok(Outcome::RetryLater(retry)) => {
            log::info!(
                "the job asked to be restarted in {} s: {}",
                retry.delay_secs,
                retry.reason
            );
            boinc::temporary_exit(retry.delay_secs as i32, &retry.reason, retry.notice)
        }
        Ok(Outcome::TemporaryExit(reason)) => {
            log::warn!("{reason}; asking the client to retry later");
            boinc::temporary_exit(outcome::RETRY_DELAY_SECS, &reason, false)
        }
        Ok(Outcome::KeepForRestart) | Ok(Outcome::Aborted) => ExitCode::SUCCESS,
        Err(err) => fail(&format!("{err:#}")),
    }
}

/// job.toml may arrive as a BOINC soft-link file (BUDA sends it with the
/// workunit); a missing one is left for the loader to report.
fn config_path(name: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let slot = std::env::current_dir().context("cannot read the current directory")?;
    if std::fs::symlink_metadata(slot.join(name)).is_err() {
        return Ok(name.to_path_buf());
    }
    Ok(slot::files::resolve(&slot, name)?)
}

/// How long to wait for the client to read the final status report.
const FINAL_REPORT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Hands the slot to the client and reports the task finished.
fn finish(code: i32, message: Option<&boinc::FinishMessage>) -> ! {
    hand_over_slot();
    boinc::finish_promptly(code, message, FINAL_REPORT_WAIT)
}

/// Logs the reason and reports the task failed during set-up (a restarted
/// task's job may have run before).
fn fail(message: &str) -> ! {
    log::error!("{message}");
    hand_over_slot();
    boinc::finish(WrapperExit::InitFailure.code())
}

/// Before the client takes the outputs: nothing the job left in a client's
/// slot may lead out of it (a standalone directory is the admin's own).
fn hand_over_slot() {
    let Ok(slot) = std::env::current_dir() else {
        return;
    };
    let init_data = slot.join("init_data.xml");
    if !init_data.exists() {
        return;
    }
    let project_dir = boinc::init_data::InitData::load(&init_data)
        .ok()
        .map(|init| std::path::PathBuf::from(init.project_dir))
        .filter(|dir| !dir.as_os_str().is_empty());
    for refused in slot::handover::clear_slot(&slot, project_dir.as_deref()) {
        log::error!("{refused}");
    }
}

fn start_sporadic() {
    if !boinc::supports_sporadic() {
        fail(&format!(
            "--sporadic needs a BOINC 8 API library; this build uses BOINC {}",
            boinc::library_version()
        ));
    }
    if let Err(code) = boinc::sporadic_dir(".") {
        fail(&format!(
            "cannot create the sporadic-app files (error {code})"
        ));
    }
}

fn version_line() -> String {
    format!(
        "docker_wrapper {} ({}; BOINC API {})",
        env!("CARGO_PKG_VERSION"),
        env!("DOCKER_WRAPPER_REVISION"),
        boinc::library_version()
    )
}
