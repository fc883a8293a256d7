//! Log lines go to stderr, which the BOINC API redirects into the slot's
//! stderr.txt: timestamped, one line each, level from job.toml's `verbose`,
//! `--verbose` or `RUST_LOG`.
use std::io::Write;

/// Starts logging at info level (or as RUST_LOG says) before job.toml is read.
pub fn init() {
    let mut builder = env_logger::Builder::new();
    // env_logger passes everything; log::set_max_level decides, so the
    // level can change once job.toml has been read.
    builder
        .filter_level(log::LevelFilter::Trace)
        .format(|buf, record| {
            writeln!(
                buf,
                "{} docker_wrapper {}: {}",
                buf.timestamp_seconds(),
                record.level().as_str().to_lowercase(),
                record.args()
            )
        })
        .parse_default_env();
    // A second init (tests) is harmless.
    let _ = builder.try_init();
    if std::env::var_os("RUST_LOG").is_none() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// Applies job.toml's `verbose` (0 warnings only, 1 standard, 2 everything)
/// unless RUST_LOG chose the level.
pub fn set_verbosity(verbose: u8) {
    if std::env::var_os("RUST_LOG").is_some() {
        return;
    }
    log::set_max_level(match verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    });
}
