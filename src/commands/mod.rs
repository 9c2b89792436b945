//! What each `infergate` command does; `main.rs` only parses arguments.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

use crate::config::{Config, TelemetryConfig};
use crate::emulator::cli::EmulateCommand;
use crate::gateway::{BuildOptions, Gateway, Live};
use crate::reload::{Hangup, PidFile, Reloader};
use crate::server;
use crate::telemetry::{access_log, SpanSink};

mod reload;
mod shadow_report;

pub use reload::reload;
pub use shadow_report::{shadow_report, ReportOptions};

/// `--log-format`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logging options shared by the long-running commands.
#[derive(Debug, Clone)]
pub struct Logging {
    pub format: LogFormat,
    /// `--log-level`; RUST_LOG when absent; else `info`.
    pub level: Option<String>,
}

impl Logging {
    /// Installs the global subscriber. Logs go to stderr. Access lines take
    /// the same format but their own writer ([`access_log`]), which learns
    /// here, once, the format and whether the filter lets them through.
    pub fn init(&self) {
        let filter = match &self.level {
            Some(level) => EnvFilter::try_new(level),
            None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info")),
        }
        .unwrap_or_else(|_| EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
        let _ = match self.format {
            LogFormat::Text => builder.try_init(),
            LogFormat::Json => builder.json().flatten_event(true).try_init(),
        };
        access_log::init(match self.format {
            LogFormat::Text => access_log::Format::Text,
            LogFormat::Json => access_log::Format::Json,
        });
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    build_runtime(tokio::runtime::Builder::new_multi_thread())
}

/// The runtime of the gateway's first worker, on the main thread; the
/// other workers start their own ([`server::serve_workers`]).
fn worker_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    build_runtime(tokio::runtime::Builder::new_current_thread())
}

fn build_runtime(
    mut builder: tokio::runtime::Builder,
) -> Result<tokio::runtime::Runtime, ExitCode> {
    builder.enable_all().build().map_err(|e| {
        eprintln!("infergate: could not start the runtime: {e}");
        ExitCode::FAILURE
    })
}

/// Prints every config error, one per line, after a header naming the file.
fn print_errors(path: &Path, errors: &[String]) {
    let n = errors.len();
    eprintln!(
        "infergate: {} has {n} error{}:",
        path.display(),
        if n == 1 { "" } else { "s" }
    );
    for e in errors {
        eprintln!("{e}");
    }
}

/// `infergate check`: validate and print what was understood.
pub fn check(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            print!("{}", config.summary());
            for w in &config.warnings {
                eprintln!("warning: {w}");
            }
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            print_errors(path, &errors.0);
            ExitCode::FAILURE
        }
    }
}

/// `infergate serve`: load the config (refusing to start on any error) and
/// run until Ctrl-C or SIGTERM, reloading it on SIGHUP, when the file
/// changes, or when asked ([`crate::reload`]).
pub fn serve(path: &Path, listen: Option<SocketAddr>, logging: &Logging) -> ExitCode {
    logging.init();
    let loaded = Config::read(path).and_then(|text| Ok((Config::parse(&text)?, text)));
    let (mut config, text) = match loaded {
        Ok(loaded) => loaded,
        Err(errors) => {
            print_errors(path, &errors.0);
            return ExitCode::FAILURE;
        }
    };
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    if let Some(addr) = listen {
        config.server.listen = addr;
    }
    let rt = match worker_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let export = match SpanExport::start(&config.telemetry) {
        Ok(export) => export,
        Err(e) => {
            eprintln!("infergate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = BuildOptions {
        spans: export.sink(),
        ..BuildOptions::default()
    };
    let code = rt.block_on(async move {
        // First: SIGHUP's and SIGTERM's default actions end the process,
        // and a gateway starting may take a while (credential chains).
        let heard = Hangup::new().and_then(|hangup| Ok((hangup, server::Signals::listen()?)));
        let (hangup, signals) = match heard {
            Ok(heard) => heard,
            Err(e) => {
                eprintln!("infergate: could not listen for signals: {e}");
                return ExitCode::FAILURE;
            }
        };
        let addr = config.server.listen;
        let workers = config.server.worker_count();
        let gateway = match Gateway::build(config, opts).await {
            Ok(g) => g,
            Err(e) => {
                eprintln!("infergate: {e}");
                return ExitCode::FAILURE;
            }
        };
        let listeners = match server::bind_workers(addr, workers).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("infergate: {e}");
                return ExitCode::FAILURE;
            }
        };
        let live = Live::new(gateway);
        let reloader = Reloader::new(path, listen, Arc::clone(&live), &text);
        let (reloading, _pid_file) = match start_reloading(&reloader, hangup, &live) {
            Ok(started) => started,
            Err(e) => {
                eprintln!("infergate: {e}");
                return ExitCode::FAILURE;
            }
        };
        let local = listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .unwrap_or(addr);
        tracing::info!(
            listen = %local,
            routes = live.load().routes.iter().count(),
            workers,
            "infergate listening"
        );
        let serving = server::serve_live(listeners, live, signals.shutdown());
        // The reloader runs for as long as the gateway serves.
        let served = tokio::select! {
            served = serving => served,
            () = reloading => Ok(()),
        };
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("infergate: {e}");
                ExitCode::FAILURE
            }
        }
    });
    // Requests still open end with the runtime, and their spans with them;
    // a read of the config file hung on a dead mount is not waited for.
    // Then the last spans are sent and the diff log's last lines written
    // (either may block, off the runtime now).
    rt.shutdown_timeout(Duration::from_secs(1));
    export.finish();
    // Every gateway went with the runtime: the diff log's writer writes
    // what it holds and ends.
    crate::shadow::diff_log::finish(Duration::from_secs(2));
    code
}

