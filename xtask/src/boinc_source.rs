//! The BOINC source tree the release files and the test client are built
//! from: found, unpacked once, prepared with `_autosetup` once, and copied
//! per platform (each platform configures its own copy: configure writes
//! config.h into the tree).
//!
//! Everything lives under `<build dir>/<key>/`, where the key is the
//! tarball's SHA-256 (or, for a checkout, a hash of its path and revision),
//! so a second run, or a CI machine keeping the build dir, reuses the work.
//! A tree counts as done only once its marker file exists: an interrupted
//! step is redone from a fresh copy.
use crate::run::{output, run, run_logged};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const DONE_MARKER: &str = ".docker_wrapper-done";

pub struct BoincSource {
    /// The unpacked tree with `configure` generated; never configured itself.
    pristine: PathBuf,
    /// `<build dir>/<key>`: the per-platform trees go beside `pristine`.
    home: PathBuf,
    /// BOINC's version, from its configure.ac (e.g. "8.2.15").
    pub version: String,
}

enum Origin {
    Tarball(PathBuf),
    Checkout(PathBuf),
}

impl BoincSource {
    /// Finds the source (see the module comment), unpacks and prepares it.
    pub fn prepare(workspace: &Path) -> Result<BoincSource> {
        let origin = find_origin(workspace)?;
        let build_dir =
            env_path("DW_BOINC_BUILD_DIR").unwrap_or_else(|| default_build_dir(workspace));
        let home = build_dir.join(key(&origin)?);
        let pristine = home.join("source");
        if !pristine.join(DONE_MARKER).exists() {
            remove_if_present(&pristine)?;
            fs::create_dir_all(&home)?;
            match &origin {
                Origin::Tarball(tarball) => unpack(tarball, &home, &pristine)?,
                Origin::Checkout(dir) => copy_tree(dir, &pristine)?,
            }
            if !pristine.join("configure").exists() {
                run_logged(
                    Command::new("./_autosetup").current_dir(&pristine),
                    &home.join("autosetup.log"),
                )
                .context(
                    "BOINC's _autosetup needs autoconf, automake, libtool, m4 and pkg-config",
                )?;
            }
            fs::write(pristine.join(DONE_MARKER), "")?;
        }
        let version = version_of(&pristine)?;
        Ok(BoincSource {
            pristine,
            home,
            version,
        })
    }

    /// A copy of the prepared tree for `name`, made ready by `build` once:
    /// later calls return the finished tree without running `build` again.
    pub fn tree_for(&self, name: &str, build: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
        let tree = self.home.join(name);
        if tree.join(DONE_MARKER).exists() {
            println!("BOINC tree for {name}: {} (already built)", tree.display());
            return Ok(tree);
        }
        remove_if_present(&tree)?;
        copy_tree(&self.pristine, &tree)?;
        fs::remove_file(tree.join(DONE_MARKER))?;
        build(&tree).with_context(|| format!("building BOINC for {name} in {}", tree.display()))?;
        fs::write(tree.join(DONE_MARKER), "")?;
        Ok(tree)
    }

    /// Where a step's log goes.
    pub fn log(&self, name: &str) -> PathBuf {
        self.home.join(format!("{name}.log"))
    }
}

fn find_origin(workspace: &Path) -> Result<Origin> {
    if let Some(dir) = env_path("BOINC_SRC_DIR") {
        if !dir.join("api/boinc_api.h").is_file() {
            bail!(
                "BOINC_SRC_DIR={} is not a BOINC source tree (api/boinc_api.h is missing)",
                dir.display()
            );
        }
        return Ok(Origin::Checkout(dir));
    }
    if let Some(tarball) = env_path("BOINC_SRC_TARBALL") {
        if !tarball.is_file() {
            bail!("BOINC_SRC_TARBALL={} does not exist", tarball.display());
        }
        return Ok(Origin::Tarball(tarball));
    }
    let vendor = workspace.join("../shared/vendor");
    let mut tarballs: Vec<PathBuf> = fs::read_dir(&vendor)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().unwrap_or_default().to_string_lossy();
                    name.starts_with("boinc-") && name.ends_with(".tar.xz")
                })
                .collect()
        })
        .unwrap_or_default();
    tarballs.sort();
    match tarballs.pop() {
        Some(tarball) => Ok(Origin::Tarball(tarball)),
        None => bail!(
            "no BOINC source found. Set BOINC_SRC_DIR to a checkout of BOINC's git tag \
             client_release/8.2/8.2.15 (https://github.com/BOINC/boinc), or BOINC_SRC_TARBALL \
             to a tarball of it; the default, {}/boinc-*.tar.xz, does not exist",
            vendor.display()
        ),
    }
}

