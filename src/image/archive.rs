//! Image archives made by `docker save` / `podman save` (tar, optionally
//! gzip-compressed), shipped with an app version so volunteers need no
//! registry. We read the image ID out of the archive's manifest.json, so
//! the loaded image is found without parsing `load`'s human output. (What
//! an engine needs to load one is the engine's business: `Engine::load`.)
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::slot::io as slot_io;

/// manifest.json is small; anything bigger is not a save archive.
const MAX_MANIFEST: u64 = 1024 * 1024;
const BLOCK: usize = 512;

/// Why the image in an archive cannot be named.
#[derive(Debug)]
pub enum ArchiveError {
    Open {
        path: PathBuf,
        source: io::Error,
    },
    Read {
        path: PathBuf,
        source: io::Error,
    },
    /// The tar stream has no usable manifest.json.
    Tar {
        path: PathBuf,
        problem: TarProblem,
    },
    NoImageConfig {
        path: PathBuf,
    },
}

/// What is wrong inside the tar stream.
#[derive(Debug)]
pub enum TarProblem {
    NoManifest,
    DamagedHeader,
    ManifestTooLarge,
    Truncated,
    ReadManifest(io::Error),
    Io(io::Error),
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchiveError::Open { path, source } => {
                write!(f, "cannot open {}: {source}", path.display())
            }
            ArchiveError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            ArchiveError::Tar { path, problem } => write!(f, "{}: {problem}", path.display()),
            ArchiveError::NoImageConfig { path } => {
                write!(f, "{}: manifest.json names no image config", path.display())
            }
        }
    }
}

impl std::error::Error for ArchiveError {}

impl fmt::Display for TarProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TarProblem::NoManifest => {
                f.write_str("no manifest.json: not an image archive made by docker/podman save")
            }
            TarProblem::DamagedHeader => f.write_str("damaged tar header"),
            TarProblem::ManifestTooLarge => f.write_str("manifest.json is too large"),
            TarProblem::Truncated => f.write_str("truncated tar archive"),
            TarProblem::ReadManifest(err) => write!(f, "cannot read manifest.json: {err}"),
            TarProblem::Io(err) => err.fmt(f),
        }
    }
}

/// `sha256:<hex>` of the (first) image in the archive.
pub fn image_id(path: &Path) -> Result<String, ArchiveError> {
    let file = slot_io::open_regular(path).map_err(|source| ArchiveError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let head = reader.fill_buf().map_err(|source| ArchiveError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    let manifest = if gzip {
        find_manifest(GzDecoder::new(reader))
    } else {
        find_manifest(reader)
    }
    .map_err(|problem| ArchiveError::Tar {
        path: path.to_path_buf(),
        problem,
    })?;
    config_id(&manifest).ok_or_else(|| ArchiveError::NoImageConfig {
        path: path.to_path_buf(),
    })
}

/// Walks the tar entries up to manifest.json.
fn find_manifest(mut tar: impl Read) -> Result<String, TarProblem> {
    let mut header = [0u8; BLOCK];
    loop {
        if read_block(&mut tar, &mut header)?.is_none() || header.iter().all(|b| *b == 0) {
            return Err(TarProblem::NoManifest);
        }
        let name = entry_name(&header);
        let size = octal(&header[124..136]).ok_or(TarProblem::DamagedHeader)?;
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        if name.trim_start_matches("./") == "manifest.json" {
            if size > MAX_MANIFEST {
                return Err(TarProblem::ManifestTooLarge);
            }
            let mut text = vec![0u8; size as usize];
            tar.read_exact(&mut text)
                .map_err(TarProblem::ReadManifest)?;
            return Ok(String::from_utf8_lossy(&text).into_owned());
        }
        io::copy(&mut (&mut tar).take(padded), &mut io::sink()).map_err(TarProblem::Io)?;
    }
}

fn read_block(reader: &mut impl Read, block: &mut [u8; BLOCK]) -> Result<Option<()>, TarProblem> {
    let mut filled = 0;
    while filled < BLOCK {
        match reader.read(&mut block[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(TarProblem::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(TarProblem::Io(e)),
        }
    }
    Ok(Some(()))
}

/// ustar names are prefix (345..500) + "/" + name (0..100).
fn entry_name(header: &[u8; BLOCK]) -> String {
    let field = |bytes: &[u8]| {
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    };
    let name = field(&header[0..100]);
    let prefix = if &header[257..262] == b"ustar" {
        field(&header[345..500])
    } else {
        String::new()
    };
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    }
}

fn octal(field: &[u8]) -> Option<u64> {
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    u64::from_str_radix(text.trim(), 8).ok()
}

/// The image ID from `"Config":"<hex>.json"` (classic layout) or
/// `"Config":"blobs/sha256/<hex>"` (OCI layout).
fn config_id(manifest: &str) -> Option<String> {
    let after = &manifest[manifest.find("\"Config\"")? + 8..];
    let value = after
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let value = &value[..value.find('"')?];
    let hex: String = value
        .rsplit('/')
        .next()?
        .trim_end_matches(".json")
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect();
    (hex.len() == 64).then(|| format!("sha256:{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;
    use std::io::Write;

    fn tar_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data) in entries {
            let mut header = [0u8; BLOCK];
            header[..name.len()].copy_from_slice(name.as_bytes());
            let size = format!("{:011o}\0", data.len());
            header[124..136].copy_from_slice(size.as_bytes());
            header[257..262].copy_from_slice(b"ustar");
            out.extend_from_slice(&header);
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
        }
        out.extend_from_slice(&[0u8; 2 * BLOCK]);
        out
    }

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn reads_the_image_id_from_plain_and_gzip_archives() {
        let tmp = TestDir::new("archive");
        let dir = &tmp.0;
        let manifest =
            format!("[{{\"Config\":\"{ID}.json\",\"RepoTags\":[\"x:1\"],\"Layers\":[]}}]");
        let tar = tar_with(&[
            ("abc/layer.tar", b"layer bytes"),
            ("manifest.json", manifest.as_bytes()),
        ]);
        std::fs::write(dir.join("image.tar"), &tar).unwrap();
        assert_eq!(
            image_id(&dir.join("image.tar")).unwrap(),
            format!("sha256:{ID}")
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        std::fs::write(dir.join("image.tar.gz"), gz.finish().unwrap()).unwrap();
        assert_eq!(
            image_id(&dir.join("image.tar.gz")).unwrap(),
            format!("sha256:{ID}")
        );
        std::fs::write(dir.join("junk"), b"not a tar at all").unwrap();
        assert!(image_id(&dir.join("junk")).is_err());
    }

    #[test]
    fn oci_layout_config() {
        let manifest = format!("[{{\"Config\": \"blobs/sha256/{ID}\"}}]");
        assert_eq!(config_id(&manifest), Some(format!("sha256:{ID}")));
        assert_eq!(config_id("[{\"Config\":\"short.json\"}]"), None);
    }
}
