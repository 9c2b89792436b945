//! The `infergate` command line: argument parsing only; each command's work
//! lives in the library ([`infergate::commands`], [`infergate::demo`],
//! [`infergate::emulator::cli`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use infergate::commands::{self, LogFormat, Logging};
use infergate::emulator::cli::EmulateCommand;

#[derive(Parser)]
#[command(
    name = "infergate",
    version,
    about = "One stable inference URL in front of Amazon SageMaker and Hugging Face Inference Endpoints"
)]
struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "INFERGATE_LOG_FORMAT"
    )]
    log_format: LogFormat,
    /// Log level or filter (e.g. `debug`, `infergate=debug,info`); defaults to
    /// RUST_LOG, else `info`.
    #[arg(long, global = true, env = "INFERGATE_LOG_LEVEL")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a config file.
    Serve {
        /// The TOML config file.
        #[arg(long, short, env = "INFERGATE_CONFIG")]
        config: PathBuf,
        /// Listen here instead of `server.listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Validate a config file and print the routes and backends it defines.
    Check {
        /// The TOML config file.
        #[arg(long, short, env = "INFERGATE_CONFIG")]
        config: PathBuf,
    },
    /// Ask a running gateway to read its config file again: through its
    /// admin listener, which answers with what the reload did, else by
    /// SIGHUP to the process its pid file names.
    Reload {
        /// The gateway's config file: validated first (nothing is sent when
        /// it has errors), then its `server.admin_listen`, else its
        /// `server.pid_file`, says where the gateway is.
        #[arg(long, short, env = "INFERGATE_CONFIG")]
        config: Option<PathBuf>,
        /// Send SIGHUP to the process id in this file.
        #[arg(long, conflicts_with = "url")]
        pid_file: Option<PathBuf>,
        /// `POST {url}/v1/reload`: the admin listener's base URL (or the
        /// main port's, with an admin client's key in INFERGATE_ADMIN_KEY).
        #[arg(long)]
        url: Option<String>,
    },
    /// Run the gateway on an embedded demo config, with an emulated SageMaker
    /// endpoint and an emulated Hugging Face endpoint started in-process.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Run a local emulator of a SageMaker endpoint or an HF Inference Endpoint.
    #[command(subcommand)]
    Emulate(EmulateCommand),
    /// Summarize shadow diff logs (`[shadow] diff_log`): per route and
    /// shadow, the agreement with the primary and its 95% interval, the
    /// answers' similarity, both latencies and the worst differences.
    ShadowReport {
        /// Only this route's calls.
        #[arg(long)]
        route: Option<String>,
        /// Only this shadow's calls (a backend name).
        #[arg(long)]
        shadow: Option<String>,
        /// How many of the worst differences to list per route and shadow.
        #[arg(long, default_value_t = 5)]
        worst: usize,
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Diff-log files, read in turn; `-` reads standard input.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Exit 0 when the gateway answers its health check (for container health checks).
    Healthcheck {
        /// The gateway's health URL.
        #[arg(
            long,
            env = "INFERGATE_HEALTHCHECK_URL",
            default_value = "http://127.0.0.1:8080/healthz"
        )]
        url: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logging = Logging {
        format: cli.log_format,
        level: cli.log_level,
    };
    match cli.command {
        Command::Serve { config, listen } => commands::serve(&config, listen, &logging),
        Command::Check { config } => commands::check(&config),
        Command::Reload {
            config,
            pid_file,
            url,
        } => commands::reload(config.as_deref(), pid_file.as_deref(), url.as_deref()),
        Command::Demo { listen } => commands::demo(listen, &logging),
        Command::Emulate(cmd) => commands::emulate(cmd, &logging),
        Command::ShadowReport {
            route,
            shadow,
            worst,
            json,
            files,
        } => commands::shadow_report(&commands::ReportOptions {
            route,
            shadow,
            worst,
            json,
            files,
        }),
        Command::Healthcheck { url } => commands::healthcheck(&url),
    }
}
