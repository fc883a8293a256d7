//! Reading and writing files in the slot, which the job shares with the
//! wrapper and may fill with anything: a symlink to `/dev/zero` or to a host
//! file, a FIFO, a file of gigabytes. Every file the wrapper reads or writes
//! in the slot goes through here, so that
//! * a read opens only a regular file, never follows a final symlink, never
//!   blocks (a FIFO with no writer) and takes at most a given number of bytes;
//! * a write never goes through a link: it creates a new file under a
//!   temporary name (exclusively, without following links) and renames it
//!   over the old name, which replaces a planted link instead of writing to
//!   where it points.
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Opens `path` for reading if it is a regular file; a symlink, FIFO, device
/// or directory is an error (checked on the open file, so it cannot be
/// swapped between a check and the open).
pub fn open_regular(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use rustix::fs::OFlags;
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: opening a FIFO that no one writes to would wait forever.
        // On a regular file it changes nothing.
        options.custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32);
    }
    #[cfg(not(unix))]
    if fs::symlink_metadata(path)?.file_type().is_symlink() {
        return Err(not_regular(path));
    }
    let file = options.open(path).map_err(|err| {
        // O_NOFOLLOW on a symlink fails with ELOOP; say what it is.
        if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            not_regular(path)
        } else {
            err
        }
    })?;
    if !file.metadata()?.is_file() {
        return Err(not_regular(path));
    }
    Ok(file)
}

/// At most `limit` bytes from the start of the regular file `path`.
pub fn read_prefix(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_regular(path)?.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The whole regular file `path`; one larger than `limit` bytes is an error.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let bytes = read_prefix(path, limit.saturating_add(1))?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {limit} bytes", path.display()),
        ));
    }
    Ok(bytes)
}

/// Like `read_bounded`, as UTF-8 text.
pub fn read_text(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read_bounded(path, limit)?).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not UTF-8 text", path.display()),
        )
    })
}

/// Replaces whatever is at `path` (a file, a planted symlink) by a new
/// regular file holding `bytes`. With `durable`, the data is on disk before
/// the rename, so a power cut leaves the old file or the new one.
pub fn replace(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let temp = temp_path(path);
    let mut file = create_new(&temp)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| if durable { file.sync_all() } else { Ok(()) });
    drop(file);
    match written.and_then(|()| fs::rename(&temp, path)) {
        Ok(()) => Ok(()),
        Err(err) => {
            let _ = fs::remove_file(&temp);
            Err(err)
        }
    }
}

/// Removes `path` unless it is a regular file: for the files that the BOINC
/// library opens itself (stderr.txt, its lock file, boinc_finish_called),
/// which it would follow to wherever a link planted by the job points.
pub fn remove_unless_regular(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(meta) if meta.is_dir() => Err(not_regular(path)),
        Ok(_) => fs::remove_file(path),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    }
}

