//! Flags in job.toml's `create_args`/`build_args` (and `mount` entries)
//! that would undo the wrapper's security defaults on a volunteer's host.
//! They are refused unless job.toml sets `allow_unsafe = true`.
//!
//! The words are read with the engine's own grammar (`flags.rs`), so every
//! spelling of a flag gets the same verdict; the verdict depends on what
//! the flag does, and a flag the tables do not know is refused.
use std::path::Path;

use super::flags::{self, Command, Flag};
use super::mount_policy;
use super::EngineKind;

/// The first of job.toml's settings that would undo the security defaults
/// on `kind`, named by its key (`create_args: ...`); None when all are safe.
/// The flags are read as this engine reads them.
pub fn unsafe_setting(
    kind: EngineKind,
    create_args: &[String],
    build_args: &[String],
    mounts: &[String],
    base: &Path,
) -> Option<String> {
    unsafe_args(kind, Command::Create, create_args, base)
        .map(|why| format!("create_args: {why}"))
        .or_else(|| {
            unsafe_args(kind, Command::Build, build_args, base)
                .map(|why| format!("build_args: {why}"))
        })
        .or_else(|| {
            mounts
                .iter()
                .find_map(|m| unsafe_mount(m, base))
                .map(|why| format!("mount {why}"))
        })
}

/// Why `args` (already split into words) are unsafe for `kind`'s `command`,
/// or None. `base` is the slot: relative paths are read from there.
pub fn unsafe_args(
    kind: EngineKind,
    command: Command,
    args: &[String],
    base: &Path,
) -> Option<String> {
    let parsed = match flags::parse(kind, command, args) {
        Ok(parsed) => parsed,
        Err(err) => return Some(err.to_string()),
    };
    parsed
        .iter()
        .find_map(|flag| judge(command, flag, base).map(|why| format!("'{}' {why}", flag.spelled)))
}

/// Why a job.toml `mount` entry is unsafe, or None.
pub fn unsafe_mount(spec: &str, base: &Path) -> Option<String> {
    mount_policy::unsafe_volume(spec, base).map(|why| format!("'{spec}': {why}"))
}

/// Capabilities that amount to the host: administration, modules, raw I/O,
/// reading any file by handle (the "shocker" escape), tracing the engine.
const HOST_CAPABILITIES: &[&str] = &[
    "ALL",
    "SYS_ADMIN",
    "SYS_MODULE",
    "SYS_RAWIO",
    "DAC_READ_SEARCH",
    "SYS_PTRACE",
    "SYS_BOOT",
];

/// Whether the capability `name` (any case, with or without `CAP_`) is one
/// of those; job.toml's `cap_add` refuses them too.
pub fn is_host_capability(name: &str) -> bool {
    let upper = name.trim().to_ascii_uppercase();
    HOST_CAPABILITIES.contains(&upper.trim_start_matches("CAP_"))
}