/// Outside the clone, so that a fresh clone (CI) reuses the configured
/// trees: `$XDG_CACHE_HOME/docker_wrapper/boinc-build`, else `~/.cache/...`,
/// else `target/boinc-build`.
fn default_build_dir(workspace: &Path) -> PathBuf {
    env_path("XDG_CACHE_HOME")
        .or_else(|| env_path("HOME").map(|home| home.join(".cache")))
        .map(|cache| cache.join("docker_wrapper/boinc-build"))
        .unwrap_or_else(|| workspace.join("target/boinc-build"))
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The tarball's own hash; for a checkout, its path and git revision (a
/// changed checkout without a new commit needs `DW_BOINC_BUILD_DIR` cleared).
fn key(origin: &Origin) -> Result<String> {
    let mut hash = Sha256::new();
    match origin {
        Origin::Tarball(tarball) => {
            let mut file = fs::File::open(tarball)
                .with_context(|| format!("cannot read {}", tarball.display()))?;
            let mut buffer = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buffer)?;
                if n == 0 {
                    break;
                }
                hash.update(&buffer[..n]);
            }
        }
        Origin::Checkout(dir) => {
            let dir = dir.canonicalize()?;
            hash.update(dir.as_os_str().as_encoded_bytes());
            let revision = Command::new("git")
                .arg("-C")
                .arg(&dir)
                .args(["rev-parse", "HEAD"])
                .stderr(Stdio::null())
                .output()
                .ok()
                .filter(|out| out.status.success())
                .map(|out| out.stdout)
                .unwrap_or_default();
            hash.update(&revision);
        }
    }
    let digest = hash.finalize();
    Ok(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
}

fn unpack(tarball: &Path, home: &Path, pristine: &Path) -> Result<()> {
    let staging = home.join("unpack");
    remove_if_present(&staging)?;
    fs::create_dir_all(&staging)?;
    run(Command::new("tar")
        .arg("-xf")
        .arg(tarball)
        .arg("-C")
        .arg(&staging))?;
    let mut entries: Vec<PathBuf> = fs::read_dir(&staging)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    let top = match (entries.pop(), entries.is_empty()) {
        (Some(top), true) if top.is_dir() => top,
        _ => bail!(
            "{} should hold one top directory (a `git archive --prefix=...` of BOINC)",
            tarball.display()
        ),
    };
    fs::rename(&top, pristine)?;
    fs::remove_dir(&staging)?;
    Ok(())
}

/// Copies a tree without its `.git` (a BOINC clone's history is large and
/// nothing here needs it): `tar` to `tar`, so modes and links are kept.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    let mut pack = Command::new("tar")
        .arg("-C")
        .arg(from)
        .args(["--exclude=./.git", "-cf", "-", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start tar")?;
    let stdout = pack.stdout.take().expect("stdout is piped");
    let unpacked = Command::new("tar")
        .arg("-C")
        .arg(to)
        .args(["-xf", "-"])
        .stdin(stdout)
        .status()
        .context("cannot start tar")?;
    let packed = pack.wait()?;
    if !(packed.success() && unpacked.success()) {
        bail!("copying {} to {} failed", from.display(), to.display());
    }
    Ok(())
}

fn remove_if_present(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("cannot remove {}", dir.display())),
    }
}

/// `AC_INIT(BOINC, 8.2.15, ...)` in configure.ac.
fn version_of(tree: &Path) -> Result<String> {
    let text = fs::read_to_string(tree.join("configure.ac"))
        .with_context(|| format!("cannot read {}/configure.ac", tree.display()))?;
    parse_version(&text).context("configure.ac has no AC_INIT with a version")
}

fn parse_version(configure_ac: &str) -> Option<String> {
    let line = configure_ac
        .lines()
        .find(|l| l.trim_start().starts_with("AC_INIT("))?;
    let version = line
        .split(',')
        .nth(1)?
        .trim()
        .trim_end_matches(')')
        .trim()
        .trim_matches(['[', ']']);
    (!version.is_empty()).then(|| version.to_string())
}

/// The host's build triple for configure (the tools run here).
pub fn build_triple() -> Result<String> {
    let machine = output(Command::new("uname").arg("-m"))?;
    Ok(format!("{}-pc-linux-gnu", machine.trim()))
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn the_version_comes_from_ac_init() {
        let text = "dnl comment\nAC_INIT(BOINC, 8.2.15)\n";
        assert_eq!(parse_version(text).as_deref(), Some("8.2.15"));
        assert_eq!(
            parse_version("AC_INIT(BOINC, 8.2.15, [https://boinc.berkeley.edu])").as_deref(),
            Some("8.2.15")
        );
        assert_eq!(
            parse_version("AC_INIT([BOINC], [8.3.0], x)").as_deref(),
            Some("8.3.0")
        );
        assert_eq!(parse_version("no init here"), None);
    }
}
