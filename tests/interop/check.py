"""Interoperability checks with clients and verifiers that are not ours.

- boto3 (AWS's Python SDK) calls `infergate emulate sagemaker` and must parse
  its success, its error shapes and its response stream;
- huggingface_hub's InferenceClient calls `infergate emulate huggingface`
  directly and through the gateway's predict URL;
- botocore's SigV4 signer recomputes the signature of every request the
  gateway sends to a SageMaker backend and must agree with it.

Run after `cargo build`: `python tests/interop/check.py target/debug/infergate`.
Everything talks to 127.0.0.1 only, to processes this script starts and stops.
"""

import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import boto3
import botocore
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.config import Config
from botocore.credentials import Credentials
from huggingface_hub import InferenceClient

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/debug/infergate"
AKID, SECRET, HF_TOKEN = "AKIDINTEROP", "interop-secret", "hf_interop_token"
passed, failed = 0, 0
children = []


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok    {name}")
    else:
        failed += 1
        print(f"FAIL  {name} {detail}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def spawn(args, env=None, port=None):
    p = subprocess.Popen([BIN, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children.append(p)
    if port:
        wait_port(port)
    return p


def sagemaker_sdk(sm_port):
    def client(secret=SECRET, region="us-east-1"):
        return boto3.client(
            "sagemaker-runtime", region_name=region, endpoint_url=f"http://127.0.0.1:{sm_port}",
            aws_access_key_id=AKID, aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 1, "mode": "standard"}))

    c = client()
    r = c.invoke_endpoint(
        EndpointName="flan-t5-small", ContentType="application/json", Accept="application/json",
        Body=json.dumps({"inputs": "hello boto world", "parameters": {"max_new_tokens": 5}}),
        CustomAttributes="a=b", TargetVariant="v1")
    check("boto3 invoke_endpoint", json.loads(r["Body"].read()) == [{"generated_text": "world boto hello"}])
    check("boto3 reads the variant and custom attributes",
          (r["InvokedProductionVariant"], r["CustomAttributes"]) == ("v1", "a=b"))
    for kw, code in [(dict(secret="wrong"), "InvalidSignatureException"),
                     (dict(region="eu-west-1"), "InvalidSignatureException")]:
        try:
            client(**kw).invoke_endpoint(EndpointName="flan-t5-small", ContentType="application/json",
                                         Body=b'{"inputs":"x"}')
            check(f"boto3 rejected with {kw}", False)
        except botocore.exceptions.ClientError as e:
            check(f"boto3 rejected with {kw}", e.response["Error"]["Code"] == code
                  and e.response["ResponseMetadata"]["HTTPStatusCode"] == 403)
    try:
        c.invoke_endpoint(EndpointName="nope", ContentType="application/json", Body=b'{"inputs":"x"}')
        check("boto3 ValidationError", False)
    except c.exceptions.ValidationError as e:
        check("boto3 ValidationError", "Endpoint nope of account" in e.response["Error"]["Message"])
    try:
        c.invoke_endpoint(EndpointName="flan-t5-small", ContentType="application/json", Body=b"not json")
        check("boto3 ModelError", False)
    except c.exceptions.ModelError as e:
        check("boto3 ModelError", e.response["OriginalStatusCode"] == 400 and
              e.response["LogStreamArn"].startswith("arn:aws:logs:us-east-1:"))
    r = c.invoke_endpoint_with_response_stream(
        EndpointName="flan-t5-small", ContentType="application/json",
        Body=json.dumps({"inputs": "stream these words", "stream": True}))
    parts = b"".join(ev["PayloadPart"]["Bytes"] for ev in r["Body"] if "PayloadPart" in ev)
    events = [json.loads(l[5:]) for l in parts.decode().split("\n\n") if l.startswith("data:")]
    check("boto3 reads the response stream",
          [e["token"]["text"] for e in events] == ["words", " these", " stream"]
          and events[-1]["generated_text"] == "words these stream")


def huggingface_client(hf_port, gw_port):
    hf = InferenceClient(model=f"http://127.0.0.1:{hf_port}", token=HF_TOKEN)
    check("InferenceClient text_generation",
          hf.text_generation("hello from the hub client", max_new_tokens=4) == "client hub the from")
    check("InferenceClient streaming",
          list(hf.text_generation("stream me please", max_new_tokens=3, stream=True)) == ["please", " me", " stream"])
    out = hf.chat_completion(messages=[{"role": "user", "content": "hi there friend"}], max_tokens=5)
    check("InferenceClient chat_completion", out.choices[0].message.content == "friend there hi")
    try:
        InferenceClient(model=f"http://127.0.0.1:{hf_port}", token="bad").text_generation("x")
        check("InferenceClient with a bad token", False)
    except Exception as e:  # huggingface_hub's HTTP error type varies by version
        check("InferenceClient with a bad token", "401" in str(e))
    gw = InferenceClient(model=f"http://127.0.0.1:{gw_port}/v1/predict/flan")
    answers = {gw.text_generation("one stable inference URL", max_new_tokens=4) for _ in range(6)}
    check("InferenceClient through the gateway", answers == {"URL inference stable one"}, answers)


def signature_cross_check():
    """botocore recomputes the gateway's SigV4 signatures."""
    results = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            auth = self.headers["authorization"]
            signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
            signature = auth.split("Signature=")[1]
            to_sign = HTTPHeaders()
            for k in signed:
                to_sign[k] = self.headers[k]
            req = AWSRequest(method="POST", url=f"http://{self.headers['host']}{self.path}", data=body,
                             headers=dict(to_sign.items()))
            req.context["timestamp"] = self.headers["x-amz-date"]
            token = self.headers.get("x-amz-security-token")
            signer = SigV4Auth(Credentials(AKID, SECRET, token), "sagemaker", "us-east-1")
            signer.headers_to_sign = lambda r: to_sign
            expected = signer.signature(signer.string_to_sign(req, signer.canonical_request(req)), req)
            results.append(expected == signature)
            out = b'[{"generated_text":"ok"}]'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *a):
            pass

    up_port, gw_port = free_port(), free_port()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", up_port), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(f'''[server]
