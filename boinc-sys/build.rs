//! Builds the bindings to the BOINC application API.
//!
//! Two ways to get the BOINC code:
//! * system (default): the distro's BOINC app libraries, e.g. Debian's
//!   `libboinc-app-dev` (headers in /usr/include/boinc, shared libraries).
//! * source: `BOINC_SRC_DIR` names a configured BOINC source tree; the API
//!   and the lib/ files it needs are compiled here and linked statically, so
//!   the binary has no runtime dependency on BOINC libraries.
//!
//! `BOINC_INCLUDE_DIR` and `BOINC_LIB_DIR` override where system mode looks.
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process;

/// lib/ sources the API needs in source mode (the rest of libboinc is
/// client, GUI RPC or server code).
const LIB_SOURCES: &[&str] = &[
    "app_ipc.cpp",
    "base64.cpp",
    "cc_config.cpp",
    "coproc.cpp",
    "diagnostics.cpp",
    "filesys.cpp",
    "hostinfo.cpp",
    "keyword.cpp",
    "md5.cpp",
    "md5_file.cpp",
    "mem_usage.cpp",
    "mfile.cpp",
    "miofile.cpp",
    "msg_log.cpp",
    "network.cpp",
    "notice.cpp",
    "opencl_boinc.cpp",
    "parse.cpp",
    "prefs.cpp",
    "proc_control.cpp",
    "procinfo.cpp",
    "procinfo_unix.cpp",
    "proxy_info.cpp",
    "shmem.cpp",
    "str_util.cpp",
    "synch.cpp",
    "unix_util.cpp",
    "url.cpp",
    "util.cpp",
    "wslinfo.cpp",
];
const API_SOURCES: &[&str] = &["boinc_api.cpp", "graphics2_util.cpp"];

const SYSTEM_LIB_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
];

fn main() {
    println!("cargo:rerun-if-changed=csrc");
    let include_dirs = match env_path("BOINC_SRC_DIR") {
        Some(src) => link_from_source(&src),
        None => link_system(),
    };
    let boinc8 = declares_sporadic_api(&include_dirs);
    compile_shim(&include_dirs, boinc8);
    generate_bindings(&include_dirs);
}

/// Reads an environment variable and tells cargo to rebuild when it changes.
fn env_path(name: &str) -> Option<PathBuf> {
    println!("cargo:rerun-if-env-changed={name}");
    env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn fail(message: &str) -> ! {
    eprintln!("\nboinc-sys: {message}\n");
    process::exit(1);
}

fn link_system() -> Vec<PathBuf> {
    let include = env_path("BOINC_INCLUDE_DIR").unwrap_or_else(|| PathBuf::from("/usr/include/boinc"));
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
    let api = src.join("api");
    let lib = src.join("lib");
    if !api.join("boinc_api.h").is_file() || !lib.join("util.cpp").is_file() {
        fail(&format!(
            "BOINC_SRC_DIR={} is not a BOINC source tree (api/boinc_api.h or lib/util.cpp missing).",
            src.display()
        ));
    }
    if !src.join("config.h").is_file() {
        fail(&format!(
            "BOINC_SRC_DIR={} is not configured (config.h missing).\n  \
             Run in that tree:   ./_autosetup && ./configure --disable-server --disable-client --disable-manager",
            src.display()
        ));
    }
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .warnings(false)
        .define("HAVE_CONFIG_H", None)
        .include(src)
        .include(&api)
        .include(&lib);
    for file in API_SOURCES {
        build.file(api.join(file));
    }
    for file in LIB_SOURCES {
        let path = lib.join(file);
        if path.is_file() {
            build.file(path);
        }
    }
    build.compile("boinc_api_static");
    println!("cargo:rustc-link-lib=dylib=stdc++");
    println!("cargo:rustc-link-lib=dylib=pthread");
    vec![src.to_path_buf(), api, lib]
}

/// BOINC 8.x added the sporadic-app API together with the wss argument of
/// boinc_report_app_status_aux, so one test tells the two header generations apart.
fn declares_sporadic_api(include_dirs: &[PathBuf]) -> bool {
    include_dirs
        .iter()
        .filter_map(|dir| fs::read_to_string(dir.join("boinc_api.h")).ok())
        .any(|text| text.contains("boinc_sporadic_dir"))
}

fn compile_shim(include_dirs: &[PathBuf], boinc8: bool) {
    let mut build = cc::Build::new();
    build.cpp(true).file("csrc/shim.cpp").include("csrc");
    for dir in include_dirs {
        build.include(dir);
    }
    if boinc8 {
        build.define("DW_BOINC_8", None);
    }
    build.compile("boinc_shim");
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
