//! `netqoe eval --sweep`: power and false-alarm curves. Families of scenarios are generated from
//! one template — a fault on one probe, a label group or a target, at growing sizes — and each is
//! run through the real pipeline and the diagnoser like a scenario file; per family the table
//! says which sizes were found with the right scope, how long it took, and the smallest found.
//! `--healthy-days N` runs a healthy fleet (50 probes × 10 targets, diurnal swing, noise and
//! brief blips) for N simulated days and counts the incidents it opened: every one is false.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use netqoe_domain::diagnosis::DiagnosisConfig;

use super::*;

/// One family: what it degrades, the sizes tried, the explanation expected.
pub struct Family {
    pub name: &'static str,
    /// The fault's `match` (which pairs).
    pub matches: &'static [(&'static str, &'static str)],
    pub scope: &'static str,
    pub subject: &'static [(&'static str, &'static str)],
    pub metric: &'static str,
    /// Sizes, in the unit `effect` takes.
    pub sizes: &'static [f64],
    /// How a size is shown (`%`, `+%`).
    pub unit: &'static str,
    pub effect: fn(f64) -> Effect,
}

/// The families of the sweep: loss 0.5–10 % and RTT +5–200 % on a probe, a label group and a
/// target; DNS failures 1–20 % on a target. Connect failures have no family of their own: a
/// scenario makes them with `loss` on a tcp/http target (a connect times out with the path's
/// loss), and they are pooled exactly as DNS failures are.
pub fn families() -> Vec<Family> {
    let loss = |x: f64| Effect { loss: Some(x / 100.0), ..Default::default() };
    vec![
        Family {
            name: "loss, one probe",
            matches: &[("probe", "fra-1")],
            scope: "probe",
            subject: &[("probe", "fra-1")],
            metric: "loss",
            sizes: &[0.5, 1.0, 2.0, 3.0, 5.0, 10.0],
            unit: "%",
            effect: loss,
        },
        Family {
            name: "loss, a label group",
            matches: &[("probe.asn", "3320")],
            scope: "group",
            subject: &[("probe.asn", "3320")],
            metric: "loss",
            sizes: &[0.5, 1.0, 2.0, 3.0, 5.0, 10.0],
            unit: "%",
            effect: loss,
        },
        Family {
            name: "loss, a target",
            matches: &[("target", "voip-gw")],
            scope: "target",
            subject: &[("target", "voip-gw")],
            metric: "loss",
            sizes: &[0.5, 1.0, 2.0, 3.0, 5.0, 10.0],
            unit: "%",
            effect: loss,
        },
        Family {
            name: "RTT, one probe",
            matches: &[("probe", "fra-1")],
            scope: "probe",
            subject: &[("probe", "fra-1")],
            metric: "rtt",
            sizes: &[5.0, 10.0, 20.0, 50.0, 100.0, 200.0],
            unit: "+%",
            // the template's RTT is 28 ms (a region override aside): +x % of it
            effect: |x| Effect { rtt_ms_add: Some(28.0 * x / 100.0), ..Default::default() },
        },
        Family {
            name: "RTT, a label group",
            matches: &[("probe.asn", "3320")],
            scope: "group",
            subject: &[("probe.asn", "3320")],
            metric: "rtt",
            sizes: &[5.0, 10.0, 20.0, 50.0, 100.0, 200.0],
            unit: "+%",
            effect: |x| Effect { rtt_ms_add: Some(28.0 * x / 100.0), ..Default::default() },
        },
        Family {
            name: "RTT, a target",
            matches: &[("target", "video")],
            scope: "target",
            subject: &[("target", "video")],
            metric: "rtt",
            sizes: &[5.0, 10.0, 20.0, 50.0, 100.0, 200.0],
            unit: "+%",
            effect: |x| Effect { rtt_ms_add: Some(28.0 * x / 100.0), ..Default::default() },
        },
        Family {
            name: "DNS failures, a target",
            matches: &[("target", "api")],
            scope: "target",
            subject: &[("target", "api")],
            metric: "dns",
            sizes: &[1.0, 2.0, 5.0, 10.0, 20.0],
            unit: "%",
            effect: |x| Effect { dns_fail: Some(x / 100.0), ..Default::default() },
        },
    ]
}

