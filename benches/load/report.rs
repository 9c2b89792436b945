//! The markdown report.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::results::{fmt_added, fmt_us, q_us};
use crate::PROMPT_WORDS;

// === report ===

pub fn header(meta: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# infergate load benchmark\n");
    for (k, v) in meta.as_object().unwrap() {
        let v = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let _ = writeln!(s, "- **{k}**: {v}");
    }
    s
}

pub fn gateway_cells(v: &Value) -> (String, String, String) {
    match v.get("gateway") {
        Some(g) => (
            fmt_us(g["cpu_us_per_request"].as_f64().unwrap_or(f64::NAN)),
            g["reported_overhead_mean_us"]
                .as_f64()
                .map_or_else(|| "–".into(), fmt_us),
            format!(
                "{:.1} MB",
                g["peak_rss_kb"].as_f64().unwrap_or(0.0) / 1024.0
            ),
        ),
        None => (
            v["nginx"]["cpu_us_per_request"]
                .as_f64()
                .map_or_else(|| "–".into(), fmt_us),
            "–".into(),
            "–".into(),
        ),
    }
}

pub fn unary_table(scenarios: &[Value]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## Unary requests (latency from each request's scheduled send time to the whole answer)\n"
    );
    let _ = writeln!(
        s,
        "| path | side | rate | achieved/s | ok | errors | mean | p50 | p90 | p99 | p99.9 | proxy CPU/req | gateway's own overhead metric (mean) | gateway peak RSS |"
    );
    let _ = writeln!(
        s,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for sc in scenarios.iter().filter(|v| v["stream"] == json!(false)) {
        let name = sc["scenario"].as_str().unwrap_or("");
        for side in SIDES.into_iter().filter(|side| !sc[side].is_null()) {
            let v = &sc[side];
            let (cpu, own, rss) = gateway_cells(v);
            let _ = writeln!(
                s,
                "| {name} | {side} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {cpu} | {own} | {rss} |",
                v["target_rate"].as_f64().unwrap_or(0.0),
                v["achieved_rate"].as_f64().unwrap_or(0.0),
                v["ok"],
                v["errors"]["total"],
                fmt_us(q_us(v, "latency", "mean")),
                fmt_us(q_us(v, "latency", "p50")),
                fmt_us(q_us(v, "latency", "p90")),
                fmt_us(q_us(v, "latency", "p99")),
                fmt_us(q_us(v, "latency", "p99.9")),
            );
        }
        for (key, label) in DIFFS.into_iter().filter(|(key, _)| !sc[key].is_null()) {
            let a = &sc[key];
            let _ = writeln!(
                s,
                "| {name} | **{label}** | | | | | **{}** | **{}** | **{}** | **{}** | **{}** | {} | | |",
                fmt_added(q_us(a, "latency", "mean")),
                fmt_added(q_us(a, "latency", "p50")),
                fmt_added(q_us(a, "latency", "p90")),
                fmt_added(q_us(a, "latency", "p99")),
                fmt_added(q_us(a, "latency", "p99.9")),
                a["cpu_per_request_ratio"]
                    .as_f64()
                    .map_or_else(String::new, |r| format!("**{r:.2}×**")),
            );
        }
    }
    s
}

/// The sides of a scenario, in the report's order (nginx only when run).
const SIDES: [&str; 3] = ["direct", "nginx", "through"];

/// The differences a scenario reports: each row's key and label.
const DIFFS: [(&str, &str); 3] = [
    ("nginx_added", "nginx − direct"),
    ("added", "added (infergate − direct)"),
    ("vs_nginx", "infergate − nginx"),
];

