//! `infergate emulate sagemaker|huggingface …`: runs one emulator on its own
//! until Ctrl-C or SIGTERM, so users can develop against a backend offline. main.rs only
//! parses; this module turns the flags into options and runs the emulator.
//! Secrets come from flags or the usual environment variables and are never
//! printed (clap is told to hide their values).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::faults::{FaultConfig, InjectedError};
use super::huggingface::{self, HuggingFaceContainer, HuggingFaceOptions};
use super::sagemaker::{self, ModelFormat, SageMakerOptions};
use super::tls::{Alpn, TlsOptions};
use super::EmulatorHandle;
use crate::protocol::sigv4_verify::Credential;

/// Which emulator to run.
#[derive(Debug, clap::Subcommand)]
pub enum EmulateCommand {
    // Boxed: the flags are a few hundred bytes, and this enum sits in the
    // binary's top-level command beside small variants.
    /// The SageMaker runtime (InvokeEndpoint, InvokeEndpointWithResponseStream).
    Sagemaker(Box<SageMakerArgs>),
    /// A Hugging Face Inference Endpoint running TGI or TEI.
    Huggingface(Box<HuggingFaceArgs>),
}

#[derive(Debug, clap::Args)]
pub struct SageMakerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub listen: SocketAddr,
    /// Region expected in request signatures.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// An endpoint name that exists (repeatable); none means any name exists.
    #[arg(long = "endpoint", value_name = "NAME")]
    pub endpoints: Vec<String>,
    /// Access key id accepted in signatures; without it signatures are not checked.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub access_key_id: Option<String>,
    /// Secret of that access key.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_access_key: Option<String>,
    /// Session token that requests signed with that key must carry.
    #[arg(long, env = "AWS_SESSION_TOKEN", hide_env_values = true)]
    pub session_token: Option<String>,
    /// Model server in the emulated container (its payload format).
    #[arg(long, visible_alias = "container", value_enum, default_value = "tgi")]
    pub format: ModelFormat,
    #[command(flatten)]
    pub faults: FaultArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(Debug, clap::Args)]
pub struct HuggingFaceArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9002")]
    pub listen: SocketAddr,
    /// Bearer token required from callers; without it the endpoint is public.
    #[arg(long, env = "HF_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Model id reported by /info, /v1/models and the OpenAI answers.
    #[arg(long, default_value = super::model::DEFAULT_MODEL_ID)]
    pub model_id: String,
    /// Model server behind the endpoint.
    #[arg(long, value_enum, default_value = "tgi")]
    pub container: HuggingFaceContainer,
    #[command(flatten)]
    pub faults: FaultArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// HTTPS flags shared by both emulators: give both files to serve HTTPS.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// Serve HTTPS with this certificate chain (PEM: the leaf, then any
    /// intermediates).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of that certificate (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Protocols offered by ALPN.
    #[arg(
        long,
        value_enum,
        default_value = "h2-and-http1",
        requires = "tls_cert"
    )]
    pub tls_alpn: Alpn,
}

impl TlsArgs {
    fn into_options(self) -> Option<TlsOptions> {
        let (cert_chain, private_key) = (self.tls_cert?, self.tls_key?);
        Some(TlsOptions {
            cert_chain,
            private_key,
            alpn: self.tls_alpn,
        })
    }
}

/// Fault flags shared by both emulators (all off by default).
#[derive(Debug, Clone, clap::Args)]
pub struct FaultArgs {
    /// Latency added to every inference request, e.g. `50ms`.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub latency: Duration,
    /// Time per generated token, e.g. `20ms`.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub token_latency: Duration,
    /// Fraction (0..=1) of requests answered with `--error`.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Injected error: a SageMaker error type (`ThrottlingException`,
    /// `ModelError:500`, …) or an HTTP status (`503`).
    #[arg(long, default_value = "ServiceUnavailable")]
    pub error: InjectedError,
    /// Fraction (0..=1) of requests whose connection is reset.
    #[arg(long, default_value_t = 0.0)]
    pub reset_rate: f64,
    /// Start scaled to zero; a replica takes this long to start, e.g. `30s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub cold_start: Option<Duration>,
    /// Injected errors carry `Retry-After` with these whole seconds, e.g. `2s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub retry_after: Option<Duration>,
}

