//! `infergate shadow-report`: reads shadow diff logs (`[shadow] diff_log`,
//! [`crate::shadow::diff_log`]) and tells, per route and shadow, how often
//! the shadow agreed with the primary (with a 95% Wilson interval), how
//! alike their answers were, how their latencies compare, and which
//! requests differed most: what a team needs to decide whether to promote
//! the candidate.
//!
//! Lines are read one at a time ([`Tally`]); only the numbers and the
//! worst few lines of each group are kept, so a log of millions of lines
//! fits. A line that is not JSON, not a diff-log line or absurdly long is
//! counted and said, never fatal. [`summary`] computes the figures once;
//! [`text`] prints them as a table, `--json` as one JSON object.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read as _};
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::shadow::line::{DiffLine, Outcome};

mod stats;
mod summary;
mod text;

/// The longest line read; the gateway writes far shorter ones (two answers
/// of at most 64 KiB each, escaped).
pub const MAX_LINE: usize = 4 << 20;

/// What `infergate shadow-report` was asked.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Only this route's lines.
    pub route: Option<String>,
    /// Only this shadow's lines.
    pub shadow: Option<String>,
    /// The worst differences listed per route and shadow.
    pub worst: usize,
    pub json: bool,
    /// `-` is standard input.
    pub files: Vec<PathBuf>,
}

/// `infergate shadow-report`: exit 1 when a file cannot be read.
pub fn shadow_report(opts: &ReportOptions) -> ExitCode {
    let mut tally = Tally::new(opts);
    for file in &opts.files {
        let read = match file.to_str() {
            Some("-") => tally.read(std::io::stdin().lock()),
            _ => std::fs::File::open(file).and_then(|f| tally.read(BufReader::new(f))),
        };
        if let Err(e) = read {
            eprintln!("infergate shadow-report: {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    }
    let report = summary::Report::of(&tally);
    if opts.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("infergate shadow-report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", text::render(&report));
    }
    ExitCode::SUCCESS
}

/// Lines that were not read as diff-log lines, by why.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub not_json: u64,
    /// JSON, but not a diff-log line (a field missing or of another type).
    pub not_a_diff_line: u64,
    /// Longer than [`MAX_LINE`].
    pub too_long: u64,
}

/// Everything read so far.
#[derive(Debug)]
pub struct Tally {
    route: Option<String>,
    shadow: Option<String>,
    /// The worst differences kept per group.
    pub worst: usize,
    /// Diff-log lines read, the filters' included.
    pub lines: u64,
    pub skipped: Skipped,
    /// By route, then shadow.
    pub groups: BTreeMap<(String, String), Group>,
}

/// One route's one shadow.
#[derive(Debug, Default)]
pub struct Group {
    pub primaries: BTreeSet<String>,
    pub calls: u64,
    pub matched: u64,
    pub differ: u64,
    pub shadow_error: u64,
    pub similarity: Vec<f64>,
    /// Of the calls the shadow answered, in the same order.
    pub primary_ms: Vec<f64>,
    pub shadow_ms: Vec<f64>,
    /// The worst differences so far, with their place in the input; more
    /// than asked for between prunings.
    worst: Vec<(u64, DiffLine)>,
}

impl Tally {
    pub fn new(opts: &ReportOptions) -> Self {
        Self {
            route: opts.route.clone(),
            shadow: opts.shadow.clone(),
            worst: opts.worst,
            lines: 0,
            skipped: Skipped::default(),
            groups: BTreeMap::new(),
        }
    }

    /// Reads every line of `input`.
    pub fn read(&mut self, mut input: impl BufRead) -> std::io::Result<()> {
        let mut line = Vec::new();
        loop {
            line.clear();
            let limit = (MAX_LINE + 1) as u64;
            let n = (&mut input).take(limit).read_until(b'\n', &mut line)?;
            if n == 0 {
                return Ok(());
            }
            if line.len() > MAX_LINE && line.last() != Some(&b'\n') {
                self.skipped.too_long += 1;
                skip_line(&mut input)?;
                continue;
            }
            self.line(&line);
        }
    }

    /// One line, newline included.
    fn line(&mut self, bytes: &[u8]) {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let line = match serde_json::from_slice::<DiffLine>(bytes) {
            Ok(line) => line,
            Err(e) if e.is_data() => {
                self.skipped.not_a_diff_line += 1;
                return;
            }
            Err(_) => {
                self.skipped.not_json += 1;
                return;
            }
        };
        self.lines += 1;
        let wanted =
            |filter: &Option<String>, name: &str| filter.as_deref().is_none_or(|f| f == name);
        if wanted(&self.route, &line.route) && wanted(&self.shadow, &line.shadow) {
            let seq = self.lines;
            let key = (line.route.clone(), line.shadow.clone());
            self.groups
                .entry(key)
                .or_default()
                .add(seq, line, self.worst);
        }
    }
}

/// Reads past the rest of the line at hand.
fn skip_line(input: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                input.consume(n);
            }
        }
    }
}

impl Group {
    fn add(&mut self, seq: u64, line: DiffLine, worst: usize) {
        self.calls += 1;
        if let Some(primary) = &line.primary {
            if !self.primaries.contains(primary) {
                self.primaries.insert(primary.clone());
            }
        }
        match line.outcome {
            Outcome::Match => self.matched += 1,
            Outcome::Differ => self.differ += 1,
            Outcome::ShadowError => self.shadow_error += 1,
        }
        if let Some(s) = line.similarity.filter(|s| s.is_finite()) {
            self.similarity.push(s);
        }
        if line.outcome != Outcome::ShadowError {
            self.primary_ms.push(line.primary_ms);
            self.shadow_ms.push(line.shadow_ms);
        }
        if line.outcome == Outcome::Differ && worst > 0 {
            self.worst.push((seq, line));
            if self.worst.len() >= worst.saturating_mul(2).max(64) {
                self.prune(worst);
            }
        }
    }

    /// Keeps the `n` worst differences.
    fn prune(&mut self, n: usize) {
        self.worst.sort_by(worse_first);
        self.worst.truncate(n);
    }

    /// The `n` worst differences, worst first.
    pub fn worst(&self, n: usize) -> Vec<&DiffLine> {
        let mut worst: Vec<&(u64, DiffLine)> = self.worst.iter().collect();
        worst.sort_by(|a, b| worse_first(a, b));
        worst.into_iter().take(n).map(|(_, line)| line).collect()
    }
}

/// The lowest similarity first, then the differences without one, each
/// in the order read.
fn worse_first(a: &(u64, DiffLine), b: &(u64, DiffLine)) -> std::cmp::Ordering {
    let rank =
        |(seq, l): &(u64, DiffLine)| (l.similarity.is_none(), l.similarity.unwrap_or(0.0), *seq);
    let (x, y) = (rank(a), rank(b));
    x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)).then(x.2.cmp(&y.2))
}

#[cfg(test)]
#[path = "shadow_report_tests.rs"]
mod tests;
