//! Reading diff logs (what is skipped and why, the filters, the worst
//! differences kept) and the figures and table made of them.

use super::summary::Report;
use super::*;
use crate::shadow::line::Answer;

fn options(worst: usize) -> ReportOptions {
    ReportOptions {
        route: None,
        shadow: None,
        worst,
        json: false,
        files: Vec::new(),
    }
}

/// A line of `route` and `shadow` with `outcome`, `similarity`, and the
/// primary's and shadow's times.
fn line(
    route: &str,
    shadow: &str,
    outcome: Outcome,
    similarity: Option<f64>,
    ms: (f64, f64),
) -> String {
    let line = DiffLine {
        time: "2025-01-02T03:04:05.678Z".into(),
        route: route.into(),
        shadow: shadow.into(),
        primary: Some("sm".into()),
        request_id: format!("{route}-{similarity:?}-{}", fastrand::u32(..)),
        operation: "predict".into(),
        outcome,
        primary_status: 200,
        shadow_status: (outcome != Outcome::ShadowError).then_some(200),
        primary_ms: ms.0,
        shadow_ms: ms.1,
        similarity,
        difference: (outcome != Outcome::Match).then(|| "differs".to_owned()),
        primary_answer: Answer::cut(b"primary", 64),
        shadow_answer: None,
    };
    serde_json::to_string(&line).unwrap() + "\n"
}

fn tally(text: &str, opts: &ReportOptions) -> Tally {
    let mut tally = Tally::new(opts);
    tally.read(text.as_bytes()).unwrap();
    tally
}

#[test]
fn malformed_lines_are_counted_by_why_and_never_fatal() {
    let long = "x".repeat(MAX_LINE + 10);
    let text = format!(
        "{}not json\n{{\"route\": 1}}\n\n   \n[1, 2]\n{long}\n{}\u{0}\u{ff}garbage\n{}",
        line("r", "s", Outcome::Match, Some(1.0), (1.0, 2.0)),
        line("r", "s", Outcome::Differ, Some(0.5), (1.0, 2.0)),
        // The last line without its newline still counts.
        line("r", "s", Outcome::Match, None, (1.0, 2.0)).trim_end(),
    );
    let t = tally(&text, &options(5));
    assert_eq!(t.lines, 3);
    assert_eq!(
        t.skipped,
        Skipped {
            not_json: 2,
            not_a_diff_line: 2,
            too_long: 1
        }
    );
    let g = &t.groups[&("r".to_owned(), "s".to_owned())];
    assert_eq!((g.calls, g.matched, g.differ, g.shadow_error), (3, 2, 1, 0));
}

#[test]
fn the_filters_keep_one_route_or_shadow() {
    let text = [
        line("a", "s", Outcome::Match, None, (1.0, 1.0)),
        line("a", "t", Outcome::Match, None, (1.0, 1.0)),
        line("b", "s", Outcome::Match, None, (1.0, 1.0)),
    ]
    .concat();
    let only = |route: Option<&str>, shadow: Option<&str>| {
        let opts = ReportOptions {
            route: route.map(str::to_owned),
            shadow: shadow.map(str::to_owned),
            ..options(5)
        };
        let t = tally(&text, &opts);
        assert_eq!(t.lines, 3, "every line is read");
        t.groups.into_keys().collect::<Vec<_>>()
    };
    let key = |r: &str, s: &str| (r.to_owned(), s.to_owned());
    assert_eq!(only(Some("a"), None), [key("a", "s"), key("a", "t")]);
    assert_eq!(only(None, Some("s")), [key("a", "s"), key("b", "s")]);
    assert_eq!(only(Some("b"), Some("t")), []);
}

#[test]
fn the_worst_are_the_least_alike_then_those_without_a_similarity() {
    let mut text = String::new();
    // Many more than are kept, so that pruning runs on the way.
    for i in 0..500 {
        let s = 0.5 + f64::from(i % 100) / 250.0;
        text += &line("r", "s", Outcome::Differ, Some(s), (1.0, 1.0));
        text += &line("r", "s", Outcome::Differ, None, (1.0, 1.0));
        text += &line("r", "s", Outcome::Match, Some(1.0), (1.0, 1.0));
    }
    text += &line("r", "s", Outcome::Differ, Some(0.1), (1.0, 1.0));
    let t = tally(&text, &options(3));
    let g = &t.groups[&("r".to_owned(), "s".to_owned())];
    let worst: Vec<Option<f64>> = g.worst(3).iter().map(|l| l.similarity).collect();
    assert_eq!(worst, [Some(0.1), Some(0.5), Some(0.5)]);
    assert!(
        g.worst.len() <= 64,
        "the kept are bounded: {}",
        g.worst.len()
    );
    // With only unmeasured differences, those are listed.
    let t = tally(
        &line("r", "s", Outcome::Differ, None, (1.0, 1.0)),
        &options(3),
    );
    assert_eq!(
        t.groups[&("r".to_owned(), "s".to_owned())].worst(3).len(),
        1
    );
    assert!(tally(&text, &options(0))
        .groups
        .values()
        .all(|g| g.worst(5).is_empty()));
}

