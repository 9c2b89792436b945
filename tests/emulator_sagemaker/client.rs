//! Requests to the emulator, signed here with `aws-sigv4`, and what every
//! AWS answer carries.

use std::time::SystemTime;

use aws_smithy_eventstream::frame::read_message_from;
use aws_smithy_types::event_stream::Message;
use infergate::emulator::sagemaker::{self, SageMakerOptions};
use infergate::emulator::{Credential, EmulatorHandle};
use serde_json::Value;

pub const AKID: &str = "AKIDEXAMPLE";

pub const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

pub struct Key<'a> {
    pub id: &'a str,
    pub secret: &'a str,
    pub token: Option<&'a str>,
}

pub const KEY: Key<'static> = Key {
    id: AKID,
    secret: SECRET,
    token: None,
};

pub async fn start(opts: SageMakerOptions) -> EmulatorHandle {
    sagemaker::start("127.0.0.1:0".parse().unwrap(), opts)
        .await
        .unwrap()
}

pub async fn start_default() -> EmulatorHandle {
    start(SageMakerOptions::default()).await
}

pub fn with_key(token: Option<&str>) -> SageMakerOptions {
    SageMakerOptions {
        credentials: vec![(
            AKID.to_owned(),
            Credential {
                secret_access_key: SECRET.to_owned(),
                session_token: token.map(str::to_owned),
            },
        )],
        ..SageMakerOptions::default()
    }
}

pub fn signed_headers(
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    key: &Key<'_>,
    time: SystemTime,
) -> Vec<(String, String)> {
    crate::common::sdk::sigv4_headers(url, headers, body, (key.id, key.secret, key.token), time)
}

pub struct Call<'a> {
    path: String,
    body: Vec<u8>,
    headers: Vec<(&'a str, &'a str)>,
    key: Option<&'a Key<'a>>,
    time: SystemTime,
    client: reqwest::Client,
}

pub fn call<'a>(path: &str, body: impl Into<Vec<u8>>) -> Call<'a> {
    Call {
        path: path.to_owned(),
        body: body.into(),
        headers: vec![("content-type", "application/json")],
        key: None,
        time: SystemTime::now(),
        client: reqwest::Client::new(),
    }
}

impl<'a> Call<'a> {
    pub fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value));
        self
    }
    pub fn signed(mut self, key: &'a Key<'a>) -> Self {
        self.key = Some(key);
        self
    }
    pub fn at(mut self, time: SystemTime) -> Self {
        self.time = time;
        self
    }
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }
    pub async fn try_send(self, emu: &EmulatorHandle) -> reqwest::Result<reqwest::Response> {
        let url = format!("{}{}", emu.url(), self.path);
        let mut req = self.client.post(&url).body(self.body.clone());
        for (k, v) in &self.headers {
            req = req.header(*k, *v);
        }
        if let Some(key) = self.key {
            for (k, v) in signed_headers(&url, &self.headers, &self.body, key, self.time) {
                req = req.header(k, v);
            }
        }
        req.send().await
    }
    pub async fn send(self, emu: &EmulatorHandle) -> reqwest::Response {
        self.try_send(emu).await.unwrap()
    }
}

pub fn invoke<'a>(body: impl Into<Vec<u8>>) -> Call<'a> {
    call("/endpoints/flan/invocations", body)
}

pub fn stream<'a>(body: impl Into<Vec<u8>>) -> Call<'a> {
    call("/endpoints/flan/invocations-response-stream", body)
}

pub fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// Checks the parts every AWS error has and returns the body.
pub async fn aws_error(resp: reqwest::Response, status: u16, error_type: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    let et = header(&resp, "x-amzn-errortype").expect("x-amzn-ErrorType");
    assert_eq!(et.split(':').next(), Some(error_type), "{et}");
    assert!(et.contains(":http://internal.amazon.com/coral/"), "{et}");
    assert_eq!(header(&resp, "x-amzn-requestid").unwrap().len(), 36);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("application/json")
    );
    resp.json().await.unwrap()
}

pub fn decode_frames(body: &[u8]) -> Result<Vec<Message>, aws_smithy_eventstream::error::Error> {
    let mut buf = body;
    let mut out = Vec::new();
    while !buf.is_empty() {
        out.push(read_message_from(&mut buf)?);
    }
    Ok(out)
}

pub fn header_of(m: &Message, name: &str) -> String {
    m.headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .map(|h| h.value().as_string().unwrap().as_str().to_owned())
        .unwrap_or_default()
}