/// SIGHUP heard from now on, the reload loop to run, and the pid file
/// written if the config asks for one.
fn start_reloading(
    reloader: &Arc<Reloader>,
    hangup: Hangup,
    live: &Live,
) -> std::io::Result<(impl std::future::Future<Output = ()>, Option<PidFile>)> {
    let reloading = reloader.start(hangup);
    let pid_file = match &live.load().config.server.pid_file {
        Some(path) => Some(PidFile::write(path)?),
        None => None,
    };
    Ok((reloading, pid_file))
}

/// Span export as `[telemetry]` asks: OTLP when `otlp_endpoint` is set
/// (only possible in a build with the `otlp` feature), else none.
struct SpanExport {
    #[cfg(feature = "otlp")]
    otlp: Option<(Arc<crate::telemetry::otlp::OtlpSink>, Duration)>,
}

impl SpanExport {
    #[cfg(feature = "otlp")]
    fn start(config: &TelemetryConfig) -> Result<Self, String> {
        if config.otlp_endpoint.is_none() {
            return Ok(Self { otlp: None });
        }
        let sink = crate::telemetry::otlp::OtlpSink::new(config).map_err(|e| e.to_string())?;
        tracing::info!(endpoint = sink.endpoint(), "exporting spans over OTLP/HTTP");
        // The last export may take its whole timeout.
        let grace = config.otlp_timeout + Duration::from_secs(1);
        Ok(Self {
            otlp: Some((Arc::new(sink), grace)),
        })
    }

    #[cfg(not(feature = "otlp"))]
    fn start(config: &TelemetryConfig) -> Result<Self, String> {
        // Config validation refuses otlp_endpoint in this build.
        match &config.otlp_endpoint {
            None => Ok(Self {}),
            Some(_) => Err("this build has no OTLP export; build with --features otlp".into()),
        }
    }

    fn sink(&self) -> Option<Arc<dyn SpanSink>> {
        #[cfg(feature = "otlp")]
        if let Some((sink, _)) = &self.otlp {
            return Some(Arc::clone(sink) as Arc<dyn SpanSink>);
        }
        None
    }

    /// Sends what is queued and stops export. Blocks: never call it on the
    /// runtime.
    fn finish(self) {
        #[cfg(feature = "otlp")]
        if let Some((sink, grace)) = self.otlp {
            if let Err(e) = sink.shutdown(grace) {
                tracing::warn!("span export did not finish: {e}");
            }
        }
    }
}

/// `infergate demo`.
pub fn demo(listen: SocketAddr, logging: &Logging) -> ExitCode {
    logging.init();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let signals = match server::Signals::listen() {
            Ok(signals) => signals,
            Err(e) => {
                eprintln!("infergate demo: could not listen for signals: {e}");
                return ExitCode::FAILURE;
            }
        };
        match crate::demo::run(listen, signals.nth(1)).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("infergate demo: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// `infergate emulate …`.
pub fn emulate(cmd: EmulateCommand, logging: &Logging) -> ExitCode {
    logging.init();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(crate::emulator::cli::run(cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("infergate emulate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `infergate healthcheck`: GET the URL; exit 0 on a 2xx within 5 s.
pub fn healthcheck(url: &str) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => return ExitCode::FAILURE,
    };
    rt.block_on(async {
        // The gateway is local: no proxy of the environment in between.
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
        {
            Ok(c) => c,
            Err(_) => return ExitCode::FAILURE,
        };
        match client.get(url).send().await {
            Ok(res) if res.status().is_success() => ExitCode::SUCCESS,
            Ok(res) => {
                eprintln!("infergate healthcheck: {url} answered {}", res.status());
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("infergate healthcheck: {url}: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
