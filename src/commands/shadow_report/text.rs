//! The report as a person reads it: one block per route and shadow.
//! Answers are shown on one line each, their control characters escaped
//! (an answer is the model's text: it must not drive the terminal), cut to
//! [`SHOWN_CHARS`]; `--json` has them as the log keeps them.

use std::fmt::Write as _;

use super::summary::{GroupReport, Percentiles, Report};
use super::Skipped;
use crate::shadow::line::Answer;

/// The characters of an answer shown in the table.
pub const SHOWN_CHARS: usize = 120;

pub fn render(report: &Report<'_>) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut out, report);
    out
}

fn write_report(out: &mut String, report: &Report<'_>) -> std::fmt::Result {
    writeln!(
        out,
        "shadow report: {} {}",
        report.lines,
        plural(report.lines, "line")
    )?;
    write_skipped(out, &report.skipped)?;
    if report.groups.is_empty() {
        writeln!(out, "no shadow calls to report")?;
    }
    for group in &report.groups {
        writeln!(out)?;
        write_group(out, group)?;
    }
    Ok(())
}

fn write_skipped(out: &mut String, skipped: &Skipped) -> std::fmt::Result {
    for (n, why) in [
        (skipped.not_json, "not JSON"),
        (skipped.not_a_diff_line, "not a diff-log line"),
        (skipped.too_long, "longer than 4 MiB"),
    ] {
        if n > 0 {
            writeln!(out, "{n} {} skipped: {why}", plural(n, "line"))?;
        }
    }
    Ok(())
}

fn write_group(out: &mut String, g: &GroupReport<'_>) -> std::fmt::Result {
    // Names come from the file too: escaped, as the answers are.
    let name = |n: &str| shown(n, 200);
    write!(out, "route {}, shadow {}", name(g.route), name(g.shadow))?;
    match g.primaries.as_slice() {
        [] => writeln!(out)?,
        primaries => {
            let primaries: Vec<String> = primaries.iter().map(|p| name(p)).collect();
            writeln!(out, " (primary {})", primaries.join(", "))?
        }
    }
    writeln!(
        out,
        "  calls {}: match {}, differ {}, shadow_error {}",
        g.calls, g.matched, g.differ, g.shadow_error
    )?;
    match (g.agreement, g.agreement_ci95) {
        (Some(a), Some([lo, hi])) => writeln!(
            out,
            "  agreement {} (95% CI {} to {}, {} compared)",
            percent(a),
            percent(lo),
            percent(hi),
            g.matched + g.differ
        )?,
        _ => writeln!(out, "  agreement: no answer compared")?,
    }
    let s = &g.similarity;
    if let (Some(mean), Some(p50), Some(min)) = (s.mean, s.p50, s.min) {
        writeln!(
            out,
            "  similarity mean {mean:.3}, p50 {p50:.3}, min {min:.3} ({} {})",
            s.answers,
            plural(s.answers as u64, "answer")
        )?;
    }
    write_latency(out, g)?;
    write_worst(out, g)
}

fn write_latency(out: &mut String, g: &GroupReport<'_>) -> std::fmt::Result {
    let l = &g.latency_ms;
    if l.answered == 0 {
        return Ok(());
    }
    writeln!(
        out,
        "  latency (ms)   {:>10} {:>10} {:>10}",
        "p50", "p95", "p99"
    )?;
    let row = |out: &mut String, name: &str, p: &Percentiles, unit: &str| {
        let cell = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}{unit}"));
        writeln!(
            out,
            "    {name:<12} {:>10} {:>10} {:>10}",
            cell(p.p50),
            cell(p.p95),
            cell(p.p99)
        )
    };
    row(out, "primary", &l.primary, "")?;
    row(out, "shadow", &l.shadow, "")?;
    row(out, "shadow/prim.", &l.ratio, "x")
}

fn write_worst(out: &mut String, g: &GroupReport<'_>) -> std::fmt::Result {
    if g.worst.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "  worst differences ({} of {}):",
        g.worst.len(),
        g.differ
    )?;
    for (i, line) in g.worst.iter().enumerate() {
        let similarity = line
            .similarity
            .map_or_else(String::new, |s| format!("  similarity {s:.3}"));
        let difference = line.difference.as_deref().unwrap_or("differs");
        writeln!(
            out,
            "    {}. {}{similarity}  {}",
            i + 1,
            shown(&line.request_id, SHOWN_CHARS),
            shown(difference, SHOWN_CHARS)
        )?;
        writeln!(out, "       primary: {}", answer(&line.primary_answer))?;
        if let Some(a) = &line.shadow_answer {
            writeln!(out, "       shadow:  {}", answer(a))?;
        }
    }
    Ok(())
}

/// An answer on one line.
fn answer(a: &Answer) -> String {
    let bytes = format!("{} {}", a.bytes, plural(a.bytes, "byte"));
    match (&a.text, &a.base64) {
        (Some(text), _) => {
            let more = match a.truncated {
                true => format!(" ({bytes} in all)"),
                false => String::new(),
            };
            format!("{}{more}", shown(text, SHOWN_CHARS))
        }
        (None, Some(_)) => format!("({bytes}, not UTF-8: see --json)"),
        (None, None) => format!("({bytes}, not kept)"),
    }
}

/// `text` with its control characters escaped, cut to `max` characters.
fn shown(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        match c.is_control() {
            true => out.extend(c.escape_default()),
            false => out.push(c),
        }
    }
    out
}

fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

fn plural(n: u64, word: &str) -> String {
    match n {
        1 => word.to_owned(),
        _ => format!("{word}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_shown_escaped_and_cut() {
        assert_eq!(shown("a\u{1b}[31mb\n", 64), "a\\u{1b}[31mb\\n");
        assert_eq!(shown("abcdef", 3), "abc…");
        let cut = Answer::cut(b"hello world", 5);
        assert_eq!(answer(&cut), "hello (11 bytes in all)");
        assert_eq!(
            answer(&Answer::cut(&[0xff, 0xfe], 8)),
            "(2 bytes, not UTF-8: see --json)"
        );
        assert_eq!(answer(&Answer::cut(b"x", 0)), "(1 byte, not kept)");
    }
}
