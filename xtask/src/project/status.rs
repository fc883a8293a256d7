//! Where each result is, from the server's database and the client's task
//! list together; when it got to each stage; and the final table.
use super::project::Project;
use super::services::sql;
use anyhow::Result;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// The stages a result goes through, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Unsent,
    Sent,
    Downloading,
    Running,
    Uploading,
    Reported,
    Validated,
    Assimilated,
}

pub const STAGES: [Stage; 8] = [
    Stage::Unsent,
    Stage::Sent,
    Stage::Downloading,
    Stage::Running,
    Stage::Uploading,
    Stage::Reported,
    Stage::Validated,
    Stage::Assimilated,
];

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Unsent => "unsent",
            Stage::Sent => "sent",
            Stage::Downloading => "downloading",
            Stage::Running => "running",
            Stage::Uploading => "uploading",
            Stage::Reported => "reported",
            Stage::Validated => "validated",
            Stage::Assimilated => "assimilated",
        }
    }
}

/// A result's row in the server's database.
#[derive(Clone, Debug, Default)]
pub struct ServerResult {
    pub id: u64,
    pub name: String,
    pub wu_name: String,
    pub app: String,
    pub server_state: u32,
    pub outcome: u32,
    pub validate_state: u32,
    pub exit_status: i32,
    pub cpu_time: f64,
    pub elapsed: f64,
    pub assimilated: bool,
}

impl ServerResult {
    pub fn outcome_text(&self) -> &'static str {
        match (self.server_state, self.outcome) {
            (2, _) => "unsent",
            (4, _) => "in progress",
            (5, 1) => "success",
            (5, 3) => "compute error",
            (5, 4) => "no reply",
            (5, 5) => "didn't need",
            (5, 6) => "validate error",
            (5, 7) => "abandoned",
            _ => "other",
        }
    }

    pub fn validate_text(&self) -> &'static str {
        match self.validate_state {
            0 => "initial",
            1 => "valid",
            2 => "invalid",
            3 => "no check",
            4 => "inconclusive",
            5 => "too late",
            _ => "other",
        }
    }
}

/// Every result of the project.
pub fn server_results(project: &Project) -> Result<Vec<ServerResult>> {
    let rows = sql(
        Some(project.database()),
        "SELECT r.id, r.name, w.name, a.name, r.server_state, r.outcome, r.validate_state, \
         r.exit_status, r.cpu_time, r.elapsed_time, w.assimilate_state \
         FROM result r JOIN workunit w ON r.workunitid = w.id JOIN app a ON r.appid = a.id ORDER BY r.id",
    )?;
    Ok(rows
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            (f.len() == 11).then(|| ServerResult {
                id: f[0].parse().unwrap_or(0),
                name: f[1].into(),
                wu_name: f[2].into(),
                app: f[3].into(),
                server_state: f[4].parse().unwrap_or(0),
                outcome: f[5].parse().unwrap_or(0),
                validate_state: f[6].parse().unwrap_or(0),
                exit_status: f[7].parse().unwrap_or(0),
                cpu_time: f[8].parse().unwrap_or(0.0),
                elapsed: f[9].parse().unwrap_or(0.0),
                assimilated: f[10] == "2",
            })
        })
        .collect())
}

/// What the result's stderr (the wrapper's log, as the client reported it) says.
pub fn stderr_of(project: &Project, result_id: u64) -> String {
    sql(
        Some(project.database()),
        &format!("SELECT stderr_out FROM result WHERE id = {result_id}"),
    )
    .unwrap_or_default()
    .replace("\\n", "\n")
}

/// The stage of a result: the server's word once it has one, else the client's.
pub fn stage_of(result: &ServerResult, client_state: Option<(&str, &str)>) -> Stage {
    if result.assimilated && result.server_state == 5 {
        return Stage::Assimilated;
    }
    if result.server_state == 5 {
        return if result.validate_state == 1 {
            Stage::Validated
        } else {
            Stage::Reported
        };
    }
    if result.server_state == 2 {
        return Stage::Unsent;
    }
    match client_state {
        Some(("downloading", _)) => Stage::Downloading,
        Some(("uploading" | "uploaded" | "compute error", _)) => Stage::Uploading,
        Some((_, "EXECUTING" | "SUSPENDED" | "QUIT_PENDING" | "ABORT_PENDING")) => Stage::Running,
        _ => Stage::Sent,
    }
}

