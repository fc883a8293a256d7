//! `stats`: the engine's own CPU and memory figures for a container, for
//! where its cgroup files cannot be read (the engine in a WSL distro, or no
//! process to follow). Podman gives cumulative CPU time; Docker's CLI only a
//! percentage, which the caller integrates over time. The command itself
//! is `ContainerEngine::stats`; here, what it answers.
use super::EngineKind;
pub(super) use crate::host::usage::{CpuFigure, Stats};

/// One line of `stats --format` (see `ContainerEngine::stats`).
pub(super) fn parse(kind: EngineKind, text: &str) -> Option<Stats> {
    let (cpu, memory) = text.lines().next()?.split_once('|')?;
    let cpu = match kind {
        EngineKind::Podman => CpuFigure::Total(cpu.trim().parse::<f64>().ok()? / 1e9),
        EngineKind::Docker => CpuFigure::Percent(cpu.trim().trim_end_matches('%').parse().ok()?),
    };
    // "616KiB / 23.54GiB": the usage is the part before the slash.
    let memory_bytes = human_bytes(memory.split('/').next()?.trim())?;
    Some(Stats { cpu, memory_bytes })
}

/// "700.4kB", "616KiB", "1.2GB", "0B": SI and binary units, as the engines print them.
fn human_bytes(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.trim().parse().ok()?;
    let factor = match unit.to_ascii_lowercase().as_str() {
        "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(number * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_engines_lines() {
        let podman = parse(EngineKind::Podman, "758120552|700.4kB / 25.28GB\n").unwrap();
        assert_eq!(podman.cpu, CpuFigure::Total(0.758120552));
        assert!((podman.memory_bytes - 700_400.0).abs() < 1.0);
        let docker = parse(EngineKind::Docker, "50.49%|616KiB / 23.54GiB\n").unwrap();
        assert_eq!(docker.cpu, CpuFigure::Percent(50.49));
        assert_eq!(docker.memory_bytes, 616.0 * 1024.0);
        assert_eq!(parse(EngineKind::Docker, "--|-- / --"), None);
        assert_eq!(parse(EngineKind::Podman, ""), None);
        assert_eq!(human_bytes("0B"), Some(0.0));
        assert_eq!(human_bytes("12XB"), None);
    }
}