listen = "127.0.0.1:{gw_port}"
[backends.sm]
kind = "sagemaker"
endpoint_name = "flan-t5-small"
region = "us-east-1"
endpoint_url = "http://127.0.0.1:{up_port}"
custom_attributes = "pinned=1"
[routes.sm]
backends = ["sm"]
''')
    for token in [None, "session-token-xyz"]:
        env = dict(os.environ, AWS_ACCESS_KEY_ID=AKID, AWS_SECRET_ACCESS_KEY=SECRET,
                   AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/nonexistent",
                   AWS_SHARED_CREDENTIALS_FILE="/nonexistent")
        env.pop("AWS_PROFILE", None)
        if token:
            env["AWS_SESSION_TOKEN"] = token
        else:
            env.pop("AWS_SESSION_TOKEN", None)
        p = spawn(["serve", "--config", f.name], env=env, port=gw_port)
        for body in [b'{"inputs":"a"}', b'{"inputs":"' + b"x" * 70000 + b'"}', b""]:
            r = urllib.request.Request(
                f"http://127.0.0.1:{gw_port}/v1/predict/sm", data=body, method="POST",
                headers={"content-type": "application/json", "accept": "application/json",
                         "x-amzn-sagemaker-target-variant": "v 1  spaced",
                         "x-amzn-sagemaker-session-id": "NEW_SESSION"})
            urllib.request.urlopen(r).read()
        p.terminate()
        p.wait()
    srv.shutdown()
    check(f"botocore agrees with the gateway's {len(results)} SigV4 signatures",
          len(results) == 6 and all(results), results)


def main():
    sm_port, hf_port, gw_port = free_port(), free_port(), free_port()
    spawn(["emulate", "sagemaker", "--listen", f"127.0.0.1:{sm_port}", "--region", "us-east-1",
           "--endpoint", "flan-t5-small", "--access-key-id", AKID, "--secret-access-key", SECRET],
          port=sm_port)
    spawn(["emulate", "huggingface", "--listen", f"127.0.0.1:{hf_port}", "--token", HF_TOKEN], port=hf_port)
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(f'''[server]
listen = "127.0.0.1:{gw_port}"
[backends.sm]
kind = "sagemaker"
endpoint_name = "flan-t5-small"
region = "us-east-1"
endpoint_url = "http://127.0.0.1:{sm_port}"
[backends.hf]
kind = "huggingface"
url = "http://127.0.0.1:{hf_port}"
token = "${{INTEROP_HF_TOKEN}}"
[routes.flan]
backends = ["sm", "hf"]
''')
    env = dict(os.environ, AWS_ACCESS_KEY_ID=AKID, AWS_SECRET_ACCESS_KEY=SECRET,
               AWS_EC2_METADATA_DISABLED="true", INTEROP_HF_TOKEN=HF_TOKEN)
    env.pop("AWS_SESSION_TOKEN", None)
    spawn(["serve", "--config", f.name], env=env, port=gw_port)
    try:
        sagemaker_sdk(sm_port)
        huggingface_client(hf_port, gw_port)
        signature_cross_check()
    finally:
        for p in children:
            p.terminate()
            p.wait()
    print(f"interop: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
