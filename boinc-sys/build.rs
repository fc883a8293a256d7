//! Builds the bindings to the BOINC application API.
//!
//! Two ways to get the BOINC code:
//! * system (default): the distro's BOINC app libraries, e.g. Debian's
//!   `libboinc-app-dev` (headers in /usr/include/boinc, shared libraries).
//! * source: `BOINC_SRC_DIR` names a configured BOINC source tree; the API
//!   and the lib/ files it needs are compiled here and linked statically,
//!   with the C++ runtime, so the binary has no runtime dependency on BOINC
//!   or C++ libraries (`cargo xtask dist` builds the release files this way).
//!
//! `BOINC_INCLUDE_DIR` and `BOINC_LIB_DIR` override where system mode looks.
//!
//! Windows targets have no system BOINC libraries. With `BOINC_INCLUDE_DIR`
//! and `BOINC_LIB_DIR` set (BOINC's headers and its static Windows libraries,
//! from `win_build` or `lib/Makefile.mingw`) the shim is compiled and linked
//! against them. Without them the bindings come from the hand-written
//! `src/declarations.rs` and nothing is compiled or linked: enough for
//! `cargo check --target x86_64-pc-windows-gnu`, not for a binary.
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{self, Command};

/// api/ sources compiled in source mode. graphics2_util.cpp, which upstream
/// also puts in libboinc_api, only serves graphics apps and is left out.
const API_SOURCES: &[&str] = &["boinc_api.cpp"];

/// lib/ sources that boinc_api.cpp and the shim pull in, directly or
/// through each other (app_ipc -> hostinfo -> coproc -> opencl_boinc, ...).
/// The rest of libboinc is client, GUI RPC or server code; cert_sig.cpp and
/// the crypto files would also drag in OpenSSL.
const LIB_SOURCES: &[&str] = &[
    "app_ipc.cpp",
    "coproc.cpp",
    "diagnostics.cpp",
    "filesys.cpp",
    "hostinfo.cpp",
    "mfile.cpp",
    "miofile.cpp",
    "network.cpp",
    "opencl_boinc.cpp",
    "parse.cpp",
    "prefs.cpp",
    "proc_control.cpp",
    "procinfo.cpp",
    "procinfo_unix.cpp",
    "proxy_info.cpp",
    "shmem.cpp",
    "str_util.cpp",
    "url.cpp",
    "util.cpp",
];

/// What to run in a fresh BOINC checkout before using it as BOINC_SRC_DIR.
const CONFIGURE_HINT: &str =
    "Run in that tree (needs autoconf, automake, libtool, m4, pkg-config):\n    \
     ./_autosetup && ./configure --disable-server --disable-client --disable-manager";

const SYSTEM_LIB_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
];

fn main() {
    println!("cargo:rerun-if-changed=csrc");
    let (include_dirs, linkage) = if target_is_windows() {
        if env_path("BOINC_SRC_DIR").is_some() {
            fail(
                "BOINC_SRC_DIR compiles the API from Linux's lib/ files and cannot target Windows.\n  \
                 Build BOINC's Windows libraries (lib/Makefile.mingw or win_build) and set\n  \
                 BOINC_INCLUDE_DIR and BOINC_LIB_DIR instead (see README, Windows and macOS).",
            );
        }
        match env_path("BOINC_INCLUDE_DIR") {
            Some(includes) => (
                link_windows_libraries(env::split_paths(&includes).collect()),
                Linkage::PrebuiltStatic,
            ),
            None => return declarations_without_library(),
        }
    } else {
        match env_path("BOINC_SRC_DIR") {
            Some(src) => (link_from_source(&src), Linkage::FromSource),
            None => (link_system(), Linkage::Shared),
        }
    };
    let boinc8 = declares_sporadic_api(&include_dirs);
    compile_shim(&include_dirs, boinc8, linkage);
    if target_is_macos() {
        // bindgen's clang has no macOS C headers here (zig brings its own
        // to the C++ compiler, not to libclang): the shim's API is fixed,
        // so its hand-written declarations serve.
        use_declarations();
    } else {
        generate_bindings(&include_dirs);
    }
}

