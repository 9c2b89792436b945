//! What shadow traffic and the response cache change for the client
//! (`--only shadow`): the same HF request through the bench's gateway in
//! one run, slices alternated, on three routes: `hf` (plain),
//! `hf-shadowed` (every request also sent to a shadow backend on the same
//! emulator and the answers compared, off the request path) and
//! `hf-cached` (the same request every time: a hit after the first).
//! Reported: each one's latency and the gateway's CPU per request, and the
//! latency each adds to plain at the mean, p50 and p99. The shadow should
//! add none (its call starts once the client has the answer); its CPU is a
//! second upstream call and a comparison, on the same two cores. Unary and
//! streamed.

use serde_json::{json, Value};

use crate::bench::{Bench, Via};
use crate::results::{fmt_added, fmt_us, q_us};

const VIAS: [Via; 3] = [Via::Gateway, Via::Shadowed, Via::Cached];

/// The scenario's report, as JSON: one part per kind of request.
pub fn shadow_cost(bench: &mut Bench) -> Value {
    let mut v = json!({});
    for stream in [false, true] {
        let (rate, secs) = if stream {
            (bench.opts.stream_rate, bench.opts.stream_secs)
        } else {
            (bench.opts.rate, bench.opts.secs)
        };
        eprintln!(
            "load bench: shadow and cache ({}) at {rate}/s, {secs} s per side",
            kind(stream)
        );
        let make = move |b: &Bench, via: Via| b.target(via, "hf", stream);
        let sides = bench.alternated("hf", rate, secs, &VIAS, &make);
        let tck = bench.tck;
        let json_of = |via: Via| {
            let side = sides.iter().find(|s| s.name == via.name())?;
            Some(side.json_with_cpu(tck))
        };
        let plain = json_of(Via::Gateway).unwrap_or(Value::Null);
        let mut part = json!({ "rate": rate, "plain": plain });
        for via in [Via::Shadowed, Via::Cached] {
            let side = json_of(via).unwrap_or(Value::Null);
            let added: serde_json::Map<String, Value> = ["mean", "p50", "p99"]
                .into_iter()
                .map(|q| {
                    let d = q_us(&side, "latency", q) - q_us(&plain, "latency", q);
                    (format!("{q}_us"), json!(d))
                })
                .collect();
            part[format!("added_latency_{}", via.name())] = Value::Object(added);
            part[via.name()] = side;
        }
        v[kind(stream)] = part;
    }
    v
}

fn kind(stream: bool) -> &'static str {
    if stream {
        "stream"
    } else {
        "unary"
    }
}

/// The scenario as a markdown table.
pub fn shadow_table(v: &Value) -> String {
    let mut out = String::from(
        "\n### Shadow traffic and the response cache (same run, alternated)\n\n\
         | request | route | CPU per request | mean | p50 | p99 | added mean / p50 / p99 |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for stream in [false, true] {
        let part = &v[kind(stream)];
        if part.is_null() {
            continue;
        }
        for (key, name) in [
            ("through", "plain"),
            ("shadowed", "shadowed, 100%"),
            ("cached", "cached, every request a hit"),
        ] {
            let side = if key == "through" {
                &part["plain"]
            } else {
                &part[key]
            };
            if side.is_null() {
                continue;
            }
            let added = &part[format!("added_latency_{key}")];
            let added = if added.is_null() {
                "—".to_string()
            } else {
                ["mean", "p50", "p99"]
                    .map(|q| fmt_added(added[format!("{q}_us")].as_f64().unwrap_or(f64::NAN)))
                    .join(" / ")
            };
            out.push_str(&format!(
                "| {} at {}/s | {name} | {} | {} | {} | {} | {added} |\n",
                kind(stream),
                part["rate"],
                fmt_us(side["cpu_us_per_request"].as_f64().unwrap_or(f64::NAN)),
                fmt_us(q_us(side, "latency", "mean")),
                fmt_us(q_us(side, "latency", "p50")),
                fmt_us(q_us(side, "latency", "p99")),
            ));
        }
    }
    out.push_str(
        "\n- The shadowed route's CPU includes its shadow call and the comparison; \
         its latency should match plain's (the shadow call starts once the client has the answer).\n",
    );
    out
}
