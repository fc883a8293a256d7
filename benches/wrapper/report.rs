//! Statistics and the printed tables.

/// One measured metric of one wrapper on one engine.
#[derive(Clone, Debug)]
pub struct Row {
    pub metric: &'static str,
    pub wrapper: usize,
    pub samples: Vec<f64>,
    /// How it was measured, or why there is no value.
    pub note: String,
}

impl Row {
    pub fn new(
        metric: &'static str,
        wrapper: usize,
        samples: Vec<f64>,
        note: impl Into<String>,
    ) -> Row {
        Row {
            metric,
            wrapper,
            samples,
            note: note.into(),
        }
    }

    pub fn median(&self) -> Option<f64> {
        percentile(&self.samples, 0.5)
    }

    pub fn max(&self) -> Option<f64> {
        self.samples.iter().copied().reduce(f64::max)
    }
}

/// Linear interpolation between closest ranks (p in 0..=1).
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let pos = p * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(0.0) => "0".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) if v.abs() >= 1.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.3}"),
    }
}

pub fn print_table(title: &str, rows: &[Row]) {
    println!();
    println!("{title}");
    let header = format!(
        "{:<30} {:>7} {:>9} {:>9} {:>9} {:>9} {:>3}  {}",
        "metric", "wrapper", "median", "p90", "min", "max", "n", "note"
    );
    println!("{header}");
    println!("{}", "-".repeat(header.len().max(100)));
    for r in rows {
        let min = r.samples.iter().copied().reduce(f64::min);
        println!(
            "{:<30} {:>7} {:>9} {:>9} {:>9} {:>9} {:>3}  {}",
            r.metric,
            format!("#{}", r.wrapper + 1),
            fmt(r.median()),
            fmt(percentile(&r.samples, 0.9)),
            fmt(min),
            fmt(r.max()),
            r.samples.len(),
            r.note
        );
    }
}

pub fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    }
}

pub fn show(v: Option<f64>) -> String {
    fmt(v)
}
