//! What a macOS release file asks of the system, read from its Mach-O load
//! commands (no Apple tools here): its CPU, the dylibs it loads, and the
//! oldest macOS it declares it runs on.
use anyhow::{bail, Context, Result};

const MAGIC_64: u32 = 0xfeed_facf;
const HEADER_SIZE: usize = 32;
const CPU_X86_64: u32 = 0x0100_0007;
const CPU_ARM64: u32 = 0x0100_000c;
const LC_LOAD_DYLIB: u32 = 0xc;
const LC_LOAD_WEAK_DYLIB: u32 = 0x8000_0018;
const LC_REEXPORT_DYLIB: u32 = 0x8000_001f;
const LC_VERSION_MIN_MACOSX: u32 = 0x24;
const LC_BUILD_VERSION: u32 = 0x32;
const PLATFORM_MACOS: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cpu {
    X86_64,
    Arm64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachO {
    pub cpu: Cpu,
    pub dylibs: Vec<String>,
    /// (major, minor, patch); None when the file names none.
    pub min_macos: Option<(u32, u32, u32)>,
}

/// Reads a 64-bit little-endian Mach-O executable (not a universal file:
/// each release file is for one CPU).
pub fn parse(bytes: &[u8]) -> Result<MachO> {
    let word = |at: usize| -> Result<u32> {
        let slice = bytes
            .get(at..at + 4)
            .context("the file ends inside a load command")?;
        Ok(u32::from_le_bytes(slice.try_into().expect("four bytes")))
    };
    if word(0)? != MAGIC_64 {
        bail!("not a 64-bit Mach-O file");
    }
    let cpu = match word(4)? {
        CPU_X86_64 => Cpu::X86_64,
        CPU_ARM64 => Cpu::Arm64,
        other => bail!("unexpected Mach-O CPU type {other:#x}"),
    };
    let count = word(16)?;
    let mut at = HEADER_SIZE;
    let mut dylibs = Vec::new();
    let mut min_macos = None;
    for _ in 0..count {
        let (cmd, size) = (word(at)?, word(at + 4)? as usize);
        if size < 8 {
            bail!("a load command of {size} bytes");
        }
        let command = bytes
            .get(at..at + size)
            .context("a load command runs past the end of the file")?;
        match cmd {
            LC_LOAD_DYLIB | LC_LOAD_WEAK_DYLIB | LC_REEXPORT_DYLIB => {
                let offset = word(at + 8)? as usize;
                let name = command
                    .get(offset..)
                    .context("a dylib name outside its command")?;
                let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                dylibs.push(String::from_utf8_lossy(&name[..end]).into_owned());
            }
            LC_BUILD_VERSION if word(at + 8)? == PLATFORM_MACOS => {
                min_macos = Some(version(word(at + 12)?));
            }
            LC_VERSION_MIN_MACOSX => min_macos = Some(version(word(at + 8)?)),
            _ => {}
        }
        at += size;
    }
    Ok(MachO {
        cpu,
        dylibs,
        min_macos,
    })
}

/// `xxxx.yy.zz` packed in nibbles: 16 bits, 8, 8.
fn version(packed: u32) -> (u32, u32, u32) {
    (packed >> 16, (packed >> 8) & 0xff, packed & 0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(cmd: u32, body: &[u8]) -> Vec<u8> {
        let size = (8 + body.len()).next_multiple_of(8);
        let mut bytes = cmd.to_le_bytes().to_vec();
        bytes.extend((size as u32).to_le_bytes());
        bytes.extend(body);
        bytes.resize(size, 0);
        bytes
    }

    fn dylib(name: &str) -> Vec<u8> {
        // name offset (from the command's start), timestamp, versions
        let mut body = 24u32.to_le_bytes().to_vec();
        body.extend([0u8; 12]);
        body.extend(name.as_bytes());
        body.push(0);
        command(LC_LOAD_DYLIB, &body)
    }

    fn file(cpu: u32, commands: &[Vec<u8>]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [MAGIC_64, cpu, 0, 2, commands.len() as u32, 0, 0, 0] {
            bytes.extend(word.to_le_bytes());
        }
        commands.iter().for_each(|c| bytes.extend(c));
        bytes
    }

    #[test]
    fn dylibs_and_the_minimum_macos_are_read() {
        let mut build = PLATFORM_MACOS.to_le_bytes().to_vec();
        build.extend(((11 << 16) | (2 << 8) | 1u32).to_le_bytes());
        build.extend([0u8; 8]);
        let bytes = file(
            CPU_ARM64,
            &[
                dylib("/usr/lib/libSystem.B.dylib"),
                command(LC_BUILD_VERSION, &build),
                dylib("/usr/lib/libc++.1.dylib"),
            ],
        );
        assert_eq!(
            parse(&bytes).unwrap(),
            MachO {
                cpu: Cpu::Arm64,
                dylibs: vec![
                    "/usr/lib/libSystem.B.dylib".into(),
                    "/usr/lib/libc++.1.dylib".into()
                ],
                min_macos: Some((11, 2, 1)),
            }
        );
        let old = command(
            LC_VERSION_MIN_MACOSX,
            &((10u32 << 16) | (12 << 8)).to_le_bytes(),
        );
        let parsed = parse(&file(CPU_X86_64, &[old])).unwrap();
        assert_eq!(
            (parsed.cpu, parsed.min_macos),
            (Cpu::X86_64, Some((10, 12, 0)))
        );
    }

    #[test]
    fn other_files_are_refused() {
        assert!(parse(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0").is_err());
        assert!(parse(&file(0x12, &[])).is_err());
        // A command that claims more than the file holds.
        let mut truncated = file(CPU_ARM64, &[dylib("/usr/lib/libSystem.B.dylib")]);
        truncated.truncate(HEADER_SIZE + 12);
        assert!(parse(&truncated).is_err());
    }
}
