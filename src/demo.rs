//! `infergate demo`: the gateway on an embedded config, in front of an
//! emulated SageMaker endpoint and an emulated HF Inference Endpoint, both
//! started in-process on loopback.
//!
//! The demo config (`config/demo.toml`) goes through the same loading and
//! validation as a user's file; only the emulators' addresses and the demo
//! credentials are filled in here. The SageMaker emulator verifies SigV4 with
//! the demo keys and the HF emulator checks the demo token, so the demo
//! exercises the real authentication paths.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::emulator::{self, Credential, EmulatorHandle, HuggingFaceOptions, SageMakerOptions};
use crate::gateway::{BuildOptions, Gateway};
use crate::server;

/// The demo config, embedded.
pub const DEMO_CONFIG: &str = include_str!("../config/demo.toml");

/// Demo AWS keys: known to the demo's SageMaker emulator and nothing else.
pub const DEMO_ACCESS_KEY_ID: &str = "AKIAINFERGATEDEMO000";
const DEMO_SECRET_ACCESS_KEY: &str = "infergate-demo-secret-access-key";
/// Demo HF token: known to the demo's HF emulator and nothing else.
const DEMO_HF_TOKEN: &str = "hf_infergate_demo_token";

/// Errors starting the demo.
pub type DemoError = Box<dyn std::error::Error + Send + Sync>;

/// A running demo: the gateway and its two emulators.
pub struct Demo {
    pub gateway: Arc<Gateway>,
    pub addr: SocketAddr,
    pub sagemaker: EmulatorHandle,
    pub huggingface: EmulatorHandle,
    /// The demo client's API key, made at start (`[clients.demo]`).
    pub api_key: String,
    server: JoinHandle<std::io::Result<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Demo {
    /// Starts both emulators on ephemeral loopback ports and the gateway on
    /// `listen` (`127.0.0.1:0` for an ephemeral port).
    pub async fn start(listen: SocketAddr) -> Result<Demo, DemoError> {
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let sagemaker = emulator::sagemaker::start(
            loopback,
            SageMakerOptions {
                region: "us-east-1".into(),
                endpoints: vec!["flan-t5-small".into()],
                credentials: vec![(
                    DEMO_ACCESS_KEY_ID.into(),
                    Credential {
                        secret_access_key: DEMO_SECRET_ACCESS_KEY.into(),
                        session_token: None,
                    },
                )],
                ..SageMakerOptions::default()
            },
        )
        .await?;
        let huggingface = emulator::huggingface::start(
            loopback,
            HuggingFaceOptions {
                token: Some(DEMO_HF_TOKEN.into()),
                ..HuggingFaceOptions::default()
            },
        )
        .await?;

        let listener = server::bind(listen).await?;
        let addr = listener.local_addr()?;
        let api_key = format!("ig-demo-{:032x}", fastrand::u128(..));
        let vars: HashMap<&str, String> = HashMap::from([
            ("DEMO_API_KEY", api_key.clone()),
            ("DEMO_LISTEN", addr.to_string()),
            ("DEMO_SAGEMAKER_URL", sagemaker.url()),
            ("DEMO_HF_URL", huggingface.url()),
            ("DEMO_HF_TOKEN", DEMO_HF_TOKEN.to_string()),
        ]);
        let config = Config::from_toml(DEMO_CONFIG, &|name| vars.get(name).cloned())
            .map_err(|e| format!("the embedded demo config is invalid:\n{e}"))?;
        let credentials = HashMap::from([(
            "sm-flan".to_string(),
            SharedCredentialsProvider::new(Credentials::new(
                DEMO_ACCESS_KEY_ID,
                DEMO_SECRET_ACCESS_KEY,
                None,
                None,
                "infergate-demo",
            )),
        )]);
        let gateway = Gateway::build(
            config,
            BuildOptions {
                credentials,
                spans: None,
            },
        )
        .await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(server::serve(listener, Arc::clone(&gateway), async {
            let _ = stopped.await;
        }));
        Ok(Demo {
            gateway,
            addr,
            sagemaker,
            huggingface,
            api_key,
            server,
            stop,
        })
    }

    /// The ready-to-paste commands the demo prints.
    pub fn instructions(&self) -> String {
        let base = format!("http://{}", self.addr);
        let key = &self.api_key;
        format!(
            "infergate demo: gateway listening on {base}\n\
             demo client's API key: {key}\n\
             \n\
             route \"flan\" balances two emulated backends started on loopback:\n\
             \x20 sm-flan  SageMaker endpoint \"flan-t5-small\" at {sm} (SigV4, demo keys)\n\
             \x20 hf-flan  Hugging Face Inference Endpoint at {hf} (bearer token)\n\
             \n\
             Try:\n\
             \x20 export KEY={key}\n\
             \x20 curl -i {base}/v1/predict/flan -H \"authorization: Bearer $KEY\" -H 'content-type: application/json' \\\n\
             \x20   -d '{{\"inputs\": \"one stable inference URL\", \"parameters\": {{\"max_new_tokens\": 8}}}}'\n\
             \x20 curl -i {base}/v1/predict/flan-sagemaker -H \"authorization: Bearer $KEY\" -H 'content-type: application/json' -d '{{\"inputs\": \"hello from sagemaker\"}}'\n\
             \x20 curl -i {base}/v1/predict/flan-hf -H \"x-api-key: $KEY\" -H 'content-type: application/json' -d '{{\"inputs\": \"hello from hugging face\"}}'\n\
             \x20 curl -i {base}/v1/predict/flan -H 'content-type: application/json' -d '{{\"inputs\": \"no key\"}}'\n\
             \x20 curl -s {base}/v1/routes -H \"authorization: Bearer $KEY\"\n\
             \x20 curl -s {base}/metrics -H \"authorization: Bearer $KEY\"\n\
             \n\
             Ctrl-C stops the gateway and the emulators.\n",
            sm = self.sagemaker.url(),
            hf = self.huggingface.url(),
        )
    }

    /// Stops the gateway (draining) and the emulators.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
        self.sagemaker.shutdown().await;
        self.huggingface.shutdown().await;
    }
}

/// Runs the demo until `shutdown` resolves.
pub async fn run(listen: SocketAddr, shutdown: impl Future<Output = ()>) -> Result<(), DemoError> {
    let demo = Demo::start(listen).await?;
    println!("{}", demo.instructions());
    shutdown.await;
    demo.shutdown().await;
    Ok(())
}
