//! The argv of `run -d` (create and start in one command): everything the
//! container gets, built without I/O so every flag can be unit-tested.
use std::path::PathBuf;

use super::flags::{self, Command};
use super::EngineKind;

/// Everything that decides how the task's container is created.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateSpec {
    pub name: String,
    pub image: String,
    pub labels: Vec<(String, String)>,
    /// Host dir mounted read-write at `workdir` (the slot).
    pub slot_dir: PathBuf,
    pub workdir: String,
    /// Host project dir and where it is mounted, when job.toml asks.
    pub project_mount: Option<(PathBuf, String)>,
    /// `mount` entries of job.toml, as `-v` values.
    pub mounts: Vec<String>,
    /// `portmap` entries of job.toml.
    pub portmaps: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The client's proxy settings as variables. Podman passes those of its
    /// own environment on by itself; Docker gets them here.
    pub proxy_env: Vec<(String, String)>,
    /// Whether to ask for the cgroup limits below at all: false where the
    /// engine refused them (see `task/launch.rs`).
    pub resource_limits: bool,
    /// `--pull never`, for engines that know it (see `Facts::knows_pull_never`):
    /// an image that is not there must be reported, not looked for in a registry.
    pub pull_never: bool,
    pub cpus: f64,
    pub memory_bytes: Option<u64>,
    pub cpu_shares: u32,
    pub pids_limit: u32,
    pub network: bool,
    /// Bound of the engine's log file of the container.
    pub log_max_bytes: u64,
    /// A parent cgroup marked idle (background priority), if there is one.
    pub cgroup_parent: Option<String>,
    /// Capabilities given back after dropping all.
    pub cap_add: Vec<String>,
    /// `--user uid:gid`, when the job must run as the wrapper's user.
    pub user: Option<(u32, u32)>,
    /// GPU flags (see `gpu.rs`), empty without a GPU.
    pub gpu_args: Vec<String>,
    /// `create_args` of job.toml, already split into words.
    pub extra_args: Vec<String>,
}

/// Docker refuses memory limits below 6 MiB.
const MIN_MEMORY: u64 = 6 * 1024 * 1024;

/// `run -d`: the engine prints the container's id once it runs.
pub fn run_args(kind: EngineKind, spec: &CreateSpec) -> Vec<String> {
    let mut args: Vec<String> = vec!["run".into(), "-d".into()];
    if spec.pull_never {
        args.extend(["--pull".into(), "never".into()]);
    }
    args.extend(["--name".into(), spec.name.clone()]);
    for (key, value) in &spec.labels {
        args.extend(["--label".into(), format!("{key}={value}")]);
    }
    args.extend([
        "-v".into(),
        format!("{}:{}", spec.slot_dir.display(), spec.workdir),
    ]);
    if let Some((host, guest)) = &spec.project_mount {
        args.extend(["-v".into(), format!("{}:{}", host.display(), guest)]);
    }
    for mount in &spec.mounts {
        args.extend(["-v".into(), mount.clone()]);
    }
    for portmap in &spec.portmaps {
        args.extend(["-p".into(), loopback_portmap(portmap)]);
    }
    let proxy_env = if kind == EngineKind::Docker {
        &spec.proxy_env[..]
    } else {
        &[]
    };
    for (key, value) in spec.env.iter().chain(proxy_env) {
        args.extend(["-e".into(), format!("{key}={value}")]);
    }
    args.extend(resource_limits(spec));
    args.extend(security_options(spec));
    if !spec.network {
        args.extend(["--network".into(), "none".into()]);
    }
    args.extend(low_ports(kind, &spec.extra_args));
    args.extend(log_options(kind, spec.log_max_bytes));
    args.extend(spec.gpu_args.iter().cloned());
    args.extend(spec.extra_args.iter().cloned());
    args.push(spec.image.clone());
    args
}

fn resource_limits(spec: &CreateSpec) -> Vec<String> {
    if !spec.resource_limits {
        return Vec::new();
    }
    let cpus = if spec.cpus > 0.0 { spec.cpus } else { 1.0 };
    let mut args = vec![
        "--cpus".into(),
        format_cpus(cpus),
        // Containers are children of the engine, not of this process, so they
        // would not inherit the client's idle priority: give them the lowest weight.
        "--cpu-shares".into(),
        spec.cpu_shares.to_string(),
        "--pids-limit".into(),
        spec.pids_limit.to_string(),
    ];
    if let Some(parent) = &spec.cgroup_parent {
        args.extend(["--cgroup-parent".into(), parent.clone()]);
    }
    if let Some(bytes) = spec.memory_bytes {
        let bytes = bytes.max(MIN_MEMORY).to_string();
        // Same swap limit as memory: the bound is real, not doubled with swap.
        args.extend([
            "--memory".into(),
            bytes.clone(),
            "--memory-swap".into(),
            bytes,
        ]);
    }
    args
}