pub fn stream_table(scenarios: &[Value]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## Streams ({PROMPT_WORDS} events each; TTFB from the scheduled send time; per-event = (last byte − first byte) / (events − 1))\n"
    );
    let _ = writeln!(
        s,
        "| path | side | streams/s | achieved/s | ok | errors | TTFB p50 | TTFB p90 | TTFB p99 | TTFB p99.9 | per-event p50 | per-event p99 | whole p50 | whole p99 | gateway CPU/stream | gateway peak RSS |"
    );
    let _ = writeln!(
        s,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for sc in scenarios.iter().filter(|v| v["stream"] == json!(true)) {
        let name = sc["scenario"].as_str().unwrap_or("");
        for side in SIDES.into_iter().filter(|side| !sc[side].is_null()) {
            let v = &sc[side];
            let (cpu, _, rss) = gateway_cells(v);
            let _ = writeln!(
                s,
                "| {name} | {side} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {cpu} | {rss} |",
                v["target_rate"].as_f64().unwrap_or(0.0),
                v["achieved_rate"].as_f64().unwrap_or(0.0),
                v["ok"],
                v["errors"]["total"],
                fmt_us(q_us(v, "ttfb", "p50")),
                fmt_us(q_us(v, "ttfb", "p90")),
                fmt_us(q_us(v, "ttfb", "p99")),
                fmt_us(q_us(v, "ttfb", "p99.9")),
                fmt_us(q_us(v, "per_event", "p50")),
                fmt_us(q_us(v, "per_event", "p99")),
                fmt_us(q_us(v, "latency", "p50")),
                fmt_us(q_us(v, "latency", "p99")),
            );
        }
        for (key, label) in DIFFS.into_iter().filter(|(key, _)| !sc[key].is_null()) {
            let a = &sc[key];
            let _ = writeln!(
                s,
                "| {name} | **{label}** | | | | | **{}** | **{}** | **{}** | **{}** | **{}** | **{}** | **{}** | **{}** | {} | |",
                fmt_added(q_us(a, "ttfb", "p50")),
                fmt_added(q_us(a, "ttfb", "p90")),
                fmt_added(q_us(a, "ttfb", "p99")),
                fmt_added(q_us(a, "ttfb", "p99.9")),
                fmt_added(q_us(a, "per_event", "p50")),
                fmt_added(q_us(a, "per_event", "p99")),
                fmt_added(q_us(a, "latency", "p50")),
                fmt_added(q_us(a, "latency", "p99")),
                a["cpu_per_request_ratio"]
                    .as_f64()
                    .map_or_else(String::new, |r| format!("**{r:.2}×**")),
            );
        }
    }
    s
}

pub fn max_table(max: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## Highest sustained rate (HF path; each step {} s open-loop; sustained = p99 ≤ 10 ms and errors ≤ 0.1%; a failing step runs once more before the search stops)\n",
        max["step_seconds"]
    );
    let _ = writeln!(
        s,
        "| side | step rate | achieved/s | p50 | p99 | errors | proxy CPU (cores) | CPU/req: bench process | CPU/req: proxy | pass |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for side in SIDES {
        let Some(steps) = max[side]["steps"].as_array() else {
            continue;
        };
        for st in steps {
            let _ = writeln!(
                s,
                "| {side} | {:.0} | {:.0} | {} | {} | {:.2}% | {:.2} | {} | {} | {} |",
                st["target_rate"].as_f64().unwrap_or(0.0),
                st["achieved_rate"].as_f64().unwrap_or(0.0),
                fmt_us(q_us(st, "latency", "p50")),
                fmt_us(q_us(st, "latency", "p99")),
                st["error_share"].as_f64().unwrap_or(0.0) * 100.0,
                st["gateway_cpu_share"].as_f64().unwrap_or(0.0),
                fmt_us(
                    st["bench_process_cpu_us_per_request"]
                        .as_f64()
                        .unwrap_or(f64::NAN)
                ),
                fmt_us(
                    st["gateway_cpu_us_per_request"]
                        .as_f64()
                        .unwrap_or(f64::NAN)
                ),
                if st["pass"] == json!(true) {
                    "yes"
                } else if st["attempt"] == json!(1) {
                    "no (run again)"
                } else {
                    "no"
                },
            );
        }
    }
    let _ = writeln!(
        s,
        "\n**Sustained**: direct {:.0} /s, through infergate {:.0} /s — ratio **{:.0}%** (gateway peak RSS during its steps: {:.1} MB).",
        max["direct"]["max_sustained_rate"].as_f64().unwrap_or(0.0),
        max["through"]["max_sustained_rate"].as_f64().unwrap_or(0.0),
        max["ratio"].as_f64().unwrap_or(f64::NAN) * 100.0,
        max["through"]["peak_rss_kb"].as_f64().unwrap_or(0.0) / 1024.0
    );
    if let Some(n) = max.get("vs_nginx") {
        let _ = writeln!(
            s,
            "\n**Against nginx**: nginx sustained {:.0} /s; infergate / nginx **{:.2}×** in throughput; CPU per request at {:.0}/s, the highest step both passed: nginx {}, infergate {}, **{:.2}×**.",
            max["nginx"]["max_sustained_rate"].as_f64().unwrap_or(0.0),
            n["throughput_ratio"].as_f64().unwrap_or(f64::NAN),
            n["cpu_rate"].as_f64().unwrap_or(f64::NAN),
            fmt_us(n["nginx_cpu_us"].as_f64().unwrap_or(f64::NAN)),
            fmt_us(n["gateway_cpu_us"].as_f64().unwrap_or(f64::NAN)),
            n["cpu_per_request_ratio"].as_f64().unwrap_or(f64::NAN),
        );
    }
    if let Some(c) = max.get("cpu_bound") {
        let _ = writeln!(
            s,
            "\n**CPU per request** at {:.0}/s, the highest step both sides passed: direct {} (load generator and emulator), through {} ({} of them plus {} in the gateway). With the cores saturated, through/direct cannot pass their ratio: **{:.0}%**.",
            c["rate"].as_f64().unwrap_or(0.0),
            fmt_us(c["direct_us"].as_f64().unwrap_or(f64::NAN)),
            fmt_us(c["through_us"].as_f64().unwrap_or(f64::NAN)),
            fmt_us(c["through_bench_us"].as_f64().unwrap_or(f64::NAN)),
            fmt_us(c["through_gateway_us"].as_f64().unwrap_or(f64::NAN)),
            c["ceiling"].as_f64().unwrap_or(f64::NAN) * 100.0,
        );
    }
    s
}

