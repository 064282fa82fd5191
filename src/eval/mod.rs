//! `netqoe eval`: scores the diagnosis against labelled scenarios (format:
//! `load-tests/scenarios/README.md`). A scenario's events are generated deterministically from
//! its seed, validated like ingest validates them, published to the embedded journal and
//! aggregated by the real pipeline actors into the SQLite store, in simulated time (no sleeping:
//! a two-hour scenario takes seconds); each finished 1m window of the fleet is read back from the
//! store and judged by the diagnoser; the incidents are matched against the expectations.
//!
//! Invariant: the same file gives the same incident list (all randomness from the seed, all
//! times reported relative to the scenario start).

use anyhow::Context;
use netqoe_domain::diagnosis::DiagnosisConfig;

mod generate;
mod run;
mod scenario;
mod score;
mod sweep;

pub use generate::{round_events, Rng};
pub use run::*;
pub use scenario::*;
use score::median_max;
pub use score::*;
pub use sweep::*;

/// Runs scenarios side by side, one thread (with its own actix system, pipeline and store) per
/// core at most, and returns their scores in the order given. Every scenario runs on its own
/// manual clock, so running them together changes nothing but the wall time.
pub fn run_all(scenarios: &[Scenario], dcfg: &DiagnosisConfig) -> Vec<anyhow::Result<ScenarioScore>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(scenarios.len()).max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<anyhow::Result<ScenarioScore>>>> =
        Mutex::new(scenarios.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(s) = scenarios.get(i) else { break };
                let score = actix::System::new().block_on(run(s, dcfg));
                results.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[i] = Some(score);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("the scenario's thread stopped before its score"))))
        .collect()
}

/// `netqoe eval FILE...`: prints the table (or JSON); fails when a file is malformed.
pub async fn eval_files(
    files: &[std::path::PathBuf],
    json: bool,
    dcfg: &DiagnosisConfig,
) -> anyhow::Result<Vec<ScenarioScore>> {
    let mut scenarios = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("{}", f.display()))?;
        scenarios.push(parse(&text).with_context(|| format!("{}", f.display()))?);
    }
    let mut scores = Vec::new();
    for (f, score) in files.iter().zip(run_all(&scenarios, dcfg)) {
        scores.push(score.with_context(|| format!("{}", f.display()))?);
    }
    let all_incidents: usize = scores.iter().map(|s| s.incidents).sum();
    let all_used: usize = scores.iter().map(|s| s.incidents - s.unexpected).sum();
    let all_exp: usize = scores.iter().map(|s| s.expectations).sum();
    let all_matched: usize = scores.iter().map(|s| s.matched).sum();
    let mut delays: Vec<i64> = scores.iter().flat_map(|s| s.delays_s.clone()).collect();
    delays.sort_unstable();
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let (med, max) = median_max(&delays);
    if json {
        let out = serde_json::json!({
            "scenarios": scores,
            "overall": {"precision": ratio(all_used, all_incidents), "recall": ratio(all_matched, all_exp),
                        "incidents": all_incidents, "expectations": all_exp, "matched": all_matched,
                        "false_incidents": scores.iter().map(|s| s.false_incidents).sum::<usize>(),
                        "median_delay_s": med, "max_delay_s": max},
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{:<26} {:>6} {:>7} {:>9} {:>5} {:>9} {:>6} {:>8} {:>9} {:>9}",
            "scenario",
            "expect",
            "matched",
            "incidents",
            "false",
            "precision",
            "recall",
            "loc acc",
            "delay med",
            "delay max"
        );
        let opt = |v: Option<i64>| v.map_or("-".to_string(), |x| format!("{x} s"));
        for s in &scores {
            let (m, x) = median_max(&s.delays_s);
            println!(
                "{:<26} {:>6} {:>7} {:>9} {:>5} {:>9.2} {:>6.2} {:>8.2} {:>9} {:>9}",
                s.name,
                s.expectations,
                s.matched,
                s.incidents,
                s.false_incidents,
                s.precision,
                s.recall,
                s.localisation_accuracy,
                opt(m),
                opt(x)
            );
            for r in &s.incident_list {
                // plain words for people: `target=shop`, `loss, rtt`, a number or "-"
                let subject: Vec<String> = r.subject.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let metrics: Vec<&str> = r.metrics.iter().map(String::as_str).collect();
                let sure = match (r.p_value, &r.runner_up) {
                    (Some(p), Some((alt, q))) => format!(", p {p:.1e} rather than {alt} (p {q:.1e})"),
                    (Some(p), None) => format!(", p {p:.1e}"),
                    _ => String::new(),
                };
                println!(
                    "    {} {} {} metrics {} opened +{} s, resolved {}, severity {}, MOS impact {}{}",
                    r.id,
                    r.scope,
                    subject.join(" "),
                    metrics.join(", "),
                    r.opened_s,
                    r.resolved_s.map_or("never".into(), |t| format!("+{t} s")),
                    r.peak_severity,
                    r.mos_impact.map_or("-".to_string(), |m| format!("{m:.2}")),
                    sure
                );
            }
        }
        println!(
            "{:<26} {:>6} {:>7} {:>9} {:>5} {:>9.2} {:>6.2} {:>8} {:>9} {:>9}",
            "overall",
            all_exp,
            all_matched,
            all_incidents,
            scores.iter().map(|s| s.false_incidents).sum::<usize>(),
            ratio(all_used, all_incidents),
            ratio(all_matched, all_exp),
            "",
            opt(med),
            opt(max)
        );
    }
    Ok(scores)
}

/// `netqoe eval --sweep` / `--healthy-days N`: prints the tables; the sweep's SVG and JSON go to
/// `out`.
pub async fn sweep_main(
    do_sweep: bool,
    healthy_days: Option<i64>,
    out: &std::path::Path,
    dcfg: &DiagnosisConfig,
) -> anyhow::Result<()> {
    if do_sweep {
        let rows = sweep(dcfg, 7).await?;
        print!("{}", table(&rows));
        std::fs::create_dir_all(out).with_context(|| format!("{}", out.display()))?;
        std::fs::write(out.join("sweep.svg"), svg(&rows))?;
        let json: Vec<_> =
            rows.iter().map(|(n, u, p)| serde_json::json!({"family": n, "unit": u, "points": p})).collect();
        std::fs::write(out.join("sweep.json"), serde_json::to_string_pretty(&json)?)?;
        println!("curve: {}, figures: {}", out.join("sweep.svg").display(), out.join("sweep.json").display());
    }
    if let Some(days) = healthy_days {
        let started = std::time::Instant::now();
        let (windows, incidents) = healthy(dcfg, days, 11).await?;
        println!(
            "healthy fleet: 50 probes × 10 targets, {days} simulated days ({windows} windows, blips every 3 h): {} false incidents ({:.2} per simulated week), {:.0} s",
            incidents.len(),
            incidents.len() as f64 * 7.0 / days as f64,
            started.elapsed().as_secs_f64()
        );
        for r in &incidents {
            let subject: Vec<String> = r.subject.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let metrics: Vec<&str> = r.metrics.iter().map(String::as_str).collect();
            println!("    {} {} metrics {} opened +{} s", r.scope, subject.join(" "), metrics.join(", "), r.opened_s);
        }
    }
    Ok(())
}
