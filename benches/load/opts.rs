//! The command-line flags.

use std::time::Duration;

// === options ===

#[derive(Clone, Debug)]
pub struct Opts {
    pub quick: bool,
    pub rate: f64,
    pub stream_rate: f64,
    /// Measured seconds per side, unary scenarios and the metrics test.
    pub secs: f64,
    /// Measured seconds per side, stream scenarios.
    pub stream_secs: f64,
    /// Direct/through alternations the measured time is cut into.
    pub rounds: usize,
    pub warmup: Duration,
    pub step: Duration,
    pub streams: usize,
    pub log_level: Option<String>,
    /// The gateway's `server.workers`; its default (one per CPU) when unset.
    pub workers: Option<usize>,
    pub only: Option<Vec<String>>,
}

impl Opts {
    pub fn parse() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let quick = args.iter().any(|a| a == "--quick");
        let mut o = if quick {
            Opts {
                quick,
                rate: 1000.0,
                stream_rate: 1000.0,
                secs: 1.2,
                stream_secs: 0.8,
                rounds: 1,
                warmup: Duration::from_millis(200),
                step: Duration::from_millis(500),
                streams: 1000,
                log_level: None,
                workers: None,
                only: None,
            }
        } else {
            Opts {
                quick,
                rate: 1000.0,
                stream_rate: 1000.0,
                secs: 10.0,
                stream_secs: 6.0,
                rounds: 5,
                warmup: Duration::from_millis(500),
                step: Duration::from_secs(2),
                streams: 1000,
                log_level: None,
                workers: None,
                only: None,
            }
        };
        let value = |i: usize| args.get(i + 1).cloned().unwrap_or_default();
        let number = |i: usize, flag: &str| -> f64 {
            value(i)
                .parse::<f64>()
                .ok()
                .filter(|v| *v > 0.0)
                .unwrap_or_else(|| panic!("{flag} needs a positive number"))
        };
        for (i, a) in args.iter().enumerate() {
            match a.as_str() {
                "--rate" => o.rate = number(i, a),
                "--stream-rate" => o.stream_rate = number(i, a),
                "--duration" => o.secs = number(i, a),
                "--streams" => o.streams = number(i, a) as usize,
                "--log-level" => o.log_level = Some(value(i)),
                "--workers" => o.workers = Some(number(i, a) as usize),
                "--only" => o.only = Some(value(i).split(',').map(str::to_string).collect()),
                _ => {}
            }
        }
        o
    }

    pub fn runs(&self, scenario: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|s| s == scenario))
    }
}
