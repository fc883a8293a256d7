//! What makes a release file self-contained, checked on the built file with
//! binutils (readelf, objdump), so that a regression fails the build:
//!
//! * Linux: for the expected machine; dynamic dependencies at most the C
//!   library's own (libc, libm, libgcc_s, the loader), or none (static);
//!   no glibc symbol version above 2.17 (RHEL 7 era: every glibc Linux
//!   volunteers run).
//! * Windows: a PE for x86-64 importing only DLLs that ship with Windows
//!   (no libstdc++-6.dll, libgcc_s_seh-1.dll or libwinpthread-1.dll).
//! * macOS: a Mach-O for the expected CPU loading only dylibs of macOS's
//!   /usr/lib (libSystem, libc++, and the iconv pair Rust's std links),
//!   declaring a minimum macOS no newer than the one the platform states.
//! * All: the BOINC API's `API_VERSION_<version>` text is in the file. A
//!   project's `update_versions` records it as the app version's
//!   `<api_version>`; without it the client treats the wrapper as a pre-6.0
//!   app and talks to it through System V shared memory.
use crate::macho::{self, Cpu};
use crate::run::output;
use anyhow::{bail, Result};
use std::path::Path;
use std::process::Command;

pub const MAX_GLIBC: (u32, u32) = (2, 17);

const ALLOWED_ELF_NEEDED: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libgcc_s.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
];

/// DLLs every Windows 10+ has (compared without case, as Windows does).
const WINDOWS_SYSTEM_DLLS: &[&str] = &[
    "kernel32.dll",
    "advapi32.dll",
    "msvcrt.dll",
    "ntdll.dll",
    "shell32.dll",
    "user32.dll",
    "ws2_32.dll",
    "psapi.dll",
    "userenv.dll",
    "bcrypt.dll",
    "bcryptprimitives.dll",
];

/// The dylibs a macOS file may load: every macOS has them in /usr/lib
/// (the dyld cache). libc++ only if the C++ runtime were not linked in.
const MACOS_SYSTEM_DYLIBS: &[&str] = &[
    "/usr/lib/libSystem.B.dylib",
    "/usr/lib/libc++.1.dylib",
    "/usr/lib/libiconv.2.dylib",
    "/usr/lib/libcharset.1.dylib",
];

/// What a check found out about one file.
pub struct Report {
    pub size: u64,
    /// Shared libraries (ELF NEEDED) or DLLs it imports.
    pub dependencies: Vec<String>,
    /// The highest `GLIBC_x.y` symbol version, if it uses glibc at all.
    pub max_glibc: Option<(u32, u32)>,
    /// The BOINC API version the file says it speaks (`API_VERSION_x.y.z`).
    pub api_version: String,
    /// macOS: the oldest version the file says it runs on.
    pub min_macos: Option<(u32, u32, u32)>,
}

impl Report {
    pub fn dependencies_text(&self) -> String {
        if self.dependencies.is_empty() {
            "none (static)".to_string()
        } else {
            self.dependencies.join(", ")
        }
    }

    /// The C library's version bound: glibc's highest symbol, or macOS's minimum.
    pub fn glibc_text(&self) -> String {
        match (self.max_glibc, self.min_macos) {
            (Some((major, minor)), _) => format!("GLIBC_{major}.{minor}"),
            (None, Some((major, minor, _))) => format!("macOS {major}.{minor} or later"),
            (None, None) => "none".to_string(),
        }
    }
}

pub fn check_linux(file: &Path, elf_machine: &str) -> Result<Report> {
    let header = output(Command::new("readelf").arg("-h").arg(file))?;
    let machine = header
        .lines()
        .find_map(|l| l.trim().strip_prefix("Machine:"))
        .map(str::trim);
    if machine != Some(elf_machine) {
        bail!("{} is not built for {elf_machine}", file.display());
    }
    let dynamic = output(Command::new("readelf").arg("-d").arg(file))?;
    let symbols = output(Command::new("readelf").args(["-W", "--dyn-syms"]).arg(file))?;
    let report = Report {
        size: file.metadata()?.len(),
        dependencies: elf_needed(&dynamic),
        max_glibc: max_glibc_version(&symbols),
        api_version: api_version_of(file)?,
        min_macos: None,
    };
    let problems = linux_problems(&report);
    self_contained(file, report, problems)
}

pub fn check_windows(file: &Path, mingw_prefix: &str) -> Result<Report> {
    let headers = output(
        Command::new(format!("{mingw_prefix}-objdump"))
            .arg("-p")
            .arg(file),
    )?;
    if !headers.contains("file format pei-x86-64") {
        bail!("{} is not a PE file for x86-64", file.display());
    }
    let report = Report {
        size: file.metadata()?.len(),
        dependencies: dll_names(&headers),
        max_glibc: None,
        api_version: api_version_of(file)?,
        min_macos: None,
    };
    let foreign: Vec<&String> = report
        .dependencies
        .iter()
        .filter(|dll| !is_windows_system_dll(dll))
        .collect();
    if !foreign.is_empty() {
        bail!(
            "{} needs DLLs that Windows does not ship: {foreign:?} (the C++ runtime must be linked statically)",
            file.display()
        );
    }
    Ok(report)
}