/// Two sides' steps at the highest step rate both passed.
fn highest_common(a: &Value, b: &Value) -> Option<(Value, Value)> {
    let passed = |side: &Value| -> Vec<Value> {
        side["steps"]
            .as_array()
            .map(|steps| {
                steps
                    .iter()
                    .filter(|st| st["pass"] == json!(true))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let (a, b) = (passed(a), passed(b));
    let b = b
        .iter()
        .rev()
        .find(|b| a.iter().any(|a| a["target_rate"] == b["target_rate"]))?;
    let a = a
        .iter()
        .rev()
        .find(|a| a["target_rate"] == b["target_rate"])?;
    Some((a.clone(), b.clone()))
}

/// The rate search against nginx: sustained throughput and proxy CPU per
/// request at the highest step both passed, as ratios to nginx's.
pub fn vs_nginx_max(nginx: &Value, through: &Value) -> Value {
    let n = nginx["max_sustained_rate"].as_f64().unwrap_or(0.0);
    let t = through["max_sustained_rate"].as_f64().unwrap_or(0.0);
    let mut v = json!({ "throughput_ratio": if n > 0.0 { t / n } else { f64::NAN } });
    if let Some((n, t)) = highest_common(nginx, through) {
        let (nc, tc) = (
            n["gateway_cpu_us_per_request"].as_f64().unwrap_or(f64::NAN),
            t["gateway_cpu_us_per_request"].as_f64().unwrap_or(f64::NAN),
        );
        v["cpu_rate"] = n["target_rate"].clone();
        v["nginx_cpu_us"] = json!(nc);
        v["gateway_cpu_us"] = json!(tc);
        v["cpu_per_request_ratio"] = json!(tc / nc);
    }
    v
}

/// CPU per request of each side at the highest step rate both passed: the
/// ceiling of the sustained ratio when the machine's cores are the limit.
pub fn cpu_bound(direct: &Value, through: &Value) -> Option<Value> {
    let (d, t) = highest_common(direct, through)?;
    let direct_us = d["bench_process_cpu_us_per_request"].as_f64()?;
    let bench = t["bench_process_cpu_us_per_request"].as_f64()?;
    let gateway = t["gateway_cpu_us_per_request"].as_f64()?;
    Some(json!({
        "rate": t["target_rate"],
        "direct_us": direct_us,
        "through_us": bench + gateway,
        "through_bench_us": bench,
        "through_gateway_us": gateway,
        "ceiling": direct_us / (bench + gateway),
    }))
}

pub fn memory_table(
    idle_kb: u64,
    streams: Option<&Value>,
    end_idle_kb: u64,
    peak_kb: u64,
) -> String {
    let mb = |kb: f64| format!("{:.1} MB", kb / 1024.0);
    let mut s = String::new();
    let _ = writeln!(s, "\n## Gateway memory\n");
    let _ = writeln!(s, "| measure | value |");
    let _ = writeln!(s, "|---|---:|");
    let _ = writeln!(s, "| RSS idle, just started | {} |", mb(idle_kb as f64));
    if let Some(v) = streams {
        let _ = writeln!(
            s,
            "| RSS just before the streams | {} |",
            mb(v["rss_before_kb"].as_f64().unwrap_or(0.0))
        );
        let _ = writeln!(
            s,
            "| RSS with {} concurrent streams open ({} failed, all open after {:.1} s) | {} |",
            v["open_at_measurement"],
            v["failed"],
            v["seconds_to_open_all"].as_f64().unwrap_or(0.0),
            mb(v["rss_with_streams_kb"].as_f64().unwrap_or(0.0))
        );
        let _ = writeln!(
            s,
            "| peak RSS during the streams | {} |",
            mb(v["peak_rss_kb"].as_f64().unwrap_or(0.0))
        );
        let _ = writeln!(
            s,
            "| RSS per open stream | {:.1} KB |",
            v["rss_per_stream_kb"].as_f64().unwrap_or(0.0)
        );
        let _ = writeln!(
            s,
            "| RSS after the streams closed | {} |",
            mb(v["rss_after_release_kb"].as_f64().unwrap_or(0.0))
        );
        let _ = writeln!(
            s,
            "| threads / open fds with the streams open (fds before) | {} / {} ({}) |",
            v["threads"], v["open_fds"], v["open_fds_before"]
        );
    }
    let _ = writeln!(
        s,
        "| RSS idle at the end of the run | {} |",
        mb(end_idle_kb as f64)
    );
    let _ = writeln!(
        s,
        "| peak RSS since the last reset (VmHWM) | {} |",
        mb(peak_kb as f64)
    );
    s
}

pub fn metrics_table(m: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## Does scraping /metrics slow the request path? (HF through infergate at {:.0}/s; scraper every 100 ms; {} scrapes of {} bytes, scrape p50 {})\n",
        m["rate"].as_f64().unwrap_or(0.0),
        m["scrapes"],
        m["metrics_body_bytes"],
        fmt_us(q_us(m, "scrape_latency", "p50"))
    );
    let _ = writeln!(s, "| | p50 | p99 | p99.9 | errors |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for (label, key) in [("without scraper", "without"), ("with scraper", "with")] {
        let v = &m[key];
        let _ = writeln!(
            s,
            "| {label} | {} | {} | {} | {} |",
            fmt_us(q_us(v, "latency", "p50")),
            fmt_us(q_us(v, "latency", "p99")),
            fmt_us(q_us(v, "latency", "p99.9")),
            v["errors"]["total"]
        );
    }
    let _ = writeln!(
        s,
        "| ratio with / without | {:.2} | {:.2} | | |",
        m["ratio_p50"].as_f64().unwrap_or(f64::NAN),
        m["ratio_p99"].as_f64().unwrap_or(f64::NAN)
    );
    s
}

pub fn targets(results: &Value) -> (String, Value) {
    let find = |name: &str| {
        results["scenarios"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["scenario"] == json!(name)))
            .cloned()
    };
    let mut rows: Vec<(String, String, String, Option<bool>)> = Vec::new();
    let mut row =
        |target: &str, limit: &str, measured: Option<f64>, ok: &dyn Fn(f64) -> bool, unit: &str| {
            let (text, met) = match measured {
                Some(m) if m.is_finite() => (
                    if unit == "µs" {
                        fmt_added(m)
                    } else if unit == " /s" {
                        format!("{m:.0}{unit}")
                    } else {
                        format!("{m:.1}{unit}")
                    },
                    Some(ok(m)),
                ),
                _ => ("not measured".to_string(), None),
            };
            rows.push((target.to_string(), limit.to_string(), text, met));
        };
    let added = |sc: &str, key: &str, q: &str| find(sc).map(|v| q_us(&v["added"], key, q));
    let rate = results["rate"].as_f64().unwrap_or(0.0);
    row(
        &format!("HF added latency p50 at {rate}/s"),
        "≤ 100 µs",
        added("hf", "latency", "p50"),
        &|m| m <= 100.0,
        "µs",
    );
    row(
        &format!("HF added latency p99 at {rate}/s"),
        "≤ 500 µs",
        added("hf", "latency", "p99"),
        &|m| m <= 500.0,
        "µs",
    );
    row(
        &format!("SageMaker (SigV4) added latency p50 at {rate}/s"),
        "≤ 150 µs",
        added("sm", "latency", "p50"),
        &|m| m <= 150.0,
        "µs",
    );
    row(
        "Stream TTFB added p50 (HF)",
        "≤ 200 µs",
        added("hf-stream", "ttfb", "p50"),
        &|m| m <= 200.0,
        "µs",
    );
    row(
        "Stream TTFB added p50 (SageMaker)",
        "≤ 200 µs",
        added("sm-stream", "ttfb", "p50"),
        &|m| m <= 200.0,
        "µs",
    );
    let max = &results["max_rate"];
    row(
        "Sustained rate through / direct",
        "≥ 70%",
        max["ratio"].as_f64().map(|r| r * 100.0),
        &|m| m >= 70.0,
        "%",
    );
    row(
        "Sustained rate through infergate",
        "≥ 5,000 /s",
        max["through"]["max_sustained_rate"].as_f64(),
        &|m| m >= 5000.0,
        " /s",
    );
    row(
        "Idle RSS",
        "≤ 20 MB",
        results["memory"]["idle_rss_kb"]
            .as_f64()
            .map(|kb| kb / 1024.0),
        &|m| m <= 20.0,
        " MB",
    );
    row(
        "RSS with 1,000 concurrent streams",
        "≤ 100 MB",
        results["memory"]["streams"]["rss_with_streams_kb"]
            .as_f64()
            .map(|kb| kb / 1024.0),
        &|m| m <= 100.0,
        " MB",
    );
    let mut s = String::new();
    let _ = writeln!(s, "\n## Targets (issue 6)\n");
    let _ = writeln!(s, "| target | limit | measured | met |");
    let _ = writeln!(s, "|---|---|---:|---|");
    let mut out = Vec::new();
    for (t, l, m, met) in &rows {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "–",
        };
        let _ = writeln!(s, "| {t} | {l} | {m} | {verdict} |");
        out.push(json!({"target": t, "limit": l, "measured": m, "met": met}));
    }
    let _ = writeln!(
        s,
        "| SigV4 signing of 1 KiB; balancer pick at 10 backends | ≤ 10 µs; ≤ 1 µs | see `cargo bench --bench hot` | – |"
    );
    (s, Value::Array(out))
}

