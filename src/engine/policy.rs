//! Flags in job.toml's `create_args`/`build_args` (and `mount` entries)
//! that would undo the wrapper's security defaults on a volunteer's host.
//! They are refused unless job.toml sets `allow_unsafe = true`.

/// Why `args` is unsafe, or None. `args` are already split into words.
pub fn unsafe_arg(args: &[String]) -> Option<String> {
    let mut words = args.iter().map(String::as_str).peekable();
    while let Some(word) = words.next() {
        let (flag, inline) = match word.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
            _ => (word, None),
        };
        let takes_value = VALUE_FLAGS.contains(&flag);
        let value = if takes_value { inline.or_else(|| words.next().map(String::from)) } else { None };
        if let Some(why) = judge(flag, value.as_deref()) {
            return Some(format!("'{}' {why}", shown(flag, value.as_deref())));
        }
    }
    None
}

/// A `-v`/`mount` spec whose host side is the host's root or a system directory.
pub fn unsafe_mount(spec: &str) -> Option<String> {
    let source = spec.split(':').next().unwrap_or("");
    let source = source.trim_end_matches('/');
    let system = ["", "/etc", "/proc", "/sys", "/dev", "/boot", "/root", "/var/run", "/run", "/var/lib/docker", "/var/lib/containers"];
    let docker_socket = spec.contains("docker.sock") || spec.contains("podman.sock");
    (system.contains(&source) || docker_socket)
        .then(|| format!("mount '{spec}' exposes the host's {} to the job", if source.is_empty() { "/" } else { source }))
}

const VALUE_FLAGS: &[&str] = &[
    "--network", "--net", "--pid", "--ipc", "--uts", "--userns", "--cgroupns", "--cap-add", "--security-opt",
    "--device", "-v", "--volume", "--mount", "--device-cgroup-rule", "--volumes-from",
];

fn judge(flag: &str, value: Option<&str>) -> Option<&'static str> {
    let value = value.unwrap_or("").to_ascii_lowercase();
    match flag {
        "--privileged" => Some("gives the container full control of the host"),
        "--network" | "--net" if value == "host" || value.starts_with("container:") => {
            Some("shares a network namespace the job must not see")
        }
        "--pid" | "--ipc" | "--uts" | "--userns" | "--cgroupns" if value == "host" => {
            Some("shares a host namespace with the job")
        }
        "--cap-add" if value == "all" || value == "sys_admin" || value == "cap_sys_admin" => {
            Some("gives the job administrator capabilities (use job.toml's cap_add for named, narrower ones)")
        }
        "--security-opt" if value.contains("unconfined") || value.contains("disable") => {
            Some("turns off a kernel protection (seccomp, AppArmor or SELinux)")
        }
        "--device" | "--device-cgroup-rule" => Some("passes host devices the client did not assign"),
        "--volumes-from" => Some("mounts another container's volumes"),
        "-v" | "--volume" | "--mount" if mount_is_unsafe(&value) => Some("mounts a sensitive host path"),
        _ => None,
    }
}

fn mount_is_unsafe(value: &str) -> bool {
    if value.contains("type=bind") || value.contains("source=") || value.contains("src=") {
        let source = value
            .split(',')
            .find_map(|kv| kv.strip_prefix("source=").or_else(|| kv.strip_prefix("src=")))
            .unwrap_or("");
        return unsafe_mount(source).is_some();
    }
    unsafe_mount(value).is_some()
}

fn shown(flag: &str, value: Option<&str>) -> String {
    match value {
        Some(v) => format!("{flag} {v}"),
        None => flag.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        crate::argv::split_words(text).unwrap()
    }

    #[test]
    fn dangerous_flags_are_named() {
        for bad in [
            "--privileged",
            "--network host",
            "--network=host",
            "--net=host",
            "--pid host",
            "--ipc=host",
            "--userns=host",
            "--cap-add ALL",
            "--cap-add=SYS_ADMIN",
            "--security-opt seccomp=unconfined",
            "--security-opt apparmor=unconfined",
            "--security-opt label=disable",
            "--device /dev/sda",
            "-v /:/host",
            "--volume=/etc:/etc2",
            "-v /var/run/docker.sock:/var/run/docker.sock",
            "--mount type=bind,source=/,target=/host",
        ] {
            let why = unsafe_arg(&words(&format!("--label a=b {bad} --rm")));
            assert!(why.is_some(), "{bad} was allowed");
        }
    }

    #[test]
    fn ordinary_flags_pass() {
        for good in ["--label x=y", "--env A=B", "-v /opt/data:/data:ro", "--cap-add NET_BIND_SERVICE", "--shm-size 1g", "--network none", "--add-host a:127.0.0.1", ""] {
            assert_eq!(unsafe_arg(&words(good)), None, "{good}");
        }
    }

    #[test]
    fn mounts() {
        assert!(unsafe_mount("/:/host").is_some());
        assert!(unsafe_mount("/etc/:/x:ro").is_some());
        assert!(unsafe_mount("/data/ref:/ref:ro").is_none());
    }
}
