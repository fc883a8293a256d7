//! The engines' own flag grammar for `create` and `build` (Go's pflag, as
//! both CLIs use it): `--flag value`, `--flag=value`, `-f value`, `-fvalue`,
//! `-f=value`, boolean flags that take no value (or `=true`/`=false`), and
//! short booleans combined (`-itv /:/x`). Job.toml's `create_args` and
//! `build_args` are read with it so that a flag is judged by what the engine
//! will take it to mean, whatever its spelling.
//!
//! The tables list every flag of `docker create --help` / `podman create
//! --help` (and `build`) of the engines this wrapper is tested with (Docker
//! CLI 28, Podman 4.3), plus the hidden `--net` aliases. Each entry is
//! `-s/--long` with `=` when the flag takes a value and `=?` when the value is
//! optional (only attached with `=`).
use std::fmt;

use super::EngineKind;

/// Which engine command the arguments are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Create,
    Build,
}

impl Command {
    pub fn name(self) -> &'static str {
        match self {
            Command::Create => "create",
            Command::Build => "build",
        }
    }
}

/// One flag as the engine will read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// The long name, without `--` (`volume` for `-v`).
    pub name: &'static str,
    /// The value; for a boolean flag, only when given with `=`.
    pub value: Option<String>,
    /// The words as written, for messages.
    pub spelled: String,
}

impl Flag {
    /// A boolean flag is on unless its value reads as false (pflag's
    /// ParseBool; anything unreadable counts as on, the engine refuses it).
    pub fn is_on(&self) -> bool {
        !matches!(
            self.value.as_deref(),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False")
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arity {
    Bool,
    Value,
    OptionalValue,
}

struct Def {
    long: &'static str,
    short: Option<char>,
    arity: Arity,
}

fn def(entry: &'static str) -> Def {
    let (names, arity) = if let Some(names) = entry.strip_suffix("=?") {
        (names, Arity::OptionalValue)
    } else if let Some(names) = entry.strip_suffix('=') {
        (names, Arity::Value)
    } else {
        (entry, Arity::Bool)
    };
    let (short, long) = match names.split_once('/') {
        Some((short, long)) => (short.strip_prefix('-').and_then(|s| s.chars().next()), long),
        None => (None, names),
    };
    Def {
        long: long.trim_start_matches("--"),
        short,
        arity,
    }
}

fn table(kind: EngineKind, command: Command) -> &'static [&'static str] {
    match (kind, command) {
        (EngineKind::Docker, Command::Create) => DOCKER_CREATE,
        (EngineKind::Podman, Command::Create) => PODMAN_CREATE,
        (EngineKind::Docker, Command::Build) => DOCKER_BUILD,
        (EngineKind::Podman, Command::Build) => PODMAN_BUILD,
    }
}

fn by_long(kind: EngineKind, command: Command, name: &str) -> Option<Def> {
    table(kind, command)
        .iter()
        .map(|e| def(e))
        .find(|d| d.long == name)
}

fn by_short(kind: EngineKind, command: Command, c: char) -> Option<Def> {
    table(kind, command)
        .iter()
        .map(|e| def(e))
        .find(|d| d.short == Some(c))
}

/// Whether the engine's `command` knows the long flag `name`.
#[cfg(test)]
pub fn knows(kind: EngineKind, command: Command, name: &str) -> bool {
    by_long(kind, command, name).is_some()
}

/// Words of `kind`'s `command` that cannot be judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagError {
    pub kind: EngineKind,
    pub command: Command,
    pub problem: FlagProblem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagProblem {
    /// `--`: what follows would replace the image.
    EndOfFlags,
    /// A word that is not a flag: it would become the image.
    NotAFlag { word: String },
    /// A flag missing from the tables.
    Unknown { flag: String },
    /// A flag that takes a value, last.
    NeedsValue { flag: String },
}

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let engine = format!("{} {}", self.kind.cli_name(), self.command.name());
        match &self.problem {
            FlagProblem::EndOfFlags => write!(
                f,
                "'--' ends the flags of {engine}: what follows would replace the image"
            ),
            FlagProblem::NotAFlag { word } => write!(
                f,
                "'{word}' is not a flag of {engine} (the image and its command come from the wrapper)"
            ),
            FlagProblem::Unknown { flag } => write!(
                f,
                "'{flag}' is not a flag this wrapper knows for {engine}, so what it would do cannot be checked"
            ),
            FlagProblem::NeedsValue { flag } => write!(f, "'{flag}' needs a value"),
        }
    }
}

