//! A gateway in front of the two emulators, on loopback, for integration
//! tests: the real server, the real config loader, real sockets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use infergate::config::Config;
use infergate::emulator::{
    self, Credential, EmulatorHandle, HuggingFaceOptions, ModelFormat, SageMakerOptions,
};
use infergate::gateway::{BuildOptions, Gateway};
use infergate::server;

pub const ACCESS_KEY: &str = "AKIDINFERGATETEST";
pub const SECRET_KEY: &str = "test-secret-key-canary-7f3a";
pub const HF_TOKEN: &str = "hf_test_token_canary_91c2";

/// The usual request body: eight tokens of the shared model.
pub const BODY: &str =
    r#"{"inputs": "one stable inference URL", "parameters": {"max_new_tokens": 8}}"#;

pub fn sm_options(format: ModelFormat) -> SageMakerOptions {
    SageMakerOptions {
        region: "us-east-1".into(),
        endpoints: vec!["flan-t5-small".into()],
        credentials: vec![(
            ACCESS_KEY.into(),
            Credential {
                secret_access_key: SECRET_KEY.into(),
                session_token: None,
            },
        )],
        format,
        ..SageMakerOptions::default()
    }
}

pub fn hf_options() -> HuggingFaceOptions {
    HuggingFaceOptions {
        token: Some(HF_TOKEN.into()),
        ..HuggingFaceOptions::default()
    }
}

/// A Hugging Face emulator on a loopback port of its own (token required).
pub async fn hf_emulator() -> EmulatorHandle {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    emulator::huggingface::start(loopback, hf_options())
        .await
        .unwrap()
}

pub fn static_credentials(secret: &str) -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new(ACCESS_KEY, secret, None, None, "test"))
}

/// The default test config: routes `sm`, `hf`, `both` and `js` (a JumpStart
/// text2text SageMaker endpoint).
pub const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 1024
request_timeout = "5s"
shutdown_grace = "1s"

[backends.sm]
kind = "sagemaker"
endpoint_name = "flan-t5-small"
region = "us-east-1"
endpoint_url = "${SM_URL}"

[backends.js]
kind = "sagemaker"
endpoint_name = "flan-t5-small"
region = "us-east-1"
endpoint_url = "${JS_URL}"
format = "jumpstart-text2text"

[backends.hf]
kind = "huggingface"
url = "${HF_URL}"
token = "${HF_TOKEN}"

[routes.sm]
backends = ["sm"]

[routes.hf]
backends = ["hf"]

[routes.js]
backends = ["js"]

[routes.both]
backends = ["sm", "hf"]
"#;

pub struct Harness {
    pub base: String,
    pub gateway: Arc<Gateway>,
    pub sm: EmulatorHandle,
    pub js: EmulatorHandle,
    pub hf: EmulatorHandle,
    pub client: reqwest::Client,
    served: Served,
}

/// The gateway serving a config on loopback, until [`Served::stop`].
pub struct Served {
    pub base: String,
    pub gateway: Arc<Gateway>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    /// Builds the gateway and serves it on the config's listen address with
    /// its workers, as `infergate serve` does: the first on the test's
    /// runtime, the others on threads of their own.
    pub async fn start(config: Config, opts: BuildOptions) -> Self {
        let workers = config.server.worker_count();
        let listeners = server::bind_workers(config.server.listen, workers)
            .await
            .unwrap();
        let base = format!("http://{}", listeners[0].local_addr().unwrap());
        let gateway = Gateway::build(config, opts).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(server::serve_workers(
            listeners,
            Arc::clone(&gateway),
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            base,
            gateway,
            stop,
            server,
        }
    }

    /// Stops accepting and drains, as on SIGTERM.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}

pub struct Setup {
    pub config: String,
    pub sm_secret: String,
    pub extra_vars: Vec<(String, String)>,
    /// Replaces the SageMaker backends' credentials provider.
    pub credentials: Option<SharedCredentialsProvider>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            config: CONFIG.to_string(),
            sm_secret: SECRET_KEY.to_string(),
            extra_vars: Vec::new(),
            credentials: None,
        }
    }
}

impl Harness {
    pub async fn start() -> Self {
        Self::with(Setup::default()).await
    }

    /// The gateway serving `config` (the default setup otherwise).
    pub async fn with_config(config: String) -> Self {
        Self::with(Setup {
            config,
            ..Setup::default()
        })
        .await
    }