/// How the BOINC code is linked, which decides how the shim hooks the API's
/// timer thread (`csrc/shim.cpp`, "Status changes").
#[derive(Clone, Copy, PartialEq)]
enum Linkage {
    /// Compiled here from BOINC_SRC_DIR: the API's calls to boinc_sleep are
    /// renamed at compile time to the shim's hook.
    FromSource,
    /// The distro's shared libraries: the shim's own boinc_sleep takes the
    /// place of libboinc's for libboinc_api's calls (ELF symbol interposition).
    Shared,
    /// BOINC's prebuilt static Windows libraries: no hook (their timer thread
    /// sleeps with the system's Sleep); the wrapper looks at the status itself.
    PrebuiltStatic,
}

/// Reads an environment variable and tells cargo to rebuild when it changes.
fn env_path(name: &str) -> Option<PathBuf> {
    println!("cargo:rerun-if-env-changed={name}");
    env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn fail(message: &str) -> ! {
    eprintln!("\nboinc-sys: {message}\n");
    process::exit(1);
}

fn target_is_macos() -> bool {
    env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "macos")
}

/// Stand-ins for the IOKit headers BOINC's lib/hostinfo.h includes on
/// macOS for one type (`csrc/macos`): the API compiles without Apple's SDK.
fn macos_stand_in_headers() -> PathBuf {
    println!("cargo:rerun-if-changed=csrc/macos");
    PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("csrc/macos")
}

fn target_is_windows() -> bool {
    env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "windows")
}

/// Windows without BOINC headers: bindgen has nothing to parse, so the
/// bindings are the hand-written declarations of the shim's C API (the same
/// functions csrc/shim.h declares). Type-checks; cannot link.
fn declarations_without_library() {
    println!(
        "cargo:warning=boinc-sys: no BOINC headers for this Windows target (BOINC_INCLUDE_DIR unset): \
         using the hand-written declarations, which is enough for `cargo check` only. \
         To link, build BOINC's libraries for Windows and set BOINC_INCLUDE_DIR and BOINC_LIB_DIR (see README)."
    );
    use_declarations();
}

/// The hand-written declarations of the shim's C API as the bindings.
fn use_declarations() {
    println!("cargo:rerun-if-changed=src/declarations.rs");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy("src/declarations.rs", out.join("bindings.rs"))
        .unwrap_or_else(|err| fail(&format!("cannot copy src/declarations.rs: {err}")));
}

/// Windows with BOINC's headers and static libraries. `BOINC_INCLUDE_DIR`
/// is a list of directories here (BOINC's api/, lib/ and win_build/ of a
/// source tree, or one installed include dir); `BOINC_LIB_DIR` holds
/// `libboinc_api.a` and `libboinc.a` (MinGW, `lib/Makefile.mingw`) or
/// `libboincapi_staticcrt.lib` and `libboinc_staticcrt.lib` (MSVC, `win_build`).
fn link_windows_libraries(includes: Vec<PathBuf>) -> Vec<PathBuf> {
    if !includes.iter().any(|dir| dir.join("boinc_api.h").is_file()) {
        fail(&format!(
            "no directory of BOINC_INCLUDE_DIR={} holds boinc_api.h.",
            env::join_paths(&includes)
                .unwrap_or_default()
                .to_string_lossy()
        ));
    }
    let lib_dir = env_path("BOINC_LIB_DIR").unwrap_or_else(|| {
        fail("BOINC_LIB_DIR is not set: name the directory that holds BOINC's static Windows libraries.")
    });
    let msvc = env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|e| e == "msvc");
    let (libraries, files): (&[&str], &[&str]) = if msvc {
        (
            &["libboincapi_staticcrt", "libboinc_staticcrt"],
            &["libboincapi_staticcrt.lib", "libboinc_staticcrt.lib"],
        )
    } else {
        (&["boinc_api", "boinc"], &["libboinc_api.a", "libboinc.a"])
    };
    if let Some(missing) = files.iter().find(|f| !lib_dir.join(f).is_file()) {
        fail(&format!(
            "{missing} not found in BOINC_LIB_DIR={}.",
            lib_dir.display()
        ));
    }
    // The archives are bundled into this crate's rlib: a rebuilt BOINC
    // library must rebuild the crate.
    for file in files {
        println!("cargo:rerun-if-changed={}", lib_dir.join(file).display());
    }
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    for library in libraries {
        println!("cargo:rustc-link-lib=static={library}");
    }
    // What libboinc calls on Windows: sockets and process information.
    for system in ["ws2_32", "psapi", "user32", "advapi32", "shell32"] {
        println!("cargo:rustc-link-lib=dylib={system}");
    }
    includes
}