impl std::error::Error for FlagError {}

/// Reads `args` as the engine would. Unknown flags are an error rather than
/// a guess: a wrong guess about whether one takes a value would shift the
/// meaning of every word after it. Words that are not flags are an error
/// too: the first would become the image, and the wrapper's image the command.
pub fn parse(kind: EngineKind, command: Command, args: &[String]) -> Result<Vec<Flag>, FlagError> {
    parse_words(kind, command, args).map_err(|problem| FlagError {
        kind,
        command,
        problem,
    })
}

fn parse_words(
    kind: EngineKind,
    command: Command,
    args: &[String],
) -> Result<Vec<Flag>, FlagProblem> {
    let mut flags = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if word == "--" {
            return Err(FlagProblem::EndOfFlags);
        }
        if let Some(long) = word.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (long, None),
            };
            let d = by_long(kind, command, name).ok_or_else(|| unknown(word))?;
            let value = match (d.arity, inline) {
                (_, Some(value)) => Some(value),
                (Arity::Value, None) => Some(next_value(&mut words, word)?),
                (_, None) => None,
            };
            let spelled = match (d.arity, &value) {
                (Arity::Value, Some(v)) if !word.contains('=') => format!("{word} {v}"),
                _ => word.clone(),
            };
            flags.push(Flag {
                name: d.long,
                value,
                spelled,
            });
        } else if let Some(shorts) = word.strip_prefix('-').filter(|s| !s.is_empty()) {
            flags.extend(parse_shorts(kind, command, word, shorts, &mut words)?);
        } else {
            return Err(FlagProblem::NotAFlag { word: word.clone() });
        }
    }
    Ok(flags)
}

/// `-abc`, `-vX:Y`, `-v=X:Y`, `-itv X:Y`.
fn parse_shorts<'a>(
    kind: EngineKind,
    command: Command,
    word: &str,
    shorts: &str,
    words: &mut impl Iterator<Item = &'a String>,
) -> Result<Vec<Flag>, FlagProblem> {
    let mut flags = Vec::new();
    let mut rest = shorts;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        let d = by_short(kind, command, c).ok_or_else(|| unknown(&format!("-{c}")))?;
        let (value, spelled) = if let Some(attached) = rest.strip_prefix('=') {
            let value = attached.to_string();
            rest = "";
            (Some(value), word.to_string())
        } else if d.arity == Arity::Value && rest.is_empty() {
            let value = next_value(words, word)?;
            let spelled = format!("{word} {value}");
            (Some(value), spelled)
        } else if d.arity == Arity::Value {
            let value = rest.to_string();
            rest = "";
            (Some(value), word.to_string())
        } else {
            (None, format!("-{c}"))
        };
        flags.push(Flag {
            name: d.long,
            value,
            spelled,
        });
    }
    Ok(flags)
}

fn next_value<'a>(
    words: &mut impl Iterator<Item = &'a String>,
    flag: &str,
) -> Result<String, FlagProblem> {
    words
        .next()
        .cloned()
        .ok_or_else(|| FlagProblem::NeedsValue {
            flag: flag.to_string(),
        })
}

fn unknown(flag: &str) -> FlagProblem {
    FlagProblem::Unknown {
        flag: flag.to_string(),
    }
}