/// When each result first reached each stage, from the start of the watch.
#[derive(Default)]
pub struct Timeline {
    pub reached: BTreeMap<String, BTreeMap<Stage, Duration>>,
}

impl Timeline {
    /// Records `stage` (and every earlier one not seen, at the same time:
    /// a stage shorter than a poll). Returns whether it is new.
    pub fn record(&mut self, result: &str, stage: Stage, at: Duration) -> bool {
        let seen = self.reached.entry(result.to_string()).or_default();
        if seen.contains_key(&stage) {
            return false;
        }
        for earlier in STAGES.iter().filter(|s| **s <= stage) {
            seen.entry(*earlier).or_insert(at);
        }
        true
    }

    /// Per stage: how long results took from the previous stage to it
    /// (median and slowest over the results), as a table.
    pub fn stage_table(&self) -> String {
        let mut text = String::from(
            "| stage | results | median since previous | slowest |\n|---|---|---|---|\n",
        );
        for pair in STAGES.windows(2) {
            let mut spans: Vec<f64> = self
                .reached
                .values()
                .filter_map(|seen| {
                    Some(seen.get(&pair[1])?.as_secs_f64() - seen.get(&pair[0])?.as_secs_f64())
                })
                .collect();
            if spans.is_empty() {
                continue;
            }
            spans.sort_by(f64::total_cmp);
            text.push_str(&format!(
                "| {} -> {} | {} | {:.1} s | {:.1} s |\n",
                pair[0].name(),
                pair[1].name(),
                spans.len(),
                spans[spans.len() / 2],
                spans[spans.len() - 1]
            ));
        }
        text
    }
}

/// A short hash of the result's output file(s) in the upload dir.
pub fn output_hash(project: &Project, result: &str) -> String {
    let mut files = Vec::new();
    collect_outputs(
        &project.root.join("upload"),
        &format!("{result}_"),
        &mut files,
    );
    files.sort();
    if files.is_empty() {
        return "-".into();
    }
    let mut hash = Sha256::new();
    for file in &files {
        hash.update(fs::read(file).unwrap_or_default());
    }
    hash.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn collect_outputs(dir: &Path, prefix: &str, found: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_outputs(&path, prefix, found);
        } else if entry.file_name().to_string_lossy().starts_with(prefix) {
            found.push(path);
        }
    }
}

/// Prints one line per result whose stage changed.
pub fn print_change(started: Instant, result: &str, stage: Stage) {
    println!(
        "[{:6.1} s] {result}: {}",
        started.elapsed().as_secs_f64(),
        stage.name()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_decides_once_it_knows() {
        let mut r = ServerResult {
            server_state: 4,
            ..Default::default()
        };
        assert_eq!(
            stage_of(&r, Some(("downloaded", "EXECUTING"))),
            Stage::Running
        );
        assert_eq!(stage_of(&r, Some(("downloading", ""))), Stage::Downloading);
        assert_eq!(stage_of(&r, None), Stage::Sent);
        r.server_state = 5;
        r.outcome = 1;
        assert_eq!(stage_of(&r, None), Stage::Reported);
        r.validate_state = 1;
        assert_eq!(stage_of(&r, None), Stage::Validated);
        r.assimilated = true;
        assert_eq!(stage_of(&r, None), Stage::Assimilated);
    }

    #[test]
    fn a_stage_seen_late_fills_the_ones_before() {
        let mut t = Timeline::default();
        assert!(t.record("r", Stage::Unsent, Duration::from_secs(0)));
        assert!(t.record("r", Stage::Running, Duration::from_secs(5)));
        assert!(!t.record("r", Stage::Running, Duration::from_secs(6)));
        assert_eq!(t.reached["r"][&Stage::Downloading], Duration::from_secs(5));
        assert!(t.stage_table().contains("| sent -> downloading | 1 |"));
    }
}
