//! A new container for the task: its image (named at once; loaded or built
//! when the engine says it is missing), the explicit steps its
//! specification needs (a host port for web graphics, the output files
//! bind mounts need, the engine's view of the paths), and the
//! specification itself, built without side effects. How the container is
//! then created, and what a refusal leads to, is `launch.rs`.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::boinc;
use crate::context::TaskContext;
use crate::engine::{CreateSpec, Engine, EngineError, Facts};
use crate::image::{CacheLimits, ImageCache, ImageError, ImageSource};
use crate::outcome::{Outcome, TaskError};
use crate::slot::files as slot_files;
use crate::supervise::client::{self, Client};

/// What a new container needs besides container commands: its image, and
/// what its specification needs of the host. A real task gets them from the
/// engine and the image cache (`EngineSupply`); unit tests from a fake.
pub trait Supply {
    /// The image to create the container from, named without asking the
    /// engine whether it has it.
    fn image(&self) -> Result<String, TaskError>;
    /// Loads or builds the image after the engine said it has no such
    /// image.
    fn make_image(&self, client: &dyn Client) -> Result<Made, TaskError>;
    /// The steps before the specification, for the engine as `facts` describe it.
    fn prepare(&self, image: String, facts: &Facts) -> Result<Prepared, TaskError>;
    /// The container runs from `image`: the image's bookkeeping. `found`:
    /// the engine had it (it was not made in this start).
    fn started(&self, image: &str, found: bool);
}

/// What making the image came to.
pub enum Made {
    Image(String),
    /// The client (or a signal) interrupted the wait or the build: the
    /// task ends so.
    Interrupted(Outcome),
}

/// The real supply: the task's engine and the project's image cache.
pub struct EngineSupply<'a> {
    pub ctx: &'a TaskContext,
    pub engine: &'a Engine,
}

impl EngineSupply<'_> {
    fn source(&self) -> ImageSource<'_> {
        let config = &self.ctx.config;
        let (dockerfile, build_args) = (&self.ctx.cli.dockerfile, &config.build_args[..]);
        match (&config.image_name, &self.ctx.archive) {
            (Some(name), _) => ImageSource::Named {
                name,
                dockerfile,
                build_args,
            },
            (None, Some(archive)) => ImageSource::Archive(archive),
            (None, None) => ImageSource::Dockerfile {
                dockerfile,
                build_args,
            },
        }
    }

    fn cache(&self) -> ImageCache<'_> {
        let config = &self.ctx.config;
        let limits = CacheLimits {
            max_images: config.image_cache_max_images as usize,
            max_bytes: config.image_cache_max_mb.saturating_mul(1024 * 1024),
        };
        ImageCache::new(
            self.engine,
            self.ctx.project_name(),
            &self.ctx.image_state_dir(),
            limits,
            Duration::from_secs(config.build_timeout_secs),
        )
    }
}

impl Supply for EngineSupply<'_> {
    fn image(&self) -> Result<String, TaskError> {
        self.cache()
            .reference(&self.ctx.slot_dir, self.source())
            .map_err(image_error)
    }

    fn make_image(&self, client: &dyn Client) -> Result<Made, TaskError> {
        let mut interrupted = None;
        let result = {
            let mut cancel = || {
                interrupted = client::interruption(client);
                interrupted.is_some()
            };
            self.cache()
                .ensure_source(&self.ctx.slot_dir, self.source(), &mut cancel)
        };
        match result {
            Ok(Some(image)) => Ok(Made::Image(image)),
            Ok(None) => Ok(Made::Interrupted(
                interrupted.unwrap_or(Outcome::KeepForRestart),
            )),
            Err(err) => Err(image_error(err)),
        }
    }

    fn prepare(&self, image: String, facts: &Facts) -> Result<Prepared, TaskError> {
        Ok(prepare(self.ctx, self.engine, image, facts)?)
    }

    fn started(&self, image: &str, found: bool) {
        if found {
            self.cache().found(self.source(), image);
        }
        let ctx = self.ctx;
        crate::image::sweep::after_start(self.engine, &ctx.init, image, ctx.is_standalone());
    }
}

/// An image that cannot be had: an engine that is busy or down makes a
/// temporary exit; anything else fails the task.
fn image_error(err: ImageError) -> TaskError {
    match err {
        ImageError::Busy(why) => TaskError::EngineLost(why),
        ImageError::Engine(EngineError::Failed { detail, .. }) => {
            TaskError::set_up(format!("image build failed: {detail}"))
        }
        ImageError::Engine(err) => err.into(),
        ImageError::Inputs(why) => TaskError::set_up(format!("cannot build the image: {why}")),
    }
}

/// What the container's specification needs from the host and the engine,
/// gathered (with its side effects) before the specification is built.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub image: String,
    /// The slot as the engine sees it.
    pub slot_dir: PathBuf,
    /// The project dir as the engine sees it, when job.toml mounts it.
    pub project_dir: Option<PathBuf>,
    /// Mounts of the slot's linked input and output files.
    pub linked_file_mounts: Vec<String>,
    /// Loopback host port for the job's web graphics, when it has some.
    pub web_graphics_port: Option<u16>,
    pub cgroup_parent: Option<String>,
    /// Whether the engine knows `--pull never`.
    pub pull_never: bool,
    pub user: Option<(u32, u32)>,
    pub gpu_args: Vec<String>,
}

