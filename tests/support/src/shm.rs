//! The client <-> app message channels in `boinc_mmap_file`.
//!
//! The BOINC client and the app share an 8 KiB file mapped `MAP_SHARED`:
//! 8 channels of 1 KiB. Byte 0 of a channel says "a message is present", the
//! NUL-terminated text follows from byte 1. A sender writes only into an empty
//! channel (text first, flag last); the receiver copies the text, then clears
//! the flag. We use `pread`/`pwrite` on the file: on Linux they go through the
//! same page cache the app's mapping uses, so both sides see each other's bytes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

pub const MMAP_FILE_NAME: &str = "boinc_mmap_file";
pub const CHANNEL_SIZE: usize = 1024;
pub const CHANNEL_COUNT: usize = 8;
pub const MMAP_FILE_SIZE: usize = CHANNEL_SIZE * CHANNEL_COUNT;
/// Longest text a channel carries: the app copies at most `CHANNEL_SIZE - 2`
/// bytes (strlcpy into `CHANNEL_SIZE - 1`), the NUL needs one more.
pub const MAX_MESSAGE_LEN: usize = CHANNEL_SIZE - 2;

/// The channels, in their order in the file (fixed by the BOINC API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// client -> app: `<suspend/>`, `<resume/>`, `<quit/>`, `<abort/>`
    ProcessControlRequest = 0,
    /// app -> client (unused by current apps)
    ProcessControlReply = 1,
    /// client -> app (unused)
    GraphicsRequest = 2,
    /// app -> client: `<web_graphics_url>`, `<remote_desktop_addr>`
    GraphicsReply = 3,
    /// client -> app: `<heartbeat/>` about once a second
    Heartbeat = 4,
    /// app -> client: CPU time, fraction done, wss
    AppStatus = 5,
    /// app -> client
    TrickleUp = 6,
    /// client -> app
    TrickleDown = 7,
}

impl Channel {
    pub const ALL: [Channel; CHANNEL_COUNT] = [
        Channel::ProcessControlRequest,
        Channel::ProcessControlReply,
        Channel::GraphicsRequest,
        Channel::GraphicsReply,
        Channel::Heartbeat,
        Channel::AppStatus,
        Channel::TrickleUp,
        Channel::TrickleDown,
    ];

    fn flag_offset(self) -> u64 {
        self as u64 * CHANNEL_SIZE as u64
    }

    fn text_offset(self) -> u64 {
        self.flag_offset() + 1
    }
}

/// One side's handle on `boinc_mmap_file`. Methods take `&self`, so one handle
/// can be shared between threads (each thread using its own channels).
#[derive(Debug)]
pub struct SharedMemory {
    file: File,
    path: PathBuf,
}

impl SharedMemory {
    /// Creates the file if needed, extends it to 8 KiB and clears every channel,
    /// as the client does before each start of the app.
    pub fn create(path: &Path) -> io::Result<SharedMemory> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        if file.metadata()?.len() < MMAP_FILE_SIZE as u64 {
            file.set_len(MMAP_FILE_SIZE as u64)?;
        }
        let shm = SharedMemory {
            file,
            path: path.to_path_buf(),
        };
        shm.clear_all()?;
        Ok(shm)
    }

    /// Opens an existing file without touching its contents (used to play the app's side).
    pub fn open(path: &Path) -> io::Result<SharedMemory> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(SharedMemory {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Zeroes all channels (the client's `reset_msgs` before starting the app).
    pub fn clear_all(&self) -> io::Result<()> {
        self.file.write_all_at(&[0u8; MMAP_FILE_SIZE], 0)
    }

    pub fn has_message(&self, channel: Channel) -> io::Result<bool> {
        let mut flag = [0u8; 1];
        self.file.read_exact_at(&mut flag, channel.flag_offset())?;
        Ok(flag[0] != 0)
    }

    /// Sends if the channel is empty; returns false (and writes nothing) if the
    /// previous message has not been read yet.
    pub fn try_send(&self, channel: Channel, text: &str) -> io::Result<bool> {
        check_message(text)?;
        if self.has_message(channel)? {
            return Ok(false);
        }
        let mut bytes = Vec::with_capacity(text.len() + 1);
        bytes.extend_from_slice(text.as_bytes());
        bytes.push(0);
        // Text first, flag last: the reader trusts the text once it sees the flag.
        self.file.write_all_at(&bytes, channel.text_offset())?;
        self.file.write_all_at(&[1], channel.flag_offset())?;
        Ok(true)
    }

    /// Waits (polling every 5 ms) until the channel is empty, then sends.
    /// Returns the moment the message was written, or None on timeout.
    pub fn send(
        &self,
        channel: Channel,
        text: &str,
        timeout: Duration,
    ) -> io::Result<Option<Instant>> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.try_send(channel, text)? {
                return Ok(Some(Instant::now()));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Takes the pending message, if any, and marks the channel empty.
    pub fn receive(&self, channel: Channel) -> io::Result<Option<String>> {
        // The flag is read on its own, before the text: one pread of the whole
        // channel could copy the text before the flag and see stale text.
        if !self.has_message(channel)? {
            return Ok(None);
        }
        let text = self.peek_text(channel)?;
        self.file.write_all_at(&[0], channel.flag_offset())?;
        Ok(Some(text))
    }

    /// The text area of a channel, whether or not its flag is set.
    pub fn peek_text(&self, channel: Channel) -> io::Result<String> {
        let mut buf = [0u8; CHANNEL_SIZE - 1];
        self.file.read_exact_at(&mut buf, channel.text_offset())?;
        let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        Ok(String::from_utf8_lossy(&buf[..len]).into_owned())
    }
}

fn check_message(text: &str) -> io::Result<()> {
    if text.len() > MAX_MESSAGE_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "message of {} bytes does not fit a channel (max {MAX_MESSAGE_LEN})",
                text.len()
            ),
        ));
    }
    if text.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "message contains a NUL byte",
        ));
    }
    Ok(())
}