/// `name.tmp` beside `path`: a fixed name, so a crash leaves at most one.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Creates `path` as a new, empty regular file for writing, removing what
/// is there first (a leftover temporary file or anything the job put under
/// that name). Exclusive creation never follows a symlink: if the job puts
/// one back in between, this fails rather than write through it.
pub fn create_new(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options
            .mode(0o644)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    const ATTEMPTS: usize = 3;
    let mut last = None;
    for _ in 0..ATTEMPTS {
        match options.open(path) {
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                // remove_file unlinks a symlink itself, never its target.
                fs::remove_file(path)?;
                last = Some(err);
            }
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
}

fn not_regular(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} is not a regular file", path.display()),
    )
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::time::{Duration, Instant};

    use crate::test_dir::TestDir;

    #[test]
    fn reads_regular_files_within_the_limit() {
        let d = TestDir::new("slot-io-read");
        let file = d.0.join("f");
        fs::write(&file, "0.5\n").unwrap();
        assert_eq!(read_text(&file, 100).unwrap(), "0.5\n");
        assert_eq!(read_prefix(&file, 2).unwrap(), b"0.");
        assert!(read_bounded(&file, 3).is_err());
        assert_eq!(read_bounded(&file, 4).unwrap(), b"0.5\n");
        assert_eq!(
            read_prefix(&d.0.join("missing"), 10).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn refuses_symlinks_devices_and_directories() {
        let d = TestDir::new("slot-io-refuse");
        fs::write(d.0.join("real"), "1").unwrap();
        symlink(d.0.join("real"), d.0.join("link")).unwrap();
        symlink("/dev/zero", d.0.join("zero")).unwrap();
        for name in ["link", "zero"] {
            let err = read_prefix(&d.0.join(name), 10).unwrap_err();
            assert!(
                err.to_string().contains("not a regular file"),
                "{name}: {err}"
            );
        }
        assert!(read_prefix(Path::new("/dev/zero"), 10).is_err());
        assert!(read_prefix(&d.0, 10).is_err());
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let d = TestDir::new("slot-io-fifo");
        let fifo = d.0.join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
        )
        .unwrap();
        let started = Instant::now();
        assert!(read_prefix(&fifo, 10).is_err());
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_huge_file_costs_only_the_limit() {
        let d = TestDir::new("slot-io-huge");
        let file = d.0.join("big");
        File::create(&file).unwrap().set_len(1 << 40).unwrap();
        assert_eq!(read_prefix(&file, 16).unwrap().len(), 16);
        assert!(read_bounded(&file, 16).is_err());
    }

    #[test]
    fn replace_writes_over_a_planted_link_not_through_it() {
        let d = TestDir::new("slot-io-replace");
        let outside = d.0.join("outside");
        fs::write(&outside, "precious").unwrap();
        let file = d.0.join("journal");
        symlink(&outside, &file).unwrap();
        symlink(&outside, d.0.join("journal.tmp")).unwrap();
        replace(&file, b"new", true).unwrap();
        assert_eq!(fs::read_to_string(&outside).unwrap(), "precious");
        assert!(fs::symlink_metadata(&file).unwrap().is_file());
        assert_eq!(fs::read_to_string(&file).unwrap(), "new");
        assert!(!d.0.join("journal.tmp").exists());
        replace(&file, b"newer", false).unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "newer");
    }

    #[test]
    fn create_new_replaces_a_planted_link() {
        let d = TestDir::new("slot-io-create");
        let outside = d.0.join("outside");
        fs::write(&outside, "precious").unwrap();
        let file = d.0.join("unpacked.tar");
        symlink(&outside, &file).unwrap();
        create_new(&file).unwrap().write_all(b"data").unwrap();
        assert_eq!(fs::read_to_string(&outside).unwrap(), "precious");
        assert_eq!(fs::read_to_string(&file).unwrap(), "data");
    }

    #[test]
    fn replace_fails_cleanly_on_a_directory() {
        let d = TestDir::new("slot-io-dir");
        fs::create_dir(d.0.join("x")).unwrap();
        assert!(replace(&d.0.join("x"), b"1", false).is_err());
        assert!(!d.0.join("x.tmp").exists());
        fs::create_dir(d.0.join("y.tmp")).unwrap();
        assert!(replace(&d.0.join("y"), b"1", false).is_err());
    }

    #[test]
    fn remove_unless_regular_keeps_files_and_removes_the_rest() {
        let d = TestDir::new("slot-io-clear");
        let outside = d.0.join("outside");
        fs::write(&outside, "precious").unwrap();
        fs::write(d.0.join("stderr.txt"), "log").unwrap();
        symlink(&outside, d.0.join("lock")).unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            d.0.join("fifo"),
            rustix::fs::Mode::from_raw_mode(0o644),
        )
        .unwrap();
        for name in ["stderr.txt", "lock", "fifo", "missing"] {
            remove_unless_regular(&d.0.join(name)).unwrap();
        }
        assert_eq!(fs::read_to_string(d.0.join("stderr.txt")).unwrap(), "log");
        assert!(fs::symlink_metadata(d.0.join("lock")).is_err());
        assert!(fs::symlink_metadata(d.0.join("fifo")).is_err());
        assert_eq!(fs::read_to_string(&outside).unwrap(), "precious");
    }
}