/// Allocates the web graphics port, creates the output files and works
/// out what the flags depend on.
fn prepare(ctx: &TaskContext, engine: &Engine, image: String, facts: &Facts) -> Result<Prepared> {
    let engine_path =
        |host: &std::path::Path| -> Result<PathBuf> { Ok(engine.path_in_engine(host)?) };
    let project_dir = match &ctx.config.project_dir_mount {
        Some(_) => Some(engine_path(&ctx.project_dir()?)?),
        None => None,
    };
    // Images that resolve the client's link files themselves (as the C++
    // wrapper left them) must see the link text, not the file.
    let linked_file_mounts = if ctx.config.mount_linked_files {
        linked_file_mounts(ctx, &engine_path)?
    } else {
        Vec::new()
    };
    Ok(Prepared {
        image,
        slot_dir: engine_path(&ctx.slot_dir)?,
        project_dir,
        linked_file_mounts,
        web_graphics_port: ctx
            .config
            .web_graphics_guest_port
            .and_then(web_graphics_port),
        cgroup_parent: ctx
            .config
            .idle_priority
            .then(|| engine.idle_cgroup_parent(facts))
            .flatten(),
        pull_never: facts.knows_pull_never(),
        user: engine.job_user(ctx.config.run_as_wrapper_user),
        gpu_args: gpu_args(ctx, engine)?,
    })
}

/// The flags that give the job its GPU. A job that asks for one never runs
/// without it: one that cannot be passed in ends the task.
fn gpu_args(ctx: &TaskContext, engine: &Engine) -> Result<Vec<String>> {
    if !ctx.config.use_gpu {
        return Ok(Vec::new());
    }
    let (gpu_type, device) = (&ctx.init.gpu_type, ctx.init.gpu_device_num);
    engine.gpu_args(gpu_type, device).map_err(|why| {
        anyhow::anyhow!(
            "job.toml sets use_gpu = true, and the GPU the client assigned (type {:?}, device {device}) cannot be given to the container: {why}; the job is not run without it",
            gpu_type
        )
    })
}

fn web_graphics_port(guest: u16) -> Option<u16> {
    match boinc::free_port(false) {
        Ok(host) => {
            log::info!("web graphics: host port {host} -> container port {guest}");
            Some(host)
        }
        Err(code) => {
            log::warn!("no free port for web graphics (error {code}); continuing without");
            None
        }
    }
}

/// The client leaves input and output files in the slot as soft-link
/// files (or symlinks) unless the app version asks for copies; a job
/// would read the link text. Mount each real file at its open name:
/// inputs read-only, outputs read-write into the project file the client
/// uploads (created empty first, as bind mounts need an existing source).
fn linked_file_mounts(
    ctx: &TaskContext,
    engine_path: &dyn Fn(&std::path::Path) -> Result<PathBuf>,
) -> Result<Vec<String>> {
    let linked = slot_files::linked_files(&ctx.slot_dir)?;
    let mut mounts = Vec::new();
    for file in linked {
        let guest = format!("{}/{}", ctx.config.workdir.trim_end_matches('/'), file.name);
        let source = engine_path(&file.target)?;
        if file.name.contains(':') || source.to_string_lossy().contains(':') {
            log::warn!(
                "{}: a ':' in the path cannot be mounted; the job sees the link file",
                file.name
            );
            continue;
        }
        let mode = if file.target.exists() {
            "ro"
        } else {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&file.target)
                .with_context(|| format!("cannot create output file {}", file.target.display()))?;
            "rw"
        };
        log::debug!("{} -> {} ({mode})", file.name, file.target.display());
        mounts.push(format!("{}:{guest}:{mode}", source.display()));
    }
    Ok(mounts)
}

/// The container's specification: a function of the task and what was
/// prepared for it, nothing else.
pub fn container_spec(ctx: &TaskContext, prepared: &Prepared, host_cpus: f64) -> CreateSpec {
    let config = &ctx.config;
    let mut mounts = config.mounts.clone();
    mounts.extend(prepared.linked_file_mounts.iter().cloned());
    let mut portmaps = config.portmaps.clone();
    if let (Some(host), Some(guest)) = (prepared.web_graphics_port, config.web_graphics_guest_port)
    {
        portmaps.push(format!("127.0.0.1:{host}:{guest}"));
    }
    CreateSpec {
        name: ctx.container.clone(),
        image: prepared.image.clone(),
        labels: ctx.labels(),
        slot_dir: prepared.slot_dir.clone(),
        workdir: config.workdir.clone(),
        project_mount: prepared
            .project_dir
            .clone()
            .zip(config.project_dir_mount.clone()),
        mounts,
        portmaps,
        env: vec![("ARGS".to_string(), ctx.cli.job_args.join(" "))],
        proxy_env: ctx.init.proxy_env(),
        resource_limits: true,
        pull_never: prepared.pull_never,
        // Docker refuses more CPUs than the host has; the client's ncpus
        // can exceed them (a volunteer's <ncpus> override).
        cpus: ctx.init.ncpus.min(host_cpus),
        memory_bytes: (ctx.init.rsc_memory_bound > 0.0).then_some(ctx.init.rsc_memory_bound as u64),
        cpu_shares: config.cpu_shares,
        pids_limit: config.pids_limit,
        network: config.network,
        log_max_bytes: 64 * 1024 * 1024,
        cgroup_parent: prepared.cgroup_parent.clone(),
        cap_add: config.cap_add.clone(),
        user: prepared.user,
        gpu_args: prepared.gpu_args.clone(),
        extra_args: config.create_args.clone(),
    }
}

pub fn host_cpus() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}