const DOCKER_CREATE: &[&str] = &[
    "--add-host=",
    "-a/--attach=",
    "--blkio-weight=",
    "--blkio-weight-device=",
    "--cap-add=",
    "--cap-drop=",
    "--cgroup-parent=",
    "--cgroupns=",
    "--cidfile=",
    "--cpu-period=",
    "--cpu-quota=",
    "--cpu-rt-period=",
    "--cpu-rt-runtime=",
    "-c/--cpu-shares=",
    "--cpus=",
    "--cpuset-cpus=",
    "--cpuset-mems=",
    "--device=",
    "--device-cgroup-rule=",
    "--device-read-bps=",
    "--device-read-iops=",
    "--device-write-bps=",
    "--device-write-iops=",
    "--disable-content-trust",
    "--dns=",
    "--dns-option=",
    "--dns-search=",
    "--domainname=",
    "--entrypoint=",
    "-e/--env=",
    "--env-file=",
    "--expose=",
    "--gpus=",
    "--group-add=",
    "--health-cmd=",
    "--health-interval=",
    "--health-retries=",
    "--health-start-period=",
    "--health-timeout=",
    "--help",
    "-h/--hostname=",
    "--init",
    "-i/--interactive",
    "--ip=",
    "--ip6=",
    "--ipc=",
    "--isolation=",
    "--kernel-memory=",
    "-l/--label=",
    "--label-file=",
    "--link=",
    "--link-local-ip=",
    "--log-driver=",
    "--log-opt=",
    "--mac-address=",
    "-m/--memory=",
    "--memory-reservation=",
    "--memory-swap=",
    "--memory-swappiness=",
    "--mount=",
    "--name=",
    "--network=",
    "--net=",
    "--network-alias=",
    "--net-alias=",
    "--no-healthcheck",
    "--oom-kill-disable",
    "--oom-score-adj=",
    "--pid=",
    "--pids-limit=",
    "--platform=",
    "--privileged",
    "-p/--publish=",
    "-P/--publish-all",
    "--pull=",
    "-q/--quiet",
    "--read-only",
    "--restart=",
    "--rm",
    "--runtime=",
    "--security-opt=",
    "--shm-size=",
    "--stop-signal=",
    "--stop-timeout=",
    "--storage-opt=",
    "--sysctl=",
    "--tmpfs=",
    "-t/--tty",
    "--ulimit=",
    "--use-api-socket",
    "-u/--user=",
    "--userns=",
    "--uts=",
    "-v/--volume=",
    "--volume-driver=",
    "--volumes-from=",
    "-w/--workdir=",
];

const PODMAN_CREATE: &[&str] = &[
    "--add-host=",
    "--annotation=",
    "--arch=",
    "-a/--attach=",
    "--authfile=",
    "--blkio-weight=",
    "--blkio-weight-device=",
    "--cap-add=",
    "--cap-drop=",
    "--cgroup-conf=",
    "--cgroup-parent=",
    "--cgroupns=",
    "--cgroups=",
    "--chrootdirs=",
    "--cidfile=",
    "--conmon-pidfile=",
    "--cpu-period=",
    "--cpu-quota=",
    "--cpu-rt-period=",
    "--cpu-rt-runtime=",
    "-c/--cpu-shares=",
    "--cpus=",
    "--cpuset-cpus=",
    "--cpuset-mems=",
    "--device=",
    "--device-cgroup-rule=",
    "--device-read-bps=",
    "--device-read-iops=",
    "--device-write-bps=",
    "--device-write-iops=",
    "--disable-content-trust",
    "--dns=",
    "--dns-option=",
    "--dns-search=",
    "--entrypoint=",
    "-e/--env=",
    "--env-file=",
    "--env-host",
    "--env-merge=",
    "--expose=",
    "--gidmap=",
    "--group-add=",
    "--health-cmd=",
    "--health-interval=",
    "--health-on-failure=",
    "--health-retries=",
    "--health-start-period=",
    "--health-timeout=",
    "--help",
    "-h/--hostname=",
    "--hostuser=",
    "--http-proxy",
    "--image-volume=",
    "--init",
    "--init-ctr=",
    "--init-path=",
    "-i/--interactive",
    "--ip=",
    "--ip6=",
    "--ipc=",
    "-l/--label=",
    "--label-file=",
    "--log-driver=",
    "--log-opt=",
    "--mac-address=",
    "-m/--memory=",
    "--memory-reservation=",
    "--memory-swap=",
    "--memory-swappiness=",
    "--mount=",
    "--name=",
    "--network=",
    "--net=",
    "--network-alias=",
    "--no-healthcheck",
    "--no-hosts",
    "--oom-kill-disable",
    "--oom-score-adj=",
    "--os=",
    "--passwd-entry=",
    "--personality=",
    "--pid=",
    "--pidfile=",
    "--pids-limit=",
    "--platform=",
    "--pod=",
    "--pod-id-file=",
    "--privileged",
    "-p/--publish=",
    "-P/--publish-all",
    "--pull=",
    "-q/--quiet",
    "--read-only",
    "--read-only-tmpfs",
    "--replace",
    "--requires=",
    "--restart=",
    "--rm",
    "--rootfs",
    "--sdnotify=",
    "--seccomp-policy=",
    "--secret=",
    "--security-opt=",
    "--shm-size=",
    "--stop-signal=",
    "--stop-timeout=",
    "--subgidname=",
    "--subuidname=",
    "--sysctl=",
    "--systemd=",
    "--timeout=",
    "--tls-verify",
    "--tmpfs=",
    "-t/--tty",
    "--tz=",
    "--uidmap=",
    "--ulimit=",
    "--umask=",
    "--unsetenv=",
    "--unsetenv-all",
    "-u/--user=",
    "--userns=",
    "--uts=",
    "--variant=",
    "-v/--volume=",
    "--volumes-from=",
    "-w/--workdir=",
];