fn link_system() -> Vec<PathBuf> {
    let include =
        env_path("BOINC_INCLUDE_DIR").unwrap_or_else(|| PathBuf::from("/usr/include/boinc"));
    if !include.join("boinc_api.h").is_file() {
        fail(&format!(
            "BOINC headers not found ({}/boinc_api.h is missing).\n  \
             Install them:   apt-get install libboinc-app-dev   (Debian/Ubuntu)\n  \
             or set BOINC_INCLUDE_DIR to the directory that holds boinc_api.h,\n  \
             or set BOINC_SRC_DIR to a configured BOINC source tree to build the API from source.",
            include.display()
        ));
    }
    let lib_dir = match env_path("BOINC_LIB_DIR") {
        Some(dir) => dir,
        None => SYSTEM_LIB_DIRS
            .iter()
            .map(PathBuf::from)
            .find(|dir| dir.join("libboinc_api.so").exists())
            .unwrap_or_else(|| {
                fail(
                    "BOINC application libraries not found (libboinc_api.so).\n  \
                     Install them:   apt-get install libboinc-app-dev   (Debian/Ubuntu)\n  \
                     or set BOINC_LIB_DIR to the directory that holds libboinc_api.so and libboinc.so.",
                )
            }),
    };
    for lib in ["libboinc_api.so", "libboinc.so"] {
        if !lib_dir.join(lib).exists() {
            fail(&format!(
                "{} not found in {}. Install libboinc-app-dev or set BOINC_LIB_DIR.",
                lib,
                lib_dir.display()
            ));
        }
    }
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    // Debian's libboinc_api.a is an empty archive, so link the shared library.
    println!("cargo:rustc-link-lib=dylib=boinc_api");
    println!("cargo:rustc-link-lib=dylib=boinc");
    println!("cargo:rustc-link-lib=dylib=stdc++");
    vec![include]
}