/// No capabilities (but those job.toml names) and no privilege gain through
/// setuid binaries: a job needs neither to compute.
fn security_options(spec: &CreateSpec) -> Vec<String> {
    let mut args = vec![
        "--cap-drop".into(),
        "ALL".into(),
        "--security-opt".into(),
        "no-new-privileges".into(),
    ];
    for cap in &spec.cap_add {
        args.extend(["--cap-add".into(), cap.clone()]);
    }
    if let Some((uid, gid)) = spec.user {
        args.extend(["--user".into(), format!("{uid}:{gid}")]);
    }
    args
}

/// Lets any user of the container bind ports below 1024 in its own network
/// namespace, as images written for the C++ wrapper (root with all of the
/// engine's default capabilities) expect of a web server on port 80.
/// Docker does this by itself; Podman 4.3 does not, and with all
/// capabilities dropped the job's root could not bind them. The setting is
/// the namespace's own, so the host's ports are untouched and no capability
/// is given. Left out when `create_args` puts the container into another
/// namespace (host, another container's, a pod's), where the engine would
/// refuse it, or cannot be read (the policy check reports that).
fn low_ports(kind: EngineKind, extra_args: &[String]) -> Vec<String> {
    if kind != EngineKind::Podman {
        return Vec::new();
    }
    let Ok(extra) = flags::parse(kind, Command::Create, extra_args) else {
        return Vec::new();
    };
    let own_namespace = extra.iter().all(|flag| match flag.name {
        "network" | "net" => flag.value.as_deref().is_some_and(|mode| {
            mode.split(',').all(|mode| {
                let name = mode.split_once(':').map_or(mode, |(name, _)| name);
                !matches!(name, "host" | "container" | "ns")
            })
        }),
        "pod" => false,
        _ => true,
    });
    if !own_namespace {
        return Vec::new();
    }
    vec![
        "--sysctl".into(),
        "net.ipv4.ip_unprivileged_port_start=0".into(),
    ]
}