const DOCKER_BUILD: &[&str] = &[
    "--add-host=",
    "--build-arg=",
    "--cache-from=",
    "--cgroup-parent=",
    "--compress",
    "--cpu-period=",
    "--cpu-quota=",
    "-c/--cpu-shares=",
    "--cpuset-cpus=",
    "--cpuset-mems=",
    "--disable-content-trust",
    "-f/--file=",
    "--force-rm",
    "--help",
    "--iidfile=",
    "--isolation=",
    "--label=",
    "-m/--memory=",
    "--memory-swap=",
    "--network=",
    "--no-cache",
    "--platform=",
    "--pull",
    "-q/--quiet",
    "--rm",
    "--security-opt=",
    "--shm-size=",
    "-t/--tag=",
    "--target=",
    "--ulimit=",
];

const PODMAN_BUILD: &[&str] = &[
    "--add-host=",
    "--all-platforms",
    "--annotation=",
    "--arch=",
    "--authfile=",
    "--build-arg=",
    "--build-context=",
    "--cache-from=",
    "--cache-to=",
    "--cache-ttl=",
    "--cap-add=",
    "--cap-drop=",
    "--cert-dir=",
    "--cgroup-parent=",
    "--cgroupns=",
    "--compress",
    "--cpp-flag=",
    "--cpu-period=",
    "--cpu-quota=",
    "-c/--cpu-shares=",
    "--cpuset-cpus=",
    "--cpuset-mems=",
    "--creds=",
    "--decryption-key=",
    "--device=",
    "-D/--disable-compression",
    "--disable-content-trust",
    "--dns=",
    "--dns-option=",
    "--dns-search=",
    "--env=",
    "-f/--file=",
    "--force-rm",
    "--format=",
    "--from=",
    "--help",
    "--hooks-dir=",
    "--http-proxy",
    "--identity-label",
    "--ignorefile=",
    "--iidfile=",
    "--ipc=",
    "--isolation=",
    "--jobs=",
    "--label=",
    "--layers",
    "--logfile=",
    "--logsplit",
    "--manifest=",
    "-m/--memory=",
    "--memory-swap=",
    "--network=",
    "--net=",
    "--no-cache",
    "--no-hosts",
    "--omit-history",
    "--os=",
    "--os-feature=",
    "--os-version=",
    "-o/--output=",
    "--pid=",
    "--platform=",
    "--pull=?",
    "-q/--quiet",
    "--retry=",
    "--retry-delay=",
    "--rm",
    "--runtime-flag=",
    "--secret=",
    "--security-opt=",
    "--shm-size=",
    "--sign-by=",
    "--skip-unused-stages",
    "--squash",
    "--squash-all",
    "--ssh=",
    "--stdin",
    "-t/--tag=",
    "--target=",
    "--timestamp=",
    "--tls-verify",
    "--ulimit=",
    "--unsetenv=",
    "--userns=",
    "--userns-gid-map=",
    "--userns-gid-map-group=",
    "--userns-uid-map=",
    "--userns-uid-map-user=",
    "--uts=",
    "--variant=",
    "-v/--volume=",
];

#[cfg(test)]
mod tests {
    use super::*;
    use EngineKind::{Docker, Podman};

    fn words(text: &str) -> Vec<String> {
        crate::argv::split_words(text).unwrap()
    }

    fn read(kind: EngineKind, text: &str) -> Vec<(&'static str, Option<String>)> {
        parse(kind, Command::Create, &words(text))
            .unwrap()
            .into_iter()
            .map(|f| (f.name, f.value))
            .collect()
    }

