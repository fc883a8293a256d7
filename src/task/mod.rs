//! One BOINC task from start to end: read the inputs, pick the engine, get
//! the image and the container (`start`, `launch`, `provision`), then hand
//! it to supervision until the job ends.
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::boinc;
use crate::boinc::host_limits;
use crate::boinc::init_data::InitData;
use crate::boinc::wakeup::Wakeup;
use crate::cli::Cli;
use crate::config::JobConfig;
use crate::engine::{self, ContainerEngine, Engine, EngineError, EngineKind, Known};
use crate::image;
use crate::slot::files as slot_files;
use crate::supervise::client::{self, BoincClient};

mod launch;
mod provision;
mod start;
#[cfg(test)]
mod tests;

pub use crate::context::{SlotKind, TaskContext};
use crate::outcome::{Outcome, TaskError};
use start::TaskRun;

/// Runs the task, from reading its inputs to its end.
pub fn run(
    cli: Cli,
    config: JobConfig,
    slot: SlotKind,
    terminated: Arc<AtomicBool>,
    wakeup: &Wakeup,
) -> Result<Outcome, TaskError> {
    let slot_dir = std::env::current_dir().context("cannot read the current directory")?;
    let archive = image_archive(&slot_dir, &config)?;
    let dockerfile = slot_dir.join(&cli.dockerfile);
    if config.image_name.is_none() && archive.is_none() && !dockerfile.is_file() {
        return Err(TaskError::set_up(format!(
            "Dockerfile not found: {} (ship it, or an image archive, with the app version or the workunit)",
            dockerfile.display()
        )));
    }
    let init = init_data(&slot_dir, slot)?;
    if slot == SlotKind::Client && boinc::is_standalone() {
        // init_data.xml reads well, yet the library could not attach to the
        // client (its shared memory): running on would be deaf to suspend,
        // quit and abort.
        return Ok(Outcome::TemporaryExit(
            "the BOINC library could not attach to the client's shared memory".into(),
        ));
    }
    let engine = match pick_engine(&init, &config, slot) {
        Ok(engine) => engine,
        Err(why) => return Ok(Outcome::TemporaryExit(why.to_string())),
    };
    // Before the engine is asked anything: a broken app version fails at
    // once. The flags are read as this engine reads them.
    check_security(&config, engine.kind, &slot_dir)?;
    warn_of_a_replaced_user(&config, &engine, &slot_dir, &cli.dockerfile);
    let ctx = TaskContext {
        container: crate::context::container_name(&init, slot),
        slot_dir,
        slot,
        config,
        cli,
        init,
        archive,
    };
    let engine = match ctx.engine_facts_dir() {
        Some(dir) if std::fs::create_dir_all(&dir).is_ok() => engine.with_facts_dir(&dir),
        _ => engine,
    };
    let facts = match engine_facts(&engine) {
        Ok(known) => known,
        Err(err) => return Ok(Outcome::TemporaryExit(err.to_string())),
    };
    engine.check_host_user();
    let client = BoincClient {
        terminated,
        wakeup,
        timer: client::TimerTicks::new(std::time::Instant::now()),
    };
    let supply = provision::EngineSupply {
        ctx: &ctx,
        engine: &engine,
    };
    let mut facts = Some(facts);
    let mut task = TaskRun::new(&ctx, &engine, &client);
    let result =
        task.start_and_supervise(&mut |task, looked| task.launch(&supply, &mut facts, looked));
    task.settle(result)
}

/// The slot's init_data.xml (made up standalone), within what the host has.
fn init_data(slot_dir: &Path, slot: SlotKind) -> Result<InitData, TaskError> {
    let mut init = match slot {
        SlotKind::Standalone => InitData {
            ncpus: 1.0,
            ..InitData::default()
        },
        SlotKind::Client => {
            InitData::load(&slot_dir.join("init_data.xml")).map_err(anyhow::Error::new)?
        }
    };
    for note in host_limits::clamp(&mut init, &host_limits::Host::measure(slot_dir)) {
        log::warn!("{note}");
    }
    Ok(init)
}

/// The engine's facts, remembered by the host's tasks: no command unless
/// the engine changed. An engine that is down shows here when they are
/// asked, else in the first command that needs the engine.
fn engine_facts(engine: &Engine) -> Result<Known, EngineError> {
    let known = engine.facts(false)?;
    log::info!(
        "using {} {} ({})",
        engine.kind,
        known.facts.version,
        engine.cli().display()
    );
    let source = if known.remembered {
        "remembered"
    } else {
        "asked"
    };
    log::debug!("engine facts ({source}): {}", known.facts);
    Ok(known)
}

fn pick_engine(
    init: &InitData,
    config: &JobConfig,
    slot: SlotKind,
) -> Result<Engine, engine::ConnectError> {
    // Standalone is Podman-first, as a client that names no engine.
    let standalone = slot == SlotKind::Standalone;
    engine::connect(&engine::Request {
        from_client: if standalone {
            None
        } else {
            init.host_info.docker_type.engine_kind()
        },
        wsl_distros: if standalone {
            None
        } else {
            Some(init.host_info.engine_distros())
        },
        timeout: Duration::from_secs(config.command_timeout_secs),
        build_timeout: Duration::from_secs(config.build_timeout_secs),
    })
}

/// Refuses job.toml settings that undo the security defaults, unless
/// `allow_unsafe` says the project means it.
fn check_security(config: &JobConfig, kind: EngineKind, slot_dir: &Path) -> Result<()> {
    if config.allow_unsafe {
        return Ok(());
    }
    let (create, build, mounts) = (&config.create_args, &config.build_args, &config.mounts);
    match engine::unsafe_setting(kind, create, build, mounts, slot_dir) {
        Some(why) => anyhow::bail!("job.toml {why}; refused (set allow_unsafe = true to allow it)"),
        None => Ok(()),
    }
}

/// Images written for the C++ wrapper may need their `USER`, which the
/// job does not get where it runs as the wrapper's user (Docker, the
/// client not root): say so, and which key gives it back.
fn warn_of_a_replaced_user(
    config: &JobConfig,
    engine: &Engine,
    slot_dir: &Path,
    dockerfile: &Path,
) {
    let Some((uid, gid)) = engine.job_user(config.run_as_wrapper_user) else {
        return;
    };
    let Ok(text) = slot_files::read(slot_dir, dockerfile, 1024 * 1024) else {
        return;
    };
    if let Some(user) = image::dockerfile::user(&String::from_utf8_lossy(&text)) {
        log::warn!(
            "the Dockerfile's USER {user} is replaced: the job runs as the wrapper's user {uid}:{gid} \
             (run_as_wrapper_user = false runs it as {user})"
        );
    }
}

/// Archive names looked for when job.toml names none.
const DEFAULT_ARCHIVES: &[&str] = &["image.tar", "image.tar.gz", "image.tgz"];

/// The image archive to load: job.toml's `image_archive` (which must exist),
/// else one of the default names if the slot has it.
fn image_archive(slot_dir: &Path, config: &JobConfig) -> Result<Option<PathBuf>> {
    if let Some(name) = &config.image_archive {
        anyhow::ensure!(
            slot_dir.join(name).exists(),
            "image_archive {name} is not in the slot directory"
        );
        return Ok(Some(PathBuf::from(name)));
    }
    Ok(DEFAULT_ARCHIVES
        .iter()
        .map(PathBuf::from)
        .find(|name| slot_dir.join(name).exists()))
}