/// Issue 11's targets: the gateway against nginx in the same run. Without
/// nginx, one line saying so.
pub fn nginx_targets(results: &Value) -> (String, Value) {
    let mut s = String::new();
    let _ = writeln!(s, "\n## Against nginx (issue 11)\n");
    let hf = results["scenarios"]
        .as_array()
        .and_then(|a| a.iter().find(|v| v["scenario"] == json!("hf")))
        .map(|v| &v["vs_nginx"])
        .filter(|v| !v.is_null());
    let max = Some(&results["max_rate"]["vs_nginx"]).filter(|v| !v.is_null());
    if hf.is_none() && max.is_none() {
        let _ = writeln!(
            s,
            "nginx: {}.",
            results["meta"]["nginx"].as_str().unwrap_or("not run")
        );
        return (s, Value::Null);
    }
    let rate = results["rate"].as_f64().unwrap_or(0.0);
    let ratio = |v: Option<&Value>, key: &str| v.and_then(|v| v[key].as_f64());
    let minus = |q: &str| hf.map(|v| q_us(v, "latency", q));
    let rows: [(String, &str, Option<f64>, bool, f64); 6] = [
        (
            format!("HF unary: gateway CPU per request ÷ nginx's, at {rate}/s"),
            "≤ 1.6×",
            ratio(hf, "cpu_per_request_ratio"),
            true,
            1.6,
        ),
        (
            "HF unary: gateway CPU per request ÷ nginx's, highest step both sustained".into(),
            "≤ 1.6×",
            ratio(max, "cpu_per_request_ratio"),
            true,
            1.6,
        ),
        (
            "Sustained throughput ÷ nginx's".into(),
            "≥ 0.85×",
            ratio(max, "throughput_ratio"),
            false,
            0.85,
        ),
        (
            format!("HF latency at {rate}/s, mean − nginx's"),
            "≤ +50 µs",
            minus("mean"),
            true,
            50.0,
        ),
        (
            format!("HF latency at {rate}/s, p50 − nginx's"),
            "≤ +50 µs",
            minus("p50"),
            true,
            50.0,
        ),
        (
            format!("HF latency at {rate}/s, p99 − nginx's"),
            "≤ +150 µs",
            minus("p99"),
            true,
            150.0,
        ),
    ];
    let _ = writeln!(s, "| target | limit | measured | met |");
    let _ = writeln!(s, "|---|---|---:|---|");
    let mut out = Vec::new();
    for (target, limit, measured, at_most, bound) in rows {
        let measured = measured.filter(|m| m.is_finite());
        let text = match measured {
            Some(m) if limit.ends_with('×') => format!("{m:.2}×"),
            Some(m) => fmt_added(m),
            None => "not measured".into(),
        };
        let met = measured.map(|m| if at_most { m <= bound } else { m >= bound });
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "–",
        };
        let _ = writeln!(s, "| {target} | {limit} | {text} | {verdict} |");
        out.push(json!({"target": target, "limit": limit, "measured": measured, "met": met}));
    }
    (s, Value::Array(out))
}
