//! The figures of one run: per request kind, req/s and latency percentiles (goose's metrics),
//! failures by the platform's fault and refusals (this crate's log), the fault windows and the
//! recovery after each, and the ledger checks. One JSON line per run for scripts/chaos.sh's table.

use crate::shared::{Cause, Failure};
use crate::verify::Check;
use anyhow::{Context, Result, bail};
use goose::metrics::GooseMetrics;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// A fault injected during the run, in Unix milliseconds.
#[derive(Debug, Clone)]
pub struct Fault {
    pub name: String,
    pub start_ms: u64,
    pub end_ms: u64,
}

pub fn read_faults(path: &Path) -> Result<Vec<Fault>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("faults file {}", path.display()))?;
    let mut faults = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [name, start, end] = parts[..] else { bail!("faults file: `NAME START_MS END_MS` expected, got {line:?}") };
        faults.push(Fault { name: name.to_owned(), start_ms: start.parse()?, end_ms: end.parse()? });
    }
    Ok(faults)
}

pub struct Run<'a> {
    pub label: &'a str,
    pub users: usize,
    pub window_ms: (u64, u64),
    pub metrics: &'a GooseMetrics,
    pub failures: &'a [Failure],
    pub faults: &'a [Fault],
    pub tolerate_ms: Option<u64>,
    pub checks: &'a [Check],
}

/// The latency at quantile `q` of goose's histogram (milliseconds -> count).
fn percentile(times: &BTreeMap<usize, usize>, q: f64) -> usize {
    let total: usize = times.values().sum();
    let rank = ((total as f64) * q).ceil().max(1.0) as usize;
    let mut seen = 0;
    for (ms, count) in times {
        seen += count;
        if seen >= rank {
            return *ms;
        }
    }
    0
}