fn node(id: &str, labels: &[(&str, &str)]) -> Node {
    Node { id: id.into(), labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), kind: None }
}

fn conditions(rtt: f64) -> Conditions {
    Conditions {
        rtt_ms: Some(rtt),
        jitter_ms: Some(2.0),
        loss: Some(0.002),
        dns_ms: Some(14.0),
        connect_ms: Some(rtt + 1.0),
        tls_ms: Some(35.0),
        ttfb_ms: Some(90.0),
        ..Default::default()
    }
}

/// The template: the public scenarios' fleet (8 probes in 5 regions, ASNs and resolvers; 4
/// targets), a measurement every 10 s, 90 minutes, the fault from minute 30 to 75.
fn template(name: String, seed: u64, fault: Option<Fault>, expect: Vec<Expectation>) -> Scenario {
    let p = |id, region, asn, resolver| node(id, &[("region", region), ("asn", asn), ("resolver", resolver)]);
    Scenario {
        name,
        description: "generated by netqoe eval --sweep".into(),
        seed,
        start: "2026-03-02T08:00:00Z".into(),
        duration_s: 5400,
        interval_s: 10,
        probes: vec![
            p("fra-1", "eu-central", "3320", "isp"),
            p("fra-2", "eu-central", "3320", "isp"),
            p("fra-3", "eu-central", "6805", "public"),
            p("lon-1", "eu-west", "2856", "isp"),
            p("lon-2", "eu-west", "5089", "public"),
            p("nyc-1", "us-east", "7922", "isp"),
            p("nyc-2", "us-east", "701", "public"),
            p("sin-1", "ap-south", "9506", "isp"),
        ],
        targets: vec![
            node("shop", &[("kind", "http")]),
            node("video", &[("kind", "http")]),
            node("voip-gw", &[("kind", "udp")]),
            node("api", &[("kind", "http")]),
        ],
        baseline: BaselineSpec {
            default: conditions(28.0),
            overrides: vec![
                Override {
                    matches: BTreeMap::from([("probe.region".into(), "us-east".into())]),
                    set: conditions(95.0),
                },
                Override {
                    matches: BTreeMap::from([("probe.region".into(), "ap-south".into())]),
                    set: conditions(180.0),
                },
            ],
        },
        faults: fault.into_iter().collect(),
        expect,
    }
}

/// One size of one family: found with the right scope, and how many seconds after the fault began.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Point {
    pub size: f64,
    pub found: bool,
    pub delay_s: Option<i64>,
    /// Incidents that were not the expected one (wrong scope or subject, or elsewhere).
    pub other_incidents: usize,
    /// Those incidents: `scope subject=… metrics … opened +s`.
    pub others: Vec<String>,
}

/// One size of one family as a scenario: the template with the family's fault at that size.
fn point_scenario(f: &Family, size: f64, seed: u64) -> Scenario {
    let fault = Fault {
        id: "f".into(),
        matches: f.matches.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        from_s: 1800,
        to_s: 4500,
        effect: (f.effect)(size),
    };
    let expect = vec![Expectation {
        fault: Some("f".into()),
        scope: f.scope.into(),
        subject: f.subject.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        metrics: vec![f.metric.into()],
    }];
    template(format!("{} {size}{}", f.name, f.unit), seed, Some(fault), expect)
}

/// What a point's scenario score says: found with the right scope, the delay, the other incidents.
fn point_of(f: &Family, size: f64, score: &ScenarioScore) -> Point {
    let expected = score.delays_s.first().map(|d| d + 1800);
    let others: Vec<String> = score
        .incident_list
        .iter()
        .filter(|r| {
            let subject_is = f.subject.len() == r.subject.len()
                && f.subject.iter().all(|(k, v)| r.subject.get(*k).is_some_and(|x| x == v));
            !(r.scope == f.scope && subject_is && Some(r.opened_s) == expected)
        })
        .map(|r| {
            let subject: Vec<String> = r.subject.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let metrics: Vec<&str> = r.metrics.iter().map(String::as_str).collect();
            format!("{} {} metrics {} opened +{} s", r.scope, subject.join(","), metrics.join("+"), r.opened_s)
        })
        .collect();
    Point {
        size,
        found: score.matched == 1,
        delay_s: score.delays_s.first().copied(),
        other_incidents: score.unexpected,
        others,
    }
}