fn judge(command: Command, flag: &Flag, base: &Path) -> Option<String> {
    let value = flag.value.as_deref().unwrap_or("");
    let lower = value.to_ascii_lowercase();
    let create = command == Command::Create;
    let why: &str = match flag.name {
        "privileged" if flag.is_on() => "gives the container full control of the host",
        "rootfs" if flag.is_on() => "runs a host directory as the container's root file system",
        "use-api-socket" if flag.is_on() => "gives the job the engine's API socket",
        "env-host" if flag.is_on() => "copies the wrapper's whole environment into the container",
        "publish-all" if flag.is_on() => "publishes ports on all of the host's interfaces (use portmap)",
        "oom-kill-disable" if flag.is_on() => "keeps the job from being killed at its memory limit",
        "network" | "net" => return network(&lower).map(String::from),
        "pid" | "ipc" | "uts" | "userns" | "cgroupns" => return namespace(&lower).map(String::from),
        "cap-add" => {
            if !lower.split(',').any(is_host_capability) {
                return None;
            }
            "gives the job capabilities that amount to the host (name narrower ones in job.toml's cap_add)"
        }
        "security-opt" => {
            let accepted = matches!(lower.as_str(), "no-new-privileges" | "no-new-privileges=true" | "no-new-privileges:true")
                || lower.starts_with("mask=");
            if accepted {
                return None;
            }
            "replaces a kernel protection (seccomp, AppArmor, SELinux, masked paths) or no-new-privileges"
        }
        "device" | "device-cgroup-rule" | "gpus" => "passes host devices the client did not assign",
        "volumes-from" => "mounts another container's volumes",
        "volume" => return mount_policy::unsafe_volume(value, base),
        "mount" => return mount_policy::unsafe_mount_flag(value, base),
        "env-file" | "label-file" => {
            let inside = crate::slot::host_path::resolve(base, Path::new(value))
                .ok()
                .zip(crate::slot::host_path::resolve(base, Path::new(".")).ok())
                .is_some_and(|(file, slot)| file.starts_with(slot));
            if inside {
                return None;
            }
            "reads a host file outside the slot"
        }
        "cidfile" | "pidfile" | "conmon-pidfile" | "iidfile" | "logfile" | "output" => "writes a file on the host",
        "file" | "ignorefile" | "authfile" | "cert-dir" | "decryption-key" | "init-path" | "build-context" | "secret"
        | "ssh" | "cpp-flag" | "sign-by" | "hostuser" => "reads files or secrets of the host",
        "hooks-dir" => "runs host programs as the engine's user",
        "runtime" | "runtime-flag" => "changes the container runtime",
        "seccomp-policy" => "takes the seccomp profile from the image",
        "annotation" if create => "sets runtime annotations, which can change how the container runs",
        "pod" | "pod-id-file" | "requires" => "ties the container to other containers and their namespaces",
        "volume-driver" => "mounts through a volume plugin of the host",
        "name" => "renames the container the wrapper must find",
        "tag" | "manifest" => "names images outside the wrapper's cache",
        "publish" => {
            if has_address(value) {
                return None;
            }
            "publishes a port on all of the host's interfaces (give an address, e.g. 127.0.0.1:8080:80)"
        }
        "isolation" => {
            if matches!(lower.as_str(), "" | "default" | "oci") {
                return None;
            }
            "runs the build with less isolation than the engine's default"
        }
        "cgroups" => {
            if lower == "enabled" {
                return None;
            }
            "takes the container out of its own cgroup, and out of its limits"
        }
        "oom-score-adj" => {
            if value.trim().parse::<i64>().is_ok_and(|n| n >= 0) {
                return None;
            }
            "makes the host's OOM killer spare the job over the volunteer's programs"
        }
        "memory" | "memory-swap" | "kernel-memory" | "cpus" | "cpu-quota" | "cpu-period" | "cpu-rt-period"
        | "cpu-rt-runtime" | "pids-limit" | "cgroup-parent" | "cgroup-conf"
            if create =>
        {
            "overrides a limit the wrapper sets (pids_limit, cpu_shares and idle_priority are job.toml keys)"
        }
        "cpu-shares" if create => "overrides the wrapper's CPU weight (use job.toml's cpu_shares)",
        "log-driver" | "log-opt" if create => "overrides the wrapper's bounded container log",
        _ => return None,
    };
    Some(why.to_string())
}

/// Network modes that reach the host or another container's network.
fn network(value: &str) -> Option<&'static str> {
    for mode in value.split(',') {
        let (name, options) = mode.split_once(':').unwrap_or((mode, ""));
        match name {
            "host" => return Some("shares the host's network with the job"),
            "container" | "ns" => return Some("joins a network namespace the job must not see"),
            "slirp4netns" if options.contains("allow_host_loopback=true") => {
                return Some("lets the job reach the host's loopback services")
            }
            "pasta" if !options.is_empty() => {
                return Some("passes options to pasta, which can open the host to the job")
            }
            _ => {}
        }
    }
    None
}