pub fn check_macos(file: &Path, cpu: Cpu, min_macos: (u32, u32)) -> Result<Report> {
    let bytes = std::fs::read(file)?;
    let parsed = macho::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if parsed.cpu != cpu {
        bail!("{} is for {:?}, not {cpu:?}", file.display(), parsed.cpu);
    }
    let report = Report {
        size: bytes.len() as u64,
        dependencies: parsed.dylibs,
        max_glibc: None,
        api_version: api_version_from(file, &bytes)?,
        min_macos: parsed.min_macos,
    };
    let problems = macos_problems(&report, min_macos);
    self_contained(file, report, problems)
}

/// The report, or the file's problems as one error.
fn self_contained(file: &Path, report: Report, problems: Vec<String>) -> Result<Report> {
    if !problems.is_empty() {
        bail!(
            "{} is not self-contained: {}",
            file.display(),
            problems.join("; ")
        );
    }
    Ok(report)
}

fn macos_problems(report: &Report, min_macos: (u32, u32)) -> Vec<String> {
    let mut problems: Vec<String> = report
        .dependencies
        .iter()
        .filter(|lib| !MACOS_SYSTEM_DYLIBS.contains(&lib.as_str()))
        .map(|lib| format!("loads {lib}"))
        .collect();
    match report.min_macos {
        None => problems.push("names no minimum macOS version".into()),
        Some((major, minor, _)) if (major, minor) > min_macos => problems.push(format!(
            "needs macOS {major}.{minor} (at most {}.{} allowed)",
            min_macos.0, min_macos.1
        )),
        Some(_) => {}
    }
    problems
}

fn linux_problems(report: &Report) -> Vec<String> {
    let mut problems: Vec<String> = report
        .dependencies
        .iter()
        .filter(|lib| !ALLOWED_ELF_NEEDED.contains(&lib.as_str()))
        .map(|lib| format!("needs {lib}"))
        .collect();
    if let Some(version) = report.max_glibc.filter(|v| *v > MAX_GLIBC) {
        problems.push(format!(
            "uses GLIBC_{}.{} symbols (at most GLIBC_{}.{} allowed)",
            version.0, version.1, MAX_GLIBC.0, MAX_GLIBC.1
        ));
    }
    problems
}

/// The file's `API_VERSION_x.y.z` text, found as `update_versions` finds it
/// (`strings` piped to a grep for the marker followed by three numbers, at
/// the end of a string).
pub fn api_version_of(file: &Path) -> Result<String> {
    api_version_from(file, &std::fs::read(file)?)
}

/// `api_version_of` for a file already read.
fn api_version_from(file: &Path, bytes: &[u8]) -> Result<String> {
    match api_version_in(bytes) {
        Some(version) => Ok(version),
        None => bail!(
            "{} has no API_VERSION_x.y.z text: a BOINC server's update_versions would record no \
             <api_version> and the client would run it as a pre-6.0 app \
             (the shim must refer to boinc_api.cpp's api_version)",
            file.display()
        ),
    }
}

fn api_version_in(bytes: &[u8]) -> Option<String> {
    const MARKER: &[u8] = b"API_VERSION_";
    let mut from = 0;
    while let Some(at) = bytes[from..]
        .windows(MARKER.len())
        .position(|window| window == MARKER)
    {
        let start = from + at + MARKER.len();
        let len = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b'.')
            .count();
        let version = &bytes[start..start + len];
        let ends_string = matches!(bytes.get(start + len), None | Some(0) | Some(b'\n'));
        let numbers: Vec<&[u8]> = version.split(|b| *b == b'.').collect();
        if ends_string && numbers.len() == 3 && numbers.iter().all(|n| !n.is_empty()) {
            return Some(String::from_utf8_lossy(version).into_owned());
        }
        from = start;
    }
    None
}

/// `0x...1 (NEEDED)  Shared library: [libc.so.6]` lines of `readelf -d`.
fn elf_needed(readelf_dynamic: &str) -> Vec<String> {
    readelf_dynamic
        .lines()
        .filter(|line| line.contains("(NEEDED)"))
        .filter_map(|line| {
            let start = line.find('[')? + 1;
            let end = line[start..].find(']')? + start;
            Some(line[start..end].to_string())
        })
        .collect()
}

/// The highest `@GLIBC_x.y` (or `@@GLIBC_x.y`) in `readelf --dyn-syms`.
fn max_glibc_version(readelf_symbols: &str) -> Option<(u32, u32)> {
    readelf_symbols
        .split_whitespace()
        .filter_map(|word| word.split_once("@GLIBC_").map(|(_, v)| v))
        .filter_map(|version| {
            let mut parts = version.split('.');
            let major = parts.next()?.parse().ok()?;
            let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
            Some((major, minor))
        })
        .max()
}