impl Run<'_> {
    pub fn summarise(&self) -> Value {
        let seconds = ((self.window_ms.1 - self.window_ms.0) as f64 / 1000.0).max(1.0);
        let mut kinds = BTreeMap::new();
        for (key, aggregate) in &self.metrics.requests {
            // goose's key is "METHOD NAME"; the name is the request's kind.
            let name = key.split_once(' ').map_or(key.as_str(), |(_, name)| name).to_owned();
            let times = &aggregate.raw_data.times;
            let server = self.failures.iter().filter(|f| f.by_platform() && f.kind == name).count();
            let refused = self.failures.iter().filter(|f| !f.by_platform() && f.kind == name).count();
            kinds.insert(
                name,
                json!({
                    "requests": aggregate.raw_data.counter,
                    "rps": aggregate.raw_data.counter as f64 / seconds,
                    "p50_ms": percentile(times, 0.50),
                    "p99_ms": percentile(times, 0.99),
                    "max_ms": aggregate.raw_data.maximum_time,
                    "server_errors": server,
                    "refused": refused,
                }),
            );
        }
        let in_window = |f: &Failure| {
            let grace = self.tolerate_ms.unwrap_or(0);
            self.faults.iter().any(|w| f.at_ms >= w.start_ms && f.at_ms <= w.end_ms + grace)
        };
        let server: Vec<&Failure> = self.failures.iter().filter(|f| f.by_platform()).collect();
        let tolerated = if self.tolerate_ms.is_some() { server.iter().filter(|f| in_window(f)).count() } else { 0 };
        let untolerated = server.len() - tolerated;
        let faults: Vec<Value> = self
            .faults
            .iter()
            .map(|w| {
                let during =
                    server.iter().filter(|f| f.at_ms >= w.start_ms && f.at_ms <= w.end_ms + 60_000).collect::<Vec<_>>();
                let last = during.iter().map(|f| f.at_ms).max();
                json!({
                    "name": w.name,
                    "seconds": (w.end_ms - w.start_ms) as f64 / 1000.0,
                    "failures": during.len(),
                    // From the fault's end to the last failure it caused (0: none after it ended).
                    "recovery_s": last.map_or(0.0, |l| l.saturating_sub(w.end_ms) as f64 / 1000.0),
                })
            })
            .collect();
        // A request that hung until the client gave up: never acceptable, fault or not.
        let timeouts = server.iter().filter(|f| f.cause == Cause::Timeout).count();
        let lost: usize = self.checks.iter().map(|c| c.problems.len()).sum();
        let checks: Vec<Value> = self
            .checks
            .iter()
            .map(|c| json!({"name": c.name, "checked": c.checked, "problems": c.problems.len(), "settled_s": c.settled_after.as_secs_f64()}))
            .collect();
        let total: usize = self.metrics.requests.values().map(|a| a.raw_data.counter).sum();
        json!({
            "label": self.label,
            "users": self.users,
            "seconds": seconds,
            "requests": total,
            "rps": total as f64 / seconds,
            "server_errors": server.len(),
            "server_errors_tolerated": tolerated,
            "refused": self.failures.iter().filter(|f| !f.by_platform()).count(),
            "kinds": kinds,
            "faults": faults,
            "checks": checks,
            "timeouts": timeouts,
            "lost_writes": lost,
            "passed": untolerated == 0 && lost == 0 && timeouts == 0,
        })
    }

    pub fn print(&self, summary: &Value) {
        println!("\n== {} ({} users, {:.0} s)", self.label, self.users, summary["seconds"].as_f64().unwrap_or(0.0));
        println!(
            "{:<18} {:>9} {:>8} {:>8} {:>8} {:>8} {:>6} {:>8}",
            "kind", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "5xx", "refused"
        );
        for (kind, k) in summary["kinds"].as_object().into_iter().flatten() {
            println!(
                "{:<18} {:>9} {:>8.1} {:>8} {:>8} {:>8} {:>6} {:>8}",
                kind,
                k["requests"],
                k["rps"].as_f64().unwrap_or(0.0),
                k["p50_ms"],
                k["p99_ms"],
                k["max_ms"],
                k["server_errors"],
                k["refused"]
            );
        }
        println!(
            "total: {} requests, {:.1} req/s, {} failed by the platform ({} inside fault windows, {} timed out), {} refused",
            summary["requests"],
            summary["rps"].as_f64().unwrap_or(0.0),
            summary["server_errors"],
            summary["server_errors_tolerated"],
            summary["timeouts"],
            summary["refused"]
        );
        // The first ten failures of each sort, with their cause.
        for platform in [true, false] {
            for (shown, f) in self.failures.iter().filter(|f| f.by_platform() == platform).enumerate() {
                if shown == 10 {
                    println!("  ...");
                    break;
                }
                let at = f.at_ms.saturating_sub(self.window_ms.0) as f64 / 1000.0;
                let what = if platform { "failed" } else { "refused" };
                println!("  {what} {} at +{at:.1} s ({:?}): {}", f.kind, f.cause, f.what);
            }
        }
        for fault in summary["faults"].as_array().into_iter().flatten() {
            println!(
                "fault {}: {:.1} s, {} failures, recovery {:.1} s after it ended",
                fault["name"].as_str().unwrap_or("?"),
                fault["seconds"].as_f64().unwrap_or(0.0),
                fault["failures"],
                fault["recovery_s"].as_f64().unwrap_or(0.0)
            );
        }
        for check in self.checks {
            let verdict = if check.problems.is_empty() { "ok  " } else { "FAIL" };
            println!(
                "{verdict}  {}: {} checked, settled in {:.1} s",
                check.name,
                check.checked,
                check.settled_after.as_secs_f64()
            );
            for problem in check.problems.iter().take(10) {
                println!("        {problem}");
            }
        }
        println!("{}", if summary["passed"].as_bool() == Some(true) { "PASSED" } else { "FAILED" });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram() {
        let times = BTreeMap::from([(1, 50), (2, 40), (10, 9), (200, 1)]);
        assert_eq!(percentile(&times, 0.50), 1);
        assert_eq!(percentile(&times, 0.90), 2);
        assert_eq!(percentile(&times, 0.99), 10);
        assert_eq!(percentile(&times, 1.0), 200);
        assert_eq!(percentile(&BTreeMap::new(), 0.99), 0);
    }
}