/// Runs one size of one family through the pipeline and the diagnoser.
pub async fn point(f: &Family, size: f64, seed: u64, dcfg: &DiagnosisConfig) -> anyhow::Result<Point> {
    let score = run(&point_scenario(f, size, seed), dcfg).await?;
    Ok(point_of(f, size, &score))
}

/// Every family at every size (the points side by side, `run_all`).
pub async fn sweep(dcfg: &DiagnosisConfig, seed: u64) -> anyhow::Result<Vec<(String, String, Vec<Point>)>> {
    let fams = families();
    let cases: Vec<(&Family, f64)> = fams.iter().flat_map(|f| f.sizes.iter().map(move |&size| (f, size))).collect();
    let scenarios: Vec<Scenario> = cases.iter().map(|(f, size)| point_scenario(f, *size, seed)).collect();
    let mut scores = super::run_all(&scenarios, dcfg).into_iter();
    let mut out = Vec::new();
    for f in &fams {
        let mut points = Vec::new();
        for &size in f.sizes {
            let score = scores.next().ok_or_else(|| anyhow::anyhow!("a sweep point has no score"))??;
            points.push(point_of(f, size, &score));
        }
        out.push((f.name.to_string(), f.unit.to_string(), points));
    }
    Ok(out)
}

/// The healthy fleet: 50 probes (5 regions × 10, two ASNs and resolvers each) × 10 targets, one
/// measurement a minute, ±20 % diurnal RTT swing, 0.2 % loss, and a brief blip (one minute of
/// 30 % loss or +150 % RTT on one probe) every 3 hours. Returns (windows judged, incidents).
pub async fn healthy(dcfg: &DiagnosisConfig, days: i64, seed: u64) -> anyhow::Result<(i64, Vec<Reported>)> {
    let regions = ["eu-central", "eu-west", "us-east", "us-west", "ap-south"];
    let mut probes = Vec::new();
    for (r, region) in regions.iter().enumerate() {
        for i in 0..10 {
            let asn = format!("{}", 64_500 + r * 2 + i % 2);
            let resolver = if i % 3 == 0 { "public" } else { "isp" };
            let id = format!("{region}-{i}");
            probes.push(node(&id, &[("region", region), ("asn", &asn), ("resolver", resolver)]));
        }
    }
    let targets: Vec<Node> =
        (0..10).map(|t| node(&format!("site-{t}"), &[("kind", if t % 3 == 0 { "udp" } else { "http" })])).collect();
    let mut base = conditions(30.0);
    base.diurnal_pct = Some(20.0);
    let mut faults = Vec::new();
    let mut rng = Rng(seed ^ 0x6865_616c_7468);
    let mut at = 7200;
    while at < days * 86_400 - 3600 {
        let p = &probes[(rng.next_u64() % probes.len() as u64) as usize];
        let effect = if faults.len() % 2 == 0 {
            Effect { loss: Some(0.3), ..Default::default() }
        } else {
            Effect { rtt_ms_add: Some(45.0), ..Default::default() }
        };
        faults.push(Fault {
            id: format!("blip-{}", faults.len()),
            matches: BTreeMap::from([("probe".into(), p.id.clone())]),
            from_s: at,
            to_s: at + 60,
            effect,
        });
        at += 3 * 3600;
    }
    let s = Scenario {
        name: format!("healthy fleet, {days} days"),
        description: "generated by netqoe eval --healthy-days".into(),
        seed,
        start: "2026-03-02T00:00:00Z".into(),
        duration_s: days * 86_400,
        interval_s: 60,
        probes,
        targets,
        baseline: BaselineSpec { default: base, overrides: Vec::new() },
        faults,
        expect: vec![Expectation { fault: None, scope: "none".into(), subject: BTreeMap::new(), metrics: Vec::new() }],
    };
    let score = run(&s, dcfg).await?;
    Ok((days * 1440, score.incident_list))
}