impl FaultArgs {
    fn into_config(self) -> Result<FaultConfig, String> {
        let config = FaultConfig {
            latency: self.latency,
            token_latency: self.token_latency,
            error_rate: self.error_rate,
            error: self.error,
            reset_rate: self.reset_rate,
            cold_start: self.cold_start,
            retry_after: self.retry_after,
            ..FaultConfig::default()
        };
        config.validate()?;
        Ok(config)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl SageMakerArgs {
    /// The emulator options these flags describe.
    pub fn into_options(self) -> Result<SageMakerOptions, BoxError> {
        let credentials = match (self.access_key_id, self.secret_access_key) {
            (Some(id), Some(secret)) => vec![(
                id,
                Credential {
                    secret_access_key: secret,
                    session_token: self.session_token,
                },
            )],
            (None, None) => Vec::new(),
            _ => {
                return Err("give both --access-key-id and --secret-access-key, or neither".into())
            }
        };
        Ok(SageMakerOptions {
            region: self.region,
            endpoints: self.endpoints,
            credentials,
            format: self.format,
            faults: self.faults.into_config()?,
            tls: self.tls.into_options(),
            ..SageMakerOptions::default()
        })
    }
}

impl HuggingFaceArgs {
    /// The emulator options these flags describe.
    pub fn into_options(self) -> Result<HuggingFaceOptions, BoxError> {
        Ok(HuggingFaceOptions {
            token: self.token.filter(|t| !t.is_empty()),
            model_id: self.model_id,
            container: self.container,
            faults: self.faults.into_config()?,
            tls: self.tls.into_options(),
        })
    }
}

/// Starts the chosen emulator, prints its URL, and serves until Ctrl-C or
/// SIGTERM, then shuts down gracefully.
pub async fn run(cmd: EmulateCommand) -> Result<(), BoxError> {
    let handle: EmulatorHandle = match cmd {
        EmulateCommand::Sagemaker(args) => {
            let listen = args.listen;
            let opts = args.into_options()?;
            let verifying = !opts.credentials.is_empty();
            let region = opts.region.clone();
            let format = opts.format.as_str();
            let handle = sagemaker::start(listen, opts).await?;
            println!("SageMaker runtime emulator listening on {}", handle.url());
            println!(
                "  region {region}, format {format}, signatures {}",
                if verifying { "verified" } else { "not checked" }
            );
            handle
        }
        EmulateCommand::Huggingface(args) => {
            let listen = args.listen;
            let opts = args.into_options()?;
            let protected = opts.token.is_some();
            let container = opts.container.as_str();
            let handle = huggingface::start(listen, opts).await?;
            println!(
                "Hugging Face endpoint emulator listening on {}",
                handle.url()
            );
            println!(
                "  container {container}, {}",
                if protected {
                    "token required"
                } else {
                    "public"
                }
            );
            handle
        }
    };
    stop_signal().await?;
    handle.shutdown().await;
    Ok(())
}

/// Ctrl-C, or SIGTERM (what `docker stop` and Kubernetes send).
async fn stop_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

#[cfg(test)]
mod tests {

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: EmulateCommand,
    }

    #[test]
    fn parses_sagemaker_flags() {
        let cli = Cli::try_parse_from([
            "x",
            "sagemaker",
            "--endpoint",
            "a",
            "--endpoint",
            "b",
            "--format",
            "jumpstart-text2text",
            "--latency",
            "50ms",
            "--error-rate",
            "0.1",
            "--error",
            "ModelError:500",
            "--access-key-id",
            "AKID",
            "--secret-access-key",
            "s",
            "--region",
            "eu-west-1",
        ])
        .unwrap();
        let EmulateCommand::Sagemaker(args) = cli.cmd else {
            panic!("wrong command")
        };
        assert_eq!(args.listen.port(), 9001);
        let opts = args.into_options().unwrap();
        assert_eq!(opts.endpoints, ["a", "b"]);
        assert_eq!(opts.format, ModelFormat::JumpStartText2Text);
        assert_eq!(opts.region, "eu-west-1");
        assert_eq!(opts.faults.latency, Duration::from_millis(50));
        assert_eq!(
            opts.faults.error,
            InjectedError::ModelError {
                original_status: 500
            }
        );
        assert_eq!(opts.credentials.len(), 1);
        assert_eq!(opts.tls, None);
    }

    #[test]
    fn container_flags_choose_the_model_server() {
        for (flag, name, format) in [
            ("--format", "lmi", ModelFormat::Lmi),
            ("--container", "tei", ModelFormat::Tei),
            ("--container", "lmi", ModelFormat::Lmi),
            ("--format", "tgi", ModelFormat::Tgi),
        ] {
            let cli = Cli::try_parse_from(["x", "sagemaker", flag, name]).unwrap();
            let EmulateCommand::Sagemaker(args) = cli.cmd else {
                panic!("wrong command")
            };
            assert_eq!(args.format, format);
            assert_eq!(format.as_str(), name);
        }
        let cli = Cli::try_parse_from(["x", "sagemaker"]).unwrap();
        let EmulateCommand::Sagemaker(args) = cli.cmd else {
            panic!("wrong command")
        };
        assert_eq!(args.format, ModelFormat::Tgi);
        assert!(Cli::try_parse_from(["x", "sagemaker", "--container", "vllm"]).is_err());

        let cli = Cli::try_parse_from(["x", "huggingface", "--container", "tei"]).unwrap();
        let EmulateCommand::Huggingface(args) = cli.cmd else {
            panic!("wrong command")
        };
        let opts = args.into_options().unwrap();
        assert_eq!(opts.container, HuggingFaceContainer::Tei);
        assert_eq!(opts.container.as_str(), "tei");
        let cli = Cli::try_parse_from(["x", "huggingface"]).unwrap();
        let EmulateCommand::Huggingface(args) = cli.cmd else {
            panic!("wrong command")
        };
        assert_eq!(args.container, HuggingFaceContainer::Tgi);
        assert!(Cli::try_parse_from(["x", "huggingface", "--container", "lmi"]).is_err());
    }

    #[test]
    fn parses_tls_flags() {
        let cli = Cli::try_parse_from([
            "x",
            "huggingface",
            "--tls-cert",
            "chain.pem",
            "--tls-key",
            "key.pem",
            "--tls-alpn",
            "http1-only",
        ])
        .unwrap();
        let EmulateCommand::Huggingface(args) = cli.cmd else {
            panic!("wrong command")
        };
        let tls = args.into_options().unwrap().tls.unwrap();
        assert_eq!(tls.cert_chain, PathBuf::from("chain.pem"));
        assert_eq!(tls.private_key, PathBuf::from("key.pem"));
        assert_eq!(tls.alpn, Alpn::Http1Only);

        let cli = Cli::try_parse_from([
            "x",
            "sagemaker",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
        ])
        .unwrap();
        let EmulateCommand::Sagemaker(args) = cli.cmd else {
            panic!("wrong command")
        };
        assert_eq!(
            args.into_options().unwrap().tls.unwrap().alpn,
            Alpn::H2AndHttp1
        );

        // One file without the other, or ALPN without TLS, is a usage error.
        for argv in [
            &["x", "sagemaker", "--tls-cert", "c.pem"][..],
            &["x", "huggingface", "--tls-key", "k.pem"],
            &["x", "huggingface", "--tls-alpn", "http1-only"],
        ] {
            assert!(Cli::try_parse_from(argv).is_err(), "{argv:?}");
        }
    }

    #[test]
    fn rejects_half_credentials_and_bad_rates() {
        let cli = Cli::try_parse_from(["x", "sagemaker", "--access-key-id", "AKID"]).unwrap();
        let EmulateCommand::Sagemaker(args) = cli.cmd else {
            panic!("wrong command")
        };
        // The secret may come from the environment of whoever runs the tests.
        if args.secret_access_key.is_none() {
            assert!(args.into_options().is_err());
        }
        let cli = Cli::try_parse_from([
            "x",
            "huggingface",
            "--reset-rate",
            "2",
            "--cold-start",
            "30s",
        ])
        .unwrap();
        let EmulateCommand::Huggingface(args) = cli.cmd else {
            panic!("wrong command")
        };
        assert_eq!(args.listen.port(), 9002);
        assert!(args.into_options().is_err());
    }
}
