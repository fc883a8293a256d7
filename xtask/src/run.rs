//! Running the build's tools: argv only, each command echoed before it runs,
//! its failure reported with the command line and where its log is.
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `command`, its output going to the terminal.
pub fn run(command: &mut Command) -> Result<()> {
    println!("+ {}", describe(command));
    let status = command
        .status()
        .with_context(|| format!("cannot start {}", program(command)))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(command));
    }
    Ok(())
}

/// Runs `command` with its output in `log` (configure and make are long and
/// loud); on failure the error names the log and quotes its end.
pub fn run_logged(command: &mut Command, log: &Path) -> Result<()> {
    println!("+ {}  (output in {})", describe(command), log.display());
    let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let err = out.try_clone()?;
    let status = command
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .status()
        .with_context(|| format!("cannot start {}", program(command)))?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(25).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "{} failed ({status}); the end of {}:\n{}",
            describe(command),
            log.display(),
            tail.join("\n")
        );
    }
    Ok(())
}

/// Runs `command` and returns its standard output.
pub fn output(command: &mut Command) -> Result<String> {
    let out = command
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start {}", program(command)))?;
    if !out.status.success() {
        bail!("{} failed ({})", describe(command), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `program` can be started at all (it exists in PATH).
pub fn available(program: &str, probe_arg: &str) -> bool {
    Command::new(program)
        .arg(probe_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn program(command: &Command) -> String {
    command.get_program().to_string_lossy().into_owned()
}

/// The command as a person would read it (for messages, never for a shell).
fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
