//! Image archives as the engines take them: Podman 4 cannot load a
//! gzip-compressed `docker save` archive, so it gets a decompressed copy.
use std::fmt;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::slot::io as slot_io;

pub fn is_gzip(path: &Path) -> bool {
    let mut magic = [0u8; 2];
    slot_io::open_regular(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == [0x1f, 0x8b]
}

/// Why an archive could not be decompressed.
#[derive(Debug)]
pub enum GunzipError {
    Open { path: PathBuf, source: io::Error },
    Create { path: PathBuf, source: io::Error },
    Decompress { path: PathBuf, source: io::Error },
}

impl fmt::Display for GunzipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, path, source) = match self {
            GunzipError::Open { path, source } => ("open", path, source),
            GunzipError::Create { path, source } => ("create", path, source),
            GunzipError::Decompress { path, source } => ("decompress", path, source),
        };
        write!(f, "cannot {what} {}: {source}", path.display())
    }
}

impl std::error::Error for GunzipError {}

/// Writes the decompressed archive to `target`, a new file.
pub fn gunzip(path: &Path, target: &Path) -> Result<(), GunzipError> {
    let input = slot_io::open_regular(path).map_err(|source| GunzipError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    // The target is in the slot, where the job may have planted a link.
    let mut output = slot_io::create_new(target).map_err(|source| GunzipError::Create {
        path: target.to_path_buf(),
        source,
    })?;
    io::copy(&mut GzDecoder::new(BufReader::new(input)), &mut output)
        .map(|_| ())
        .map_err(|source| GunzipError::Decompress {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;
    use std::io::Write;

    #[test]
    fn gzip_archives_are_decompressed_and_plain_ones_recognised() {
        let tmp = TestDir::new("engine-archive");
        let dir = &tmp.0;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"tar bytes").unwrap();
        std::fs::write(dir.join("image.tar.gz"), gz.finish().unwrap()).unwrap();
        std::fs::write(dir.join("image.tar"), b"tar bytes").unwrap();
        assert!(is_gzip(&dir.join("image.tar.gz")));
        assert!(!is_gzip(&dir.join("image.tar")));
        gunzip(&dir.join("image.tar.gz"), &dir.join("out.tar")).unwrap();
        assert_eq!(std::fs::read(dir.join("out.tar")).unwrap(), b"tar bytes");
        let err = gunzip(&dir.join("missing.tar.gz"), &dir.join("out2.tar")).unwrap_err();
        assert!(err.to_string().starts_with("cannot open "), "{err}");
    }
}