/// 70 matches, 30 differences and 5 shadow errors of route `r`, shadow `s`.
fn seventy_thirty() -> String {
    let mut text = String::new();
    // The shadow twice as slow as the primary, whose times are 1..=100 ms.
    for i in 1..=100 {
        let (outcome, similarity) = match i <= 70 {
            true => (Outcome::Match, 1.0),
            false => (Outcome::Differ, 0.5),
        };
        let ms = (f64::from(i), 2.0 * f64::from(i));
        text += &line("r", "s", outcome, Some(similarity), ms);
    }
    for _ in 0..5 {
        text += &line("r", "s", Outcome::ShadowError, None, (1.0, 5000.0));
    }
    text
}

#[test]
fn the_figures_of_a_group() {
    let t = tally(&seventy_thirty(), &options(2));
    let report = Report::of(&t);
    let g = &report.groups[0];
    assert_eq!(
        (g.calls, g.matched, g.differ, g.shadow_error),
        (105, 70, 30, 5)
    );
    assert_eq!(g.agreement, Some(0.7));
    let [lo, hi] = g.agreement_ci95.unwrap();
    assert!(
        (lo - 0.6041).abs() < 5e-4 && (hi - 0.7810).abs() < 5e-4,
        "{lo} {hi}"
    );
    assert_eq!(g.similarity.answers, 100);
    assert_eq!((g.similarity.p50, g.similarity.min), (Some(1.0), Some(0.5)));
    assert!((g.similarity.mean.unwrap() - 0.85).abs() < 1e-9);
    // The shadow errors' times are left out.
    let l = &g.latency_ms;
    assert_eq!(l.answered, 100);
    assert_eq!(
        (l.primary.p50, l.primary.p95, l.primary.p99),
        (Some(50.0), Some(95.0), Some(99.0))
    );
    assert_eq!((l.shadow.p50, l.shadow.p99), (Some(100.0), Some(198.0)));
    assert_eq!((l.ratio.p50, l.ratio.p95), (Some(2.0), Some(2.0)));
    assert_eq!(g.worst.len(), 2);
    assert_eq!(g.primaries, ["sm"]);
}

#[test]
fn the_table_says_it_all() {
    let text = format!("{}oops\n", seventy_thirty());
    let t = tally(&text, &options(1));
    let table = text::render(&Report::of(&t));
    for expected in [
        "shadow report: 105 lines\n",
        "1 line skipped: not JSON\n",
        "route r, shadow s (primary sm)\n",
        "  calls 105: match 70, differ 30, shadow_error 5\n",
        "  agreement 70.0% (95% CI 60.4% to 78.1%, 100 compared)\n",
        "  similarity mean 0.850, p50 1.000, min 0.500 (100 answers)\n",
        "    primary          50.000     95.000     99.000\n",
        "    shadow/prim.     2.000x     2.000x     2.000x\n",
        "  worst differences (1 of 30):\n",
        "       primary: primary\n",
    ] {
        assert!(table.contains(expected), "{expected:?} in\n{table}");
    }
    let empty = text::render(&Report::of(&tally("", &options(1))));
    assert_eq!(empty, "shadow report: 0 lines\nno shadow calls to report\n");
}

#[test]
fn the_json_report_names_every_figure() {
    let t = tally(&seventy_thirty(), &options(1));
    let json = serde_json::to_value(Report::of(&t)).unwrap();
    let g = &json["groups"][0];
    assert_eq!(g["match"], 70);
    assert_eq!(g["agreement"], 0.7);
    assert_eq!(g["latency_ms"]["ratio"]["p50"], 2.0);
    assert_eq!(g["worst"][0]["outcome"], "differ");
    assert_eq!(json["skipped"]["not_json"], 0);
}