fn link_from_source(src: &Path) -> Vec<PathBuf> {
    check_source_tree(src);
    let api = src.join("api");
    let lib = src.join("lib");
    let files: Vec<PathBuf> = API_SOURCES
        .iter()
        .map(|f| api.join(f))
        .chain(LIB_SOURCES.iter().map(|f| lib.join(f)))
        .collect();
    if let Some(missing) = files.iter().find(|f| !f.is_file()) {
        fail(&format!(
            "{} is missing: BOINC_SRC_DIR={} is not a complete BOINC source tree,\n  \
             or a BOINC version whose API needs a different set of lib/ files.",
            missing.display(),
            src.display()
        ));
    }
    // Reconfiguring or updating the tree must rebuild the library.
    for path in [
        src.join("config.h"),
        src.join("version.h"),
        api.clone(),
        lib.clone(),
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    // Two archives, because only the API's calls to boinc_sleep are renamed
    // to the shim's hook: lib/util.cpp keeps the definition the hook calls.
    let compile = |name: &str, sources: Vec<PathBuf>, hook: bool| {
        let mut build = cc::Build::new();
        build
            .cpp(true)
            .warnings(false)
            // The BOINC sources include config.h themselves; the define only
            // mirrors what configure's Makefiles pass.
            .define("HAVE_CONFIG_H", None)
            .include(src)
            .include(&api)
            .include(&lib)
            .files(&sources);
        if target_is_macos() {
            build
                .include(macos_stand_in_headers())
                .include(lib.join("mac"));
        }
        if hook {
            build.define("boinc_sleep", "dw_api_timer_sleep");
        }
        link_cxx_runtime_statically(&mut build);
        build.compile(name);
    };
    let (api_files, lib_files) = files.split_at(API_SOURCES.len());
    compile("boinc_api_static", api_files.to_vec(), true);
    let mut lib_files = lib_files.to_vec();
    if target_is_macos() {
        lib_files.push(macos_stand_in_headers().join("backtrace_stub.cpp"));
    }
    compile("boinc_lib_static", lib_files, false);
    // The API starts a timer thread (pthread_create), which needs
    // libpthread on glibc older than 2.34 (macOS: part of libSystem).
    if !target_is_macos() {
        println!("cargo:rustc-link-lib=dylib=pthread");
    }
    let mut dirs = vec![src.to_path_buf(), api, lib];
    if target_is_macos() {
        dirs.push(macos_stand_in_headers());
    }
    dirs
}

fn check_source_tree(src: &Path) {
    // Build scripts run in the package directory, so a relative path would
    // not mean what it meant where cargo was started.
    if src.is_relative() {
        fail(&format!(
            "BOINC_SRC_DIR={} must be an absolute path.",
            src.display()
        ));
    }
    if !src.is_dir() {
        fail(&format!(
            "BOINC_SRC_DIR={} does not exist.\n  \
             Point it at a BOINC source tree (git clone https://github.com/BOINC/boinc),\n  \
             configured once. {CONFIGURE_HINT}",
            src.display()
        ));
    }
    if !src.join("api/boinc_api.h").is_file() || !src.join("lib/util.cpp").is_file() {
        fail(&format!(
            "BOINC_SRC_DIR={} is not a BOINC source tree (api/boinc_api.h or lib/util.cpp missing).",
            src.display()
        ));
    }
    if !src.join("config.h").is_file() {
        fail(&format!(
            "BOINC_SRC_DIR={} is not configured (config.h missing).\n  {CONFIGURE_HINT}",
            src.display()
        ));
    }
}

/// BOINC 8.x added the sporadic-app API together with the wss argument of
/// boinc_report_app_status_aux, so one test tells the two header generations apart.
fn declares_sporadic_api(include_dirs: &[PathBuf]) -> bool {
    include_dirs
        .iter()
        .filter_map(|dir| fs::read_to_string(dir.join("boinc_api.h")).ok())
        .any(|text| text.contains("boinc_sporadic_dir"))
}

fn compile_shim(include_dirs: &[PathBuf], boinc8: bool, linkage: Linkage) {
    let mut build = cc::Build::new();
    build.cpp(true).file("csrc/shim.cpp").include("csrc");
    // Source mode and Windows libraries make the binary a project ships:
    // the C++ runtime goes into it too. Debian's shared BOINC libraries
    // need the shared libstdc++ anyway.
    if linkage != Linkage::Shared {
        link_cxx_runtime_statically(&mut build);
    }
    match linkage {
        Linkage::FromSource => build.define("DW_TIMER_HOOK_RENAMED", None),
        Linkage::Shared => build.define("DW_TIMER_HOOK_INTERPOSED", None),
        Linkage::PrebuiltStatic => &mut build,
    };
    for dir in include_dirs {
        build.include(dir);
    }
    if boinc8 {
        build.define("DW_BOINC_8", None);
    }
    build.compile("boinc_shim");
}

/// Links the C++ runtime into the binary when the compiler has it as a static
/// library (g++ and MinGW: libstdc++.a), so that volunteers' hosts need no
/// particular libstdc++. musl targets are linked statically as a whole, with
/// their compiler's own C++ library (zig's libc++): they keep cc's usual
/// `-lstdc++` (zig's clang would even name the host's glibc libstdc++.a).
fn link_cxx_runtime_statically(build: &mut cc::Build) {
    if env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|e| e == "musl") {
        return;
    }
    let compiler = build.get_compiler();
    let printed = Command::new(compiler.path())
        .args(compiler.args())
        .arg("-print-file-name=libstdc++.a")
        .output();
    let archive = match printed {
        Ok(out) if out.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
        _ => return,
    };
    if !(archive.is_absolute() && archive.is_file()) {
        return;
    }
    let dir = archive
        .parent()
        .expect("an absolute file path has a parent");
    build.cpp_link_stdlib(None);
    println!("cargo:rustc-link-search=native={}", dir.display());
    // Not bundled into the rlib: the final link takes it from the search path.
    println!("cargo:rustc-link-lib=static:-bundle=stdc++");
}

fn generate_bindings(include_dirs: &[PathBuf]) {
    let mut builder = bindgen::Builder::default()
        .header("csrc/wrapper.h")
        .clang_arg("-Icsrc")
        .allowlist_function("dw_.*")
        .allowlist_function("boinc_finish")
        .allowlist_function("boinc_is_standalone")
        .allowlist_type("dw_status")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for dir in include_dirs {
        builder = builder.clang_arg(format!("-I{}", dir.display()));
    }
    let bindings = builder.generate().unwrap_or_else(|err| {
        fail(&format!(
            "bindgen could not parse the BOINC headers: {err}\n  \
             bindgen needs libclang: apt-get install libclang-dev clang"
        ))
    });
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .unwrap_or_else(|err| fail(&format!("cannot write bindings: {err}")));
}
