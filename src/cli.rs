//! The command line, compatible with BOINC's C++ docker_wrapper.
//!
//! The C++ wrapper knows four options and hands every other argument to the
//! job (as the `ARGS` environment variable), including arguments that look
//! like options. That stays so: only our own options are consumed, and `--`
//! makes all later arguments job arguments even if they are ours.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// What the command line asks for, when it asks to run a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Cli {
    /// `--verbose`: log everything (verbose level 2).
    pub verbose: bool,
    /// `--config FILE`, default `job.toml`.
    pub config_file: PathBuf,
    /// Whether `--config` was given: then the file must exist.
    pub config_given: bool,
    /// `--dockerfile FILE`, default `Dockerfile`.
    pub dockerfile: PathBuf,
    /// `--sporadic`: the app is a BOINC sporadic app.
    pub sporadic: bool,
    /// Every other argument, in order: they reach the job as `$ARGS`.
    pub job_args: Vec<String>,
}

impl Default for Cli {
    fn default() -> Self {
        Cli {
            verbose: false,
            config_file: PathBuf::from("job.toml"),
            config_given: false,
            dockerfile: PathBuf::from("Dockerfile"),
            sporadic: false,
            job_args: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum CliAction {
    Run(Cli),
    Help,
    Version,
    /// `--check`: report what this host offers and exit.
    Check,
}

/// A command line that cannot be read.
#[derive(Debug, Clone, PartialEq)]
pub enum CliError {
    /// Argument `index` (from 1) is not text; `lossy` shows it.
    NotUtf8 {
        index: usize,
        lossy: String,
    },
    /// `--config` or `--dockerfile` last, with nothing after it.
    MissingValue {
        option: String,
    },
    EmptyValue {
        option: String,
    },
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::NotUtf8 { index, lossy } => {
                write!(f, "argument {index} is not valid UTF-8: {lossy:?}")
            }
            CliError::MissingValue { option } => {
                write!(f, "option {option} needs a value: {option} FILE")
            }
            CliError::EmptyValue { option } => write!(f, "option {option} needs a non-empty FILE"),
        }
    }
}

impl std::error::Error for CliError {}

/// Parses the arguments (without the program name).
pub fn parse(args: Vec<OsString>) -> Result<CliAction, CliError> {
    let args = to_strings(args)?;
    // Only alone: under the client, a job's own `--check` among its
    // arguments is the job's.
    if args == ["--check"] {
        return Ok(CliAction::Check);
    }
    let mut cli = Cli::default();
    let mut rest = args.into_iter();

    while let Some(arg) = rest.next() {
        // `--name=value` for the options that take a value.
        let (name, inline_value) = match arg.split_once('=') {
            Some((name, value)) if takes_value(name) => (name, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        match name {
            "--" => {
                cli.job_args.extend(rest.by_ref());
                break;
            }
            "--help" | "-h" => return Ok(CliAction::Help),
            "--version" | "-V" => return Ok(CliAction::Version),
            "--verbose" => cli.verbose = true,
            "--sporadic" => cli.sporadic = true,
            "--config" => {
                cli.config_file = option_value(name, inline_value, &mut rest)?;
                cli.config_given = true;
            }
            "--dockerfile" => cli.dockerfile = option_value(name, inline_value, &mut rest)?,
            _ => cli.job_args.push(arg),
        }
    }
    Ok(CliAction::Run(cli))
}

fn takes_value(name: &str) -> bool {
    name == "--config" || name == "--dockerfile"
}

/// The value of `option`: the part after `=`, or else the next argument,
/// whatever it looks like (as in the C++ wrapper).
fn option_value(
    option: &str,
    inline_value: Option<String>,
    rest: &mut impl Iterator<Item = String>,
) -> Result<PathBuf, CliError> {
    let option = option.to_string();
    match inline_value.or_else(|| rest.next()) {
        Some(value) if !value.is_empty() => Ok(PathBuf::from(value)),
        Some(_) => Err(CliError::EmptyValue { option }),
        None => Err(CliError::MissingValue { option }),
    }
}

/// Job arguments end up in an environment variable and in messages, so they
/// must be text.
fn to_strings(args: Vec<OsString>) -> Result<Vec<String>, CliError> {
    args.into_iter()
        .enumerate()
        .map(|(index, arg)| {
            arg.into_string().map_err(|arg| CliError::NotUtf8 {
                index: index + 1,
                lossy: arg.to_string_lossy().into_owned(),
            })
        })
        .collect()
}

pub fn help_text() -> String {
    "\
Usage: docker_wrapper [OPTIONS] [JOB ARGUMENTS...]

Runs a BOINC job in a Docker or Podman container. The BOINC client starts it in
a slot directory holding the Dockerfile, job.toml (optional) and the job's files.

Options:
  --config FILE      read job settings from FILE (default: job.toml; when given,
                     FILE must exist)
  --dockerfile FILE  build the image from FILE (default: Dockerfile)
  --verbose          write every engine command and its output to stderr.txt
  --sporadic         run as a BOINC sporadic app
  -h, --help         print this help and exit
  -V, --version      print the version and exit
  --check            (alone) print what this host offers Docker apps, as the user
                     running it (engine, version, rootless or not, cgroups,
                     whether the user reaches it, the BOINC client's
                     hello-world image; on Windows the WSL distros), and
                     exit 0 when a task could run here, 1 otherwise
  --                 end of options: all later arguments are job arguments

--config=FILE and --dockerfile=FILE are accepted too. Every other argument,
including unknown options, is passed to the job, in order, as the ARGS
environment variable (use ${ARGS} in the Dockerfile's CMD).
"
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<CliAction, CliError> {
        parse(args.iter().map(OsString::from).collect())
    }

    fn run(args: &[&str]) -> Cli {
        match parse_strs(args) {
            Ok(CliAction::Run(cli)) => cli,
            other => panic!("{args:?}: expected Run, got {other:?}"),
        }
    }

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn no_arguments_give_defaults() {
        let cli = run(&[]);
        assert_eq!(cli, Cli::default());
        assert_eq!(cli.config_file, PathBuf::from("job.toml"));
        assert_eq!(cli.dockerfile, PathBuf::from("Dockerfile"));
        assert!(!cli.config_given && !cli.verbose && !cli.sporadic);
    }

    #[test]
    fn each_option() {
        assert!(run(&["--verbose"]).verbose);
        assert!(run(&["--sporadic"]).sporadic);
        let cli = run(&["--config", "my job.toml"]);
        assert_eq!(cli.config_file, PathBuf::from("my job.toml"));
        assert!(cli.config_given);
        assert_eq!(
            run(&["--config=x.toml"]).config_file,
            PathBuf::from("x.toml")
        );
        assert!(run(&["--config=x.toml"]).config_given);
        assert_eq!(run(&["--dockerfile", "D2"]).dockerfile, PathBuf::from("D2"));
        assert_eq!(run(&["--dockerfile=a=b"]).dockerfile, PathBuf::from("a=b"));
        assert_eq!(parse_strs(&["--help"]), Ok(CliAction::Help));
        assert_eq!(parse_strs(&["-h"]), Ok(CliAction::Help));
        assert_eq!(parse_strs(&["--version"]), Ok(CliAction::Version));
        assert_eq!(parse_strs(&["-V"]), Ok(CliAction::Version));
        assert_eq!(parse_strs(&["--check"]), Ok(CliAction::Check));
        assert_eq!(run(&["--check", "x"]).job_args, strings(&["--check", "x"]));
        assert_eq!(run(&["x", "--check"]).job_args, strings(&["x", "--check"]));
    }

    #[test]
    fn all_options_together_with_job_args_in_order() {
        let cli = run(&[
            "in.dat",
            "--verbose",
            "-n",
            "3",
            "--config",
            "c.toml",
            "--foo",
            "--sporadic",
            "--dockerfile",
            "Df",
            "last",
        ]);
        assert_eq!(
            cli,
            Cli {
                verbose: true,
                config_file: PathBuf::from("c.toml"),
                config_given: true,
                dockerfile: PathBuf::from("Df"),
                sporadic: true,
                job_args: strings(&["in.dat", "-n", "3", "--foo", "last"]),
            }
        );
    }

    #[test]
    fn missing_values_are_errors_naming_the_option() {
        let message = parse_strs(&["--config"]).unwrap_err().to_string();
        assert!(message.contains("--config"), "{message}");
        let message = parse_strs(&["a", "--dockerfile"]).unwrap_err().to_string();
        assert!(message.contains("--dockerfile"), "{message}");
        assert!(parse_strs(&["--config="])
            .unwrap_err()
            .to_string()
            .contains("--config"));
        assert!(parse_strs(&["--dockerfile", ""])
            .unwrap_err()
            .to_string()
            .contains("--dockerfile"));
    }

    #[test]
    fn value_is_the_next_argument_whatever_it_looks_like() {
        assert_eq!(
            run(&["--config", "--verbose"]).config_file,
            PathBuf::from("--verbose")
        );
        assert!(!run(&["--config", "--verbose"]).verbose);
    }

    #[test]
    fn double_dash_ends_options() {
        let cli = run(&["--verbose", "--", "--config", "x", "--", "--help"]);
        assert!(cli.verbose);
        assert!(!cli.config_given);
        assert_eq!(cli.job_args, strings(&["--config", "x", "--", "--help"]));
        assert_eq!(run(&["--"]).job_args, Vec::<String>::new());
    }

    #[test]
    fn unknown_options_and_look_alikes_go_to_the_job() {
        let cli = run(&[
            "--foo",
            "-v",
            "--verbose=1",
            "--sporadic=yes",
            "--configx",
            "-",
            "",
        ]);
        assert!(!cli.verbose && !cli.sporadic && !cli.config_given);
        assert_eq!(
            cli.job_args,
            strings(&[
                "--foo",
                "-v",
                "--verbose=1",
                "--sporadic=yes",
                "--configx",
                "-",
                ""
            ])
        );
    }

    #[test]
    fn later_options_win() {
        let cli = run(&["--config", "a", "--config", "b"]);
        assert_eq!(cli.config_file, PathBuf::from("b"));
    }

    #[test]
    fn help_wins_over_errors_after_it() {
        assert_eq!(
            parse_strs(&["x", "--help", "--config"]),
            Ok(CliAction::Help)
        );
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_arguments_are_errors() {
        use std::os::unix::ffi::OsStringExt;
        let args = vec![OsString::from("ok"), OsString::from_vec(vec![b'a', 0xff])];
        let message = parse(args).unwrap_err().to_string();
        assert!(
            message.contains("argument 2") && message.contains("UTF-8"),
            "{message}"
        );
    }

    #[test]
    fn help_text_mentions_every_option() {
        let help = help_text();
        for option in [
            "--config",
            "--dockerfile",
            "--verbose",
            "--sporadic",
            "--help",
            "--version",
            "--",
            "ARGS",
        ] {
            assert!(help.contains(option), "help lacks {option}");
        }
    }
}