    pub async fn with(setup: Setup) -> Self {
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let sm = emulator::sagemaker::start(loopback, sm_options(ModelFormat::Tgi))
            .await
            .unwrap();
        let js = emulator::sagemaker::start(loopback, sm_options(ModelFormat::JumpStartText2Text))
            .await
            .unwrap();
        let hf = emulator::huggingface::start(loopback, hf_options())
            .await
            .unwrap();
        let mut vars: HashMap<String, String> = HashMap::from([
            ("SM_URL".to_string(), sm.url()),
            ("JS_URL".to_string(), js.url()),
            ("HF_URL".to_string(), hf.url()),
            ("HF_TOKEN".to_string(), HF_TOKEN.to_string()),
        ]);
        vars.extend(setup.extra_vars);
        let config = Config::from_toml(&setup.config, &|k| vars.get(k).cloned())
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        let mut credentials = HashMap::new();
        for b in &config.backends {
            let provider = setup
                .credentials
                .clone()
                .unwrap_or_else(|| static_credentials(&setup.sm_secret));
            credentials.insert(b.name.clone(), provider);
        }
        let served = Served::start(
            config,
            BuildOptions {
                credentials,
                ..BuildOptions::default()
            },
        )
        .await;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Harness {
            base: served.base.clone(),
            gateway: Arc::clone(&served.gateway),
            sm,
            js,
            hf,
            client,
            served,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POSTs a JSON body to `/v1/predict/{route}`.
    pub async fn predict(&self, route: &str, body: &str) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/v1/predict/{route}")))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// POSTs `body` as JSON to `path` with `key` as the bearer key.
    pub async fn post_json(
        &self,
        path: &str,
        key: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Status and answering backend of a [`BODY`] request; the body is
    /// read whole, so the connection is reused.
    pub async fn call(&self, route: &str) -> (u16, String) {
        let res = self.predict(route, BODY).await;
        let status = res.status().as_u16();
        let backend = res
            .headers()
            .get("x-infergate-backend")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let _ = res.bytes().await.unwrap();
        (status, backend)
    }

    /// Starts a [`BODY`] request to `route` in the background and waits
    /// until `emu` holds it; the task gives its status and backend.
    pub async fn hold(
        &self,
        route: &str,
        emu: &EmulatorHandle,
    ) -> tokio::task::JoinHandle<(u16, String)> {
        let client = self.client.clone();
        let url = self.url(&format!("/v1/predict/{route}"));
        let task = tokio::spawn(async move {
            let res = client
                .post(url)
                .header("content-type", "application/json")
                .body(BODY)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let backend = res.headers()["x-infergate-backend"]
                .to_str()
                .unwrap()
                .to_string();
            let _ = res.bytes().await;
            (status, backend)
        });
        let c = emu.counters();
        super::wait::wait_for("the request to be held", || c.in_flight() == 1).await;
        task
    }

    /// The emulator behind the single-backend route `route`.
    pub fn emulator(&self, route: &str) -> &EmulatorHandle {
        match route {
            "sm" => &self.sm,
            "hf" => &self.hf,
            "js" => &self.js,
            other => panic!("no emulator for route {other}"),
        }
    }

    /// The text of a GET of `path`.
    pub async fn get_text(&self, path: &str) -> String {
        self.get_text_as(path, None).await
    }

    /// The text of a GET of `path`, with a client's key when given.
    pub async fn get_text_as(&self, path: &str, key: Option<&str>) -> String {
        let mut req = self.client.get(self.url(path));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200, "GET {path}");
        res.text().await.unwrap()
    }

    /// The JSON of a GET of `path`.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        serde_json::from_str(&self.get_text(path).await).unwrap()
    }

    /// A backend's entry in `/v1/routes` for `route`.
    pub async fn backend_view(&self, route: &str, backend: &str) -> serde_json::Value {
        let v = self.get_json("/v1/routes").await;
        let r = v["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == route)
            .unwrap_or_else(|| panic!("no route {route}"));
        r["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == backend)
            .unwrap_or_else(|| panic!("no backend {backend} in route {route}"))
            .clone()
    }

    /// The state `/v1/routes` reports for a backend of a route.
    pub async fn backend_state(&self, route: &str, backend: &str) -> String {
        self.backend_view(route, backend).await["state"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn shutdown(self) {
        self.served.stop().await;
    }
}

/// The `error` object of a gateway error body.
pub async fn error_json(res: reqwest::Response) -> serde_json::Value {
    assert_eq!(
        res.headers()["content-type"],
        "application/json",
        "errors are JSON"
    );
    let v: serde_json::Value = res.json().await.unwrap();
    v["error"].clone()
}