    fn v(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn every_spelling_of_a_value_reads_the_same() {
        for kind in [Docker, Podman] {
            for text in [
                "-v /:/x",
                "-v/:/x",
                "-v=/:/x",
                "--volume /:/x",
                "--volume=/:/x",
            ] {
                assert_eq!(read(kind, text), [("volume", v("/:/x"))], "{text}");
            }
        }
    }

    #[test]
    fn short_booleans_combine_and_the_last_may_take_a_value() {
        assert_eq!(
            read(Docker, "-itv /:/x"),
            [("interactive", None), ("tty", None), ("volume", v("/:/x"))]
        );
        assert_eq!(
            read(Podman, "-itv/:/x -P"),
            [
                ("interactive", None),
                ("tty", None),
                ("volume", v("/:/x")),
                ("publish-all", None)
            ]
        );
        assert_eq!(
            read(Docker, "-ti=false"),
            [("tty", None), ("interactive", v("false"))]
        );
    }

    #[test]
    fn booleans_take_no_value_unless_attached() {
        assert_eq!(
            read(Docker, "--privileged --rm"),
            [("privileged", None), ("rm", None)]
        );
        let flags = parse(
            Docker,
            Command::Create,
            &words("--privileged=false --init=TRUE"),
        )
        .unwrap();
        assert!(!flags[0].is_on());
        assert!(flags[1].is_on());
    }

    #[test]
    fn a_value_may_look_like_a_flag() {
        assert_eq!(
            read(Podman, "-e -v --label x"),
            [("env", v("-v")), ("label", v("x"))]
        );
    }

    #[test]
    fn optional_values_are_only_taken_with_equals() {
        let flags = parse(Podman, Command::Build, &words("--pull --pull=always")).unwrap();
        assert_eq!(flags[0].value, None);
        assert_eq!(flags[1].value, v("always"));
        assert!(
            parse(Podman, Command::Build, &words("--pull always")).is_err(),
            "'always' is a word, not a flag"
        );
    }

    #[test]
    fn each_engine_has_its_own_flags() {
        assert!(parse(Podman, Command::Create, &words("--rootfs")).is_ok());
        let err = parse(Docker, Command::Create, &words("--rootfs"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'--rootfs'") && err.contains("docker create"),
            "{err}"
        );
        assert!(parse(Docker, Command::Create, &words("--net-alias a")).is_ok());
        assert!(parse(Docker, Command::Build, &words("--net none")).is_err());
        assert!(parse(Podman, Command::Build, &words("--net none")).is_ok());
    }

    #[test]
    fn unknown_flags_missing_values_and_words_are_refused() {
        for (kind, text, named) in [
            (Docker, "--bogus", "'--bogus'"),
            (Podman, "--Privileged", "'--Privileged'"),
            (Docker, "-x", "'-x'"),
            (Podman, "-iZ", "'-Z'"),
            (Docker, "--volume", "'--volume' needs a value"),
            (Docker, "busybox", "'busybox' is not a flag"),
            (Podman, "-- /bin/sh", "'--'"),
            (Docker, "-", "'-' is not a flag"),
        ] {
            let err = parse(kind, Command::Create, &words(text))
                .unwrap_err()
                .to_string();
            assert!(err.contains(named), "{text}: {err}");
        }
    }

    #[test]
    fn spelled_shows_the_words_as_written() {
        let flags = parse(
            Docker,
            Command::Create,
            &words("-v /:/x --network=host -vY:Z --pid host -it"),
        )
        .unwrap();
        let spelled: Vec<_> = flags.iter().map(|f| f.spelled.as_str()).collect();
        assert_eq!(
            spelled,
            [
                "-v /:/x",
                "--network=host",
                "-vY:Z",
                "--pid host",
                "-i",
                "-t"
            ]
        );
    }

    #[test]
    fn tables_are_well_formed() {
        for kind in [Docker, Podman] {
            for command in [Command::Create, Command::Build] {
                let defs: Vec<Def> = table(kind, command).iter().map(|e| def(e)).collect();
                for (i, d) in defs.iter().enumerate() {
                    assert!(!d.long.is_empty() && !d.long.starts_with('-'), "{}", d.long);
                    assert!(
                        defs[i + 1..].iter().all(|o| o.long != d.long),
                        "{} twice",
                        d.long
                    );
                    if let Some(c) = d.short {
                        assert!(
                            defs[i + 1..].iter().all(|o| o.short != Some(c)),
                            "-{c} twice"
                        );
                    }
                }
            }
        }
    }
}
