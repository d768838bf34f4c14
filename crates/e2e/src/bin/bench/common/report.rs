//! The run's report: every figure the benchmarks of one invocation measured, with its data
//! shape and, where it has one, the ceiling it is set beside; printed as a table and written as
//! JSON to `target/bench/report.json` at the end (`just bench`).

use std::sync::Mutex;

use serde::Serialize;

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// What was measured, e.g. `ingest webhooks/s (wrk, 16 connections)`.
    pub name: String,
    /// The data and load it was measured on (a figure means nothing without it).
    pub shape: String,
    pub value: f64,
    pub unit: &'static str,
    /// The ceiling of the same run, if the figure has one.
    pub ceiling: Option<Ceiling>,
}

/// What a figure is set beside, measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    pub name: String,
    pub value: f64,
    /// figure / ceiling (the median of the runs' ratios where the runs were paired).
    pub ratio: f64,
}

static FIGURES: Mutex<Vec<Figure>> = Mutex::new(Vec::new());

/// Adds a figure to the report.
pub fn record(name: impl Into<String>, shape: impl Into<String>, value: f64, unit: &'static str) {
    record_with_ceiling(name, shape, value, unit, None);
}

/// Adds a figure with its ceiling to the report.
pub fn record_with_ceiling(
    name: impl Into<String>,
    shape: impl Into<String>,
    value: f64,
    unit: &'static str,
    ceiling: Option<Ceiling>,
) {
    FIGURES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Figure {
            name: name.into(),
            shape: shape.into(),
            value,
            unit,
            ceiling,
        });
}

/// Prints the table and writes `target/bench/report.json` (with the machine), if anything was
/// recorded.
pub async fn finish(server_version: String) -> anyhow::Result<()> {
    let figures = FIGURES.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if figures.is_empty() {
        return Ok(());
    }
    println!(
        "\n| figure | value | ceiling (same run) | ratio | data shape |\n|---|---|---|---|---|"
    );
    for f in &figures {
        let (ceiling, ratio) = f
            .ceiling
            .as_ref()
            .map_or(("".to_owned(), "".to_owned()), |c| {
                (
                    format!("{} {:.0}", c.name, c.value),
                    format!("{:.2}x", c.ratio),
                )
            });
        println!(
            "| {} | {:.1} {} | {ceiling} | {ratio} | {} |",
            f.name, f.value, f.unit, f.shape
        );
    }
    let dir = crate::ceiling::bench_dir();
    std::fs::create_dir_all(&dir)?;
    let machine = serde_json::json!({
        "cores": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
        "postgres": server_version,
        "os": std::env::consts::OS,
    });
    let report = serde_json::json!({ "machine": machine, "figures": figures });
    let path = dir.join("report.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    println!("\nwritten to {}", path.display());
    Ok(())
}