fn format_cpus(cpus: f64) -> String {
    let text = format!("{cpus:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn log_options(kind: EngineKind, max_bytes: u64) -> Vec<String> {
    let mut args = Vec::new();
    if kind == EngineKind::Podman {
        // Podman logs to journald by default, where `logs` is slow and lossy.
        args.extend(["--log-driver".into(), "k8s-file".into()]);
    }
    args.extend(["--log-opt".into(), format!("max-size={max_bytes}")]);
    args
}

/// Publishes on loopback unless the entry names an address itself:
/// "80" -> "127.0.0.1::80", "8080:80" -> "127.0.0.1:8080:80".
pub fn loopback_portmap(entry: &str) -> String {
    if entry.starts_with('[') {
        return entry.to_string();
    }
    match entry.matches(':').count() {
        0 => format!("127.0.0.1::{entry}"),
        1 => format!("127.0.0.1:{entry}"),
        _ => entry.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CreateSpec {
        CreateSpec {
            name: "boinc__p__r".into(),
            image: "img".into(),
            labels: vec![("boinc.result".into(), "r".into())],
            slot_dir: PathBuf::from("/var/lib/boinc/slots/3 x"),
            workdir: "/app".into(),
            project_mount: None,
            mounts: vec![],
            portmaps: vec![],
            env: vec![("ARGS".into(), "a 'b' $(c)".into())],
            proxy_env: vec![("http_proxy".into(), "http://proxy:3128".into())],
            resource_limits: true,
            pull_never: true,
            cpus: 1.0,
            memory_bytes: Some(512 << 20),
            cpu_shares: 2,
            pids_limit: 4096,
            network: true,
            log_max_bytes: 1 << 20,
            cgroup_parent: None,
            cap_add: vec![],
            user: None,
            gpu_args: vec![],
            extra_args: vec![],
        }
    }

    fn pair(args: &[String], flag: &str) -> Vec<String> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .collect()
    }

    #[test]
    fn slot_is_mounted_at_workdir_as_one_argument() {
        let args = run_args(EngineKind::Docker, &spec());
        assert_eq!(pair(&args, "-v"), vec!["/var/lib/boinc/slots/3 x:/app"]);
        assert_eq!(args.last().unwrap(), "img");
        assert_eq!(
            &args[..6],
            ["run", "-d", "--pull", "never", "--name", "boinc__p__r"]
        );
    }

    #[test]
    fn an_engine_without_pull_never_is_not_told_it() {
        let mut s = spec();
        s.pull_never = false;
        let args = run_args(EngineKind::Docker, &s);
        assert_eq!(&args[..4], ["run", "-d", "--name", "boinc__p__r"]);
    }

    #[test]
    fn args_env_is_passed_verbatim() {
        let args = run_args(EngineKind::Podman, &spec());
        assert_eq!(pair(&args, "-e"), vec!["ARGS=a 'b' $(c)"]);
    }

    #[test]
    fn docker_gets_the_proxy_variables_podman_passes_on_itself() {
        let args = run_args(EngineKind::Docker, &spec());
        assert_eq!(
            pair(&args, "-e"),
            vec!["ARGS=a 'b' $(c)", "http_proxy=http://proxy:3128"]
        );
        let args = run_args(EngineKind::Podman, &spec());
        assert!(!args.iter().any(|a| a.contains("proxy")), "{args:?}");
    }

    #[test]
    fn limits_are_always_set() {
        let mut s = spec();
        s.cpus = 0.0;
        s.memory_bytes = Some(1000);
        let args = run_args(EngineKind::Podman, &s);
        assert_eq!(pair(&args, "--cpus"), vec!["1"]);
        assert_eq!(pair(&args, "--cpu-shares"), vec!["2"]);
        assert_eq!(pair(&args, "--pids-limit"), vec!["4096"]);
        assert_eq!(pair(&args, "--memory"), vec![MIN_MEMORY.to_string()]);
        s.cpus = 2.5;
        s.memory_bytes = None;
        let args = run_args(EngineKind::Podman, &s);
        assert_eq!(pair(&args, "--cpus"), vec!["2.5"]);
        assert!(pair(&args, "--memory").is_empty());
    }

    #[test]
    fn limits_the_engine_refused_are_left_out() {
        let mut s = spec();
        s.memory_bytes = Some(1 << 30);
        s.cgroup_parent = Some("/boinc_wrapper".into());
        s.resource_limits = false;
        let args = run_args(EngineKind::Podman, &s);
        for flag in [
            "--cpus",
            "--cpu-shares",
            "--pids-limit",
            "--memory",
            "--memory-swap",
            "--cgroup-parent",
        ] {
            assert!(pair(&args, flag).is_empty(), "{flag} in {args:?}");
        }
        assert_eq!(
            pair(&args, "--cap-drop"),
            vec!["ALL"],
            "security options stay"
        );
    }

    #[test]
    fn security_defaults() {
        let mut s = spec();
        let args = run_args(EngineKind::Docker, &s);
        assert_eq!(pair(&args, "--cap-drop"), vec!["ALL"]);
        assert_eq!(pair(&args, "--security-opt"), vec!["no-new-privileges"]);
        assert!(!args
            .iter()
            .any(|a| a == "--privileged" || a == "--user" || a == "--cap-add"));
        s.cap_add = vec!["CHOWN".into()];
        s.user = Some((1000, 1001));
        let args = run_args(EngineKind::Docker, &s);
        assert_eq!(pair(&args, "--cap-add"), vec!["CHOWN"]);
        assert_eq!(pair(&args, "--user"), vec!["1000:1001"]);
    }

    #[test]
    fn podman_lets_the_job_bind_low_ports_in_its_own_network_only() {
        let sysctl = |kind, extra: &[&str]| {
            let mut s = spec();
            s.extra_args = extra.iter().map(|a| a.to_string()).collect();
            pair(&run_args(kind, &s), "--sysctl")
        };
        let low = vec!["net.ipv4.ip_unprivileged_port_start=0".to_string()];
        assert_eq!(sysctl(EngineKind::Podman, &[]), low);
        assert_eq!(sysctl(EngineKind::Podman, &["--network", "none"]), low);
        assert_eq!(sysctl(EngineKind::Podman, &["--net=bridge"]), low);
        // Docker sets it itself.
        assert!(sysctl(EngineKind::Docker, &[]).is_empty());
        for shared in [
            &["--network", "host"][..],
            &["--net=container:other"],
            &["--network", "ns:/proc/1/ns/net"],
            &["--pod", "p"],
            &["--no-such-flag"],
        ] {
            assert!(sysctl(EngineKind::Podman, shared).is_empty(), "{shared:?}");
        }
    }

    #[test]
    fn podman_logs_to_a_file() {
        let podman = run_args(EngineKind::Podman, &spec());
        assert_eq!(pair(&podman, "--log-driver"), vec!["k8s-file"]);
        let docker = run_args(EngineKind::Docker, &spec());
        assert!(pair(&docker, "--log-driver").is_empty());
    }

    #[test]
    fn ports_are_published_on_loopback() {
        assert_eq!(loopback_portmap("80"), "127.0.0.1::80");
        assert_eq!(loopback_portmap("8080:80"), "127.0.0.1:8080:80");
        assert_eq!(loopback_portmap("8080:80/udp"), "127.0.0.1:8080:80/udp");
        assert_eq!(loopback_portmap("0.0.0.0:8080:80"), "0.0.0.0:8080:80");
    }

    #[test]
    fn optional_mounts_network_and_extra_args() {
        let mut s = spec();
        s.project_mount = Some((PathBuf::from("/p"), "/project".into()));
        s.mounts = vec!["/data:/data:ro".into()];
        s.network = false;
        s.extra_args = vec!["--label".into(), "x=y z".into()];
        let args = run_args(EngineKind::Docker, &s);
        assert_eq!(
            pair(&args, "-v")[1..],
            ["/p:/project".to_string(), "/data:/data:ro".to_string()]
        );
        assert_eq!(pair(&args, "--network"), vec!["none"]);
        assert!(args.windows(2).any(|w| w == ["--label", "x=y z"]));
        assert_eq!(args.last().unwrap(), "img");
    }
}