/// The sweep's table, one row per family.
pub fn table(rows: &[(String, String, Vec<Point>)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>44}  {:>14} {:>10} {:>6}",
        "family", "sizes (delay)", "smallest found", "delay med", "other"
    );
    for (name, unit, points) in rows {
        let sizes: Vec<String> = points
            .iter()
            .map(|p| match p.delay_s.filter(|_| p.found) {
                Some(d) => format!("{}({d}s)", fmt_size(p.size)),
                None => format!("!{}", fmt_size(p.size)),
            })
            .collect();
        // the smallest size from which every larger one is found too
        let smallest = (0..points.len()).find(|&i| points[i..].iter().all(|p| p.found)).map(|i| points[i].size);
        let mut delays: Vec<i64> = points.iter().filter(|p| p.found).filter_map(|p| p.delay_s).collect();
        delays.sort_unstable();
        let med = delays.get(delays.len().saturating_sub(1) / 2).map_or("-".into(), |d| format!("{d} s"));
        let other: usize = points.iter().map(|p| p.other_incidents).sum();
        let _ = writeln!(
            out,
            "{name:<24} {:>44}  {:>14} {med:>10} {other:>6}",
            sizes.join(" "),
            smallest.map_or("none".into(), |s| format!("{}{unit}", fmt_size(s)))
        );
    }
    out.push_str(
        "(sizes in the family's unit, each with its delay from the fault's start; ! = not found with the right scope)\n",
    );
    out
}

fn fmt_size(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

/// An SVG of the detection delay against effect size, one line per family (missing: not found).
pub fn svg(rows: &[(String, String, Vec<Point>)]) -> String {
    let (w, h, left, top) = (760.0, 420.0, 60.0, 30.0);
    let (pw, ph) = (w - left - 200.0, h - top - 50.0);
    let colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];
    let max_delay = rows.iter().flat_map(|r| r.2.iter().filter_map(|p| p.delay_s)).max().unwrap_or(60).max(60) as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <text x=\"{left}\" y=\"18\">netqoe eval --sweep: detection delay against effect size (step of the family's sizes)</text>\n\
         <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>\n\
         <text x=\"{}\" y=\"{}\">size step (smallest → largest)</text>\n<text x=\"8\" y=\"{}\" transform=\"rotate(-90 8,{})\">delay s</text>\n",
        top + ph,
        left + pw,
        top + ph,
        top + ph,
        left + pw / 2.0 - 80.0,
        h - 10.0,
        top + ph / 2.0,
        top + ph / 2.0
    );
    for i in 0..=4 {
        let v = max_delay * i as f64 / 4.0;
        let y = top + ph - ph * i as f64 / 4.0;
        let _ = writeln!(out, "<text x=\"{}\" y=\"{y:.1}\" text-anchor=\"end\">{v:.0}</text>", left - 4.0);
    }
    for (k, (name, unit, points)) in rows.iter().enumerate() {
        let c = colours[k % colours.len()];
        let n = points.len().max(2) - 1;
        let mut path = String::new();
        for (i, p) in points.iter().enumerate() {
            let x = left + pw * i as f64 / n as f64;
            match p.delay_s {
                Some(d) => {
                    let y = top + ph - ph * d as f64 / max_delay;
                    path.push_str(&format!("{}{x:.1},{y:.1} ", if path.is_empty() { "M" } else { "L" }));
                    let _ = writeln!(out, "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{c}\"/>");
                }
                None => {
                    let _ = writeln!(
                        out,
                        "<text x=\"{x:.1}\" y=\"{:.1}\" fill=\"{c}\" text-anchor=\"middle\">×</text>",
                        top + ph - 4.0
                    );
                }
            }
        }
        if !path.is_empty() {
            let _ = writeln!(out, "<path d=\"{path}\" fill=\"none\" stroke=\"{c}\"/>");
        }
        let sizes: Vec<String> = points.iter().map(|p| fmt_size(p.size)).collect();
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" fill=\"{c}\">{name} ({}{unit})</text>",
            left + pw + 10.0,
            top + 16.0 * k as f64 + 10.0,
            sizes.join(", ")
        );
    }
    out.push_str("</svg>\n");
    out
}