/// Namespace modes: the container's own, or none; never the host's, another
/// container's or a namespace path.
fn namespace(value: &str) -> Option<&'static str> {
    let (mode, _) = value.split_once(':').unwrap_or((value, ""));
    match mode {
        "" | "private" | "none" | "shareable" | "auto" | "keep-id" | "nomap" => None,
        "host" => Some("shares a host namespace with the job"),
        _ => Some("joins a namespace the job must not see (only private ones are accepted)"),
    }
}

/// A port spec with an explicit host address (`IP:host:container`, `[v6]:...`).
fn has_address(spec: &str) -> bool {
    spec.starts_with('[') || spec.matches(':').count() >= 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use EngineKind::{Docker, Podman};

    fn words(text: &str) -> Vec<String> {
        crate::argv::split_words(text).unwrap()
    }

    fn slot() -> PathBuf {
        PathBuf::from("/nonexistent-slot/slots/1")
    }

    fn verdict(kind: EngineKind, command: Command, text: &str) -> Option<String> {
        unsafe_args(
            kind,
            command,
            &words(&format!("--label a=b {text} --rm")),
            &slot(),
        )
    }

    /// Refused on both engines' `create`.
    const REFUSED: &[&str] = &[
        "--privileged",
        "--privileged=true",
        "--privileged=1",
        "--network host",
        "--network=host",
        "--net=host",
        "--network HOST",
        "--network container:other",
        "--network=container:other",
        "--network ns:/proc/1/ns/net",
        "--pid host",
        "--pid=host",
        "--pid container:other",
        "--ipc=host",
        "--ipc container:other",
        "--uts=host",
        "--userns=host",
        "--cgroupns=host",
        "--cap-add ALL",
        "--cap-add=all",
        "--cap-add=All",
        "--cap-add=SYS_ADMIN",
        "--cap-add cap_sys_admin",
        "--cap-add NET_ADMIN,SYS_ADMIN",
        "--cap-add DAC_READ_SEARCH",
        "--cap-add=sys_module",
        "--security-opt seccomp=unconfined",
        "--security-opt=seccomp=unconfined",
        "--security-opt seccomp:unconfined",
        "--security-opt seccomp=/tmp/permissive.json",
        "--security-opt apparmor=unconfined",
        "--security-opt apparmor:unconfined",
        "--security-opt label=disable",
        "--security-opt label:disable",
        "--security-opt label=type:spc_t",
        "--security-opt no-new-privileges=false",
        "--security-opt systempaths=unconfined",
        "--device /dev/sda",
        "--device=/dev/mem",
        "--device-cgroup-rule 'a *:* rwm'",
        "--volumes-from other",
        "-v /:/host",
        "-v/:/host",
        "-v=/:/host",
        "-vX:Y -v /etc:/e",
        "--volume=/etc:/etc2",
        "--volume /.:/x",
        "-v /proc/self/root:/x",
        "-v //etc:/x",
        "-v /etc/../etc:/x",
        "-v /etc/shadow:/s:ro",
        "-v /var/run/docker.sock:/var/run/docker.sock",
        "-itv /:/x",
        "-itv/:/x",
        "--mount type=bind,source=/,target=/host",
        "--mount=type=bind,src=/etc,dst=/e",
        "--mount type=volume,dst=/x,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=/",
        "--env-file /etc/shadow",
        "--label-file=/etc/passwd",
        "--cidfile /etc/cron.d/x",
        "--name other",
        "--memory 100g",
        "-m=100g",
        "--memory-swap -1",
        "--cpus 64",
        "--pids-limit -1",
        "-c 1024",
        "--cgroup-parent /",
        "--oom-kill-disable",
        "--oom-score-adj -1000",
        "--log-opt max-size=100g",
        "--log-driver=none",
        "-p 8080:80",
        "--publish=80",
        "-P",
        "-itP",
        "--bogus-flag",
        "--Privileged",
        "-Z",
        "busybox",
        "-- sh",
    ];

    /// Accepted on both engines' `create`.
    const ACCEPTED: &[&str] = &[
        "",
        "--env A=B",
        "-e A=B",
        "-eA=B",
        "--env=A=B",
        "--label x=y",
        "-l x=y",
        "--tmpfs /tmp",
        "--tmpfs=/scratch:size=100m",
        "--add-host a:127.0.0.1",
        "-v /opt/data:/data:ro",
        "-v myvolume:/data",
        "--volume /data",
        "--mount type=bind,source=/opt/data,target=/d,readonly",
        "--mount type=tmpfs,destination=/scratch",
        "--cap-add NET_BIND_SERVICE",
        "--cap-add=chown",
        "--cap-drop ALL",
        "--shm-size 1g",
        "--network none",
        "--network=bridge",
        "--network mynet",
        "--ipc=private",
        "--ipc none",
        "--pid=private",
        "--cgroupns private",
        "--security-opt no-new-privileges",
        "--security-opt=no-new-privileges:true",
        "--privileged=false",
        "--oom-kill-disable=false",
        "--oom-score-adj 500",
        "-p 127.0.0.1:8080:80",
        "--publish=[::1]:8080:80",
        "--cpuset-cpus 0",
        "--ulimit nofile=1024:2048",
        "--sysctl net.ipv4.ip_forward=0",
        "--user 1000:1000",
        "-u 0",
        "-w /work",
        "--entrypoint /bin/sh",
        "--init",
        "-it",
        "--read-only",
        "--hostname job",
        "--dns 1.1.1.1",
        "--stop-timeout 30",
        "--memory-reservation 100m",
        "--restart no",
        "--group-add 100",
    ];

    #[test]
    fn dangerous_create_flags_are_refused_on_both_engines() {
        for kind in [Docker, Podman] {
            for bad in REFUSED {
                let why = verdict(kind, Command::Create, bad);
                assert!(why.is_some(), "{kind:?}: '{bad}' was allowed");
            }
        }
    }

    #[test]
    fn ordinary_create_flags_pass_on_both_engines() {
        for kind in [Docker, Podman] {
            for good in ACCEPTED {
                assert_eq!(
                    verdict(kind, Command::Create, good),
                    None,
                    "{kind:?}: '{good}'"
                );
            }
        }
    }

    #[test]
    fn podman_only_flags() {
        for bad in [
            "--rootfs",
            "--env-host",
            "--conmon-pidfile /etc/x",
            "--pidfile=/etc/x",
            "--pod other",
            "--cgroups disabled",
            "--cgroups=no-conmon",
            "--cgroup-conf memory.max=max",
            "--seccomp-policy image",
            "--init-path /bin/sh",
            "--annotation run.oci.keep_original_groups=1",
            "--secret mysecret",
            "--network slirp4netns:allow_host_loopback=true",
            "--network pasta:--map-gw",
            "--userns=ns:/proc/1/ns/user",
            "--security-opt unmask=ALL",
            "--mount type=glob,src=/etc/*,dst=/x",
        ] {
            assert!(
                verdict(Podman, Command::Create, bad).is_some(),
                "podman: '{bad}' was allowed"
            );
        }
        for good in [
            "--userns keep-id",
            "--userns=auto",
            "--network slirp4netns",
            "--network pasta",
            "--tz UTC",
            "--cgroups enabled",
            "--security-opt mask=/x",
        ] {
            assert_eq!(
                verdict(Podman, Command::Create, good),
                None,
                "podman: '{good}'"
            );
        }
        // Docker does not know them: refused as unknown.
        assert!(verdict(Docker, Command::Create, "--tz UTC")
            .unwrap()
            .contains("'--tz'"));
    }

    #[test]
    fn docker_only_flags() {
        for bad in [
            "--use-api-socket",
            "--gpus all",
            "--runtime runc",
            "--volume-driver x",
            "--net-alias=a --net host",
        ] {
            assert!(
                verdict(Docker, Command::Create, bad).is_some(),
                "docker: '{bad}' was allowed"
            );
        }
        assert_eq!(
            verdict(Docker, Command::Create, "--domainname example.org"),
            None
        );
    }

    #[test]
    fn build_flags() {
        for kind in [Docker, Podman] {
            for bad in [
                "--network host",
                "--net=host -t x",
                "-t other:tag",
                "--tag=boinc_wrapper/other:1",
                "-f /etc/shadow",
                "--iidfile /etc/x",
                "--security-opt seccomp=unconfined",
                "--bogus",
            ] {
                assert!(
                    verdict(kind, Command::Build, bad).is_some(),
                    "{kind:?} build: '{bad}' was allowed"
                );
            }
            for good in [
                "--build-arg X=1",
                "--network none",
                "--no-cache",
                "--pull",
                "--memory 1g",
                "-c 512",
                "--label a=b",
                "--target final",
            ] {
                assert_eq!(
                    verdict(kind, Command::Build, good),
                    None,
                    "{kind:?} build: '{good}'"
                );
            }
        }
        for bad in [
            "-v /:/x",
            "--volume=/etc:/e",
            "--build-context x=/etc",
            "--secret id=s,src=/etc/shadow",
            "--ssh default",
            "--hooks-dir /tmp",
            "-o type=local,dest=/etc",
            "--isolation chroot",
            "--userns host",
            "--pid=/proc/1/ns/pid",
            "--cap-add all",
            "--device /dev/kvm",
            "--runtime-flag debug",
            "--logfile /etc/x",
        ] {
            assert!(
                verdict(Podman, Command::Build, bad).is_some(),
                "podman build: '{bad}' was allowed"
            );
        }
        for good in [
            "--pull=always",
            "--layers",
            "--format docker",
            "-D",
            "--isolation oci",
            "--squash",
            "-v /opt/cache:/cache",
        ] {
            assert_eq!(
                verdict(Podman, Command::Build, good),
                None,
                "podman build: '{good}'"
            );
        }
    }

    #[test]
    fn messages_name_the_flag_as_written() {
        let why = verdict(Docker, Command::Create, "-itv/:/host").unwrap();
        assert!(why.starts_with("'-itv/:/host'"), "{why}");
        let why = verdict(Podman, Command::Create, "--cap-add=all").unwrap();
        assert!(why.starts_with("'--cap-add=all'"), "{why}");
        let why = verdict(Podman, Command::Create, "--frobnicate").unwrap();
        assert!(
            why.contains("'--frobnicate'") && why.contains("podman create"),
            "{why}"
        );
    }

    #[test]
    fn every_flag_the_policy_names_exists_in_a_table() {
        let src = include_str!("policy.rs");
        let body = &src[src.find("fn judge(").unwrap()..src.find("/// Network modes").unwrap()];
        for quoted in body.split('"').skip(1).step_by(2) {
            if quoted.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                && quoted.len() > 1
                && !["no-new-privileges", "default", "oci", "enabled", "private"].contains(&quoted)
            {
                let known = [Docker, Podman].iter().any(|&k| {
                    flags::knows(k, Command::Create, quoted)
                        || flags::knows(k, Command::Build, quoted)
                });
                assert!(known, "the policy names --{quoted}, which no table has");
            }
        }
    }

    #[test]
    fn mount_entries() {
        for bad in [
            "/:/host",
            "/etc/:/x:ro",
            "/.:/x",
            "/proc/self/root:/x",
            "/etc/shadow:/s",
            "//etc:/x",
            "/etc/../etc:/x",
        ] {
            assert!(unsafe_mount(bad, &slot()).is_some(), "{bad}");
        }
        assert!(unsafe_mount("/data/ref:/ref:ro", &slot()).is_none());
    }
}