/// `DLL Name: KERNEL32.dll` lines of `objdump -p`.
fn dll_names(objdump_headers: &str) -> Vec<String> {
    objdump_headers
        .lines()
        .filter_map(|line| line.trim().strip_prefix("DLL Name:"))
        .map(|name| name.trim().to_string())
        .collect()
}

/// Windows' own DLLs, including the API sets (`api-ms-win-*`), which
/// Windows resolves itself.
fn is_windows_system_dll(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("api-ms-win-") || WINDOWS_SYSTEM_DLLS.contains(&name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DYNAMIC: &str = "\nDynamic section at offset 0x7dd8 contains 26 entries:\n  Tag        Type                         Name/Value\n 0x0000000000000001 (NEEDED)             Shared library: [libstdc++.so.6]\n 0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]\n 0x000000000000000c (INIT)               0x2000\n";

    #[test]
    fn needed_libraries_are_read_from_readelf() {
        assert_eq!(elf_needed(DYNAMIC), ["libstdc++.so.6", "libc.so.6"]);
        assert!(elf_needed("\nThere is no dynamic section in this file.\n").is_empty());
    }

    #[test]
    fn the_highest_glibc_version_wins_numerically() {
        let symbols = "     1: 0 0 FUNC GLOBAL DEFAULT UND free@GLIBC_2.2.5 (2)\n\
                       2: 0 0 FUNC GLOBAL DEFAULT UND memcpy@GLIBC_2.14 (3)\n\
                       3: 0 0 FUNC GLOBAL DEFAULT UND fcntl64@GLIBC_2.28 (4)\n\
                       4: 0 0 FUNC GLOBAL DEFAULT UND __cxa_atexit@@GLIBC_2.3 (5)\n";
        assert_eq!(max_glibc_version(symbols), Some((2, 28)));
        assert_eq!(max_glibc_version("no symbols"), None);
    }

    #[test]
    fn linux_files_may_need_only_the_c_library() {
        let ok = Report {
            size: 1,
            dependencies: vec!["libc.so.6".into(), "libgcc_s.so.1".into()],
            max_glibc: Some((2, 17)),
            api_version: "8.2.15".into(),
            min_macos: None,
        };
        assert!(linux_problems(&ok).is_empty());
        let bad = Report {
            size: 1,
            dependencies: vec!["libc.so.6".into(), "libboinc_api.so.7".into()],
            max_glibc: Some((2, 34)),
            api_version: "8.2.15".into(),
            min_macos: None,
        };
        let problems = linux_problems(&bad);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("libboinc_api.so.7"));
        assert!(problems[1].contains("GLIBC_2.34"));
    }

    #[test]
    fn the_api_version_is_a_whole_string_of_three_numbers() {
        assert_eq!(
            api_version_in(b"\0junk API_VERSION_\0API_VERSION_8.2.15\0more").as_deref(),
            Some("8.2.15")
        );
        assert_eq!(api_version_in(b"API_VERSION_8.2\0"), None);
        assert_eq!(api_version_in(b"API_VERSION_8.2.15x\0"), None);
        assert_eq!(api_version_in(b"nothing here"), None);
    }

    #[test]
    fn macos_files_may_load_only_system_dylibs_and_name_their_oldest_macos() {
        let report = |dylibs: &[&str], min_macos| Report {
            size: 1,
            dependencies: dylibs.iter().map(|d| d.to_string()).collect(),
            max_glibc: None,
            api_version: "8.2.15".into(),
            min_macos,
        };
        let system = ["/usr/lib/libSystem.B.dylib", "/usr/lib/libiconv.2.dylib"];
        assert!(macos_problems(&report(&system, Some((11, 0, 0))), (11, 0)).is_empty());
        let problems = macos_problems(
            &report(&["/opt/homebrew/lib/libboinc.dylib"], Some((13, 0, 0))),
            (11, 0),
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("libboinc"));
        assert!(problems[1].contains("macOS 13.0"));
        assert_eq!(macos_problems(&report(&system, None), (11, 0)).len(), 1);
        assert_eq!(
            report(&system, Some((10, 13, 0))).glibc_text(),
            "macOS 10.13 or later"
        );
    }

    #[test]
    fn windows_files_may_import_only_system_dlls() {
        let headers = "\tDLL Name: KERNEL32.dll\n\tDLL Name: api-ms-win-core-synch-l1-2-0.dll\n\tDLL Name: libstdc++-6.dll\n";
        let dlls = dll_names(headers);
        assert_eq!(dlls.len(), 3);
        let foreign: Vec<&String> = dlls.iter().filter(|d| !is_windows_system_dll(d)).collect();
        assert_eq!(foreign, ["libstdc++-6.dll"]);
    }
}
