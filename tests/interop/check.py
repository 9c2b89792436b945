"""Interoperability checks with clients and verifiers that are not ours.

- boto3 (AWS's Python SDK) calls `infergate emulate sagemaker` and must parse
  its success, its error shapes and its response stream;
- huggingface_hub's InferenceClient calls `infergate emulate huggingface`
  directly and through the gateway's predict URL;
- botocore's SigV4 signer recomputes the signature of every request the
  gateway sends to a SageMaker backend and must agree with it;
- boto3, unchanged boto3 code pointed at the gateway by
  AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME, and the SageMaker Python SDK's Predictor
  (examples/sagemaker_predictor.py) call the gateway's SageMaker-compatible
  door: answers, streams, modelled exceptions, retries and SigV4 refusals;
- the openai client calls the OpenAI-compatible door (openai_door.py) and
  huggingface_hub's InferenceClient the TGI-compatible door (tgi_door.py),
  over TGI, LMI and TEI backends of both kinds.

Run after `cargo build`: `python tests/interop/check.py target/debug/infergate`.
Everything talks to 127.0.0.1 only, to processes this script starts and stops.
"""

import datetime
import http.server
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import boto3
import botocore
import botocore.auth
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.retries.standard import RetryContext, ThrottledRetryableChecker
from huggingface_hub import InferenceClient

import common
from common import (AKID, DOOR_BODY, HF_TOKEN, PROMPT, ROOT, SECRET, WEB_AKID, WEB_KEY, WEB_SECRET, check,
                    door_config, emulator_requests, free_port, put_faults, serve, spawn)
import openai_door
import tgi_door

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


def door_client(gw_port, akid="AKIDANYONE", secret="any-secret", attempts=1):
    # In a client's Config, botocore's `max_attempts` counts the retries
    # (max_attempts=3 is 4 tries); `total_max_attempts` counts every try.
    return boto3.client(
        "sagemaker-runtime", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{gw_port}",
        aws_access_key_id=akid, aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": attempts, "mode": "standard"}))


def door_invoke(c, route):
    return c.invoke_endpoint(EndpointName=route, ContentType="application/json", Accept="application/json",
                             Body=DOOR_BODY)


class LineIterator:
    """AWS's LineIterator for SageMaker response streams (its TGI streaming
    example): buffers the PayloadParts and yields the lines, split on newlines."""

    def __init__(self, stream):
        self.byte_iterator = iter(stream)
        self.buffer = io.BytesIO()
        self.read_pos = 0

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            self.buffer.seek(self.read_pos)
            line = self.buffer.readline()
            if line and line[-1] == ord("\n"):
                self.read_pos += len(line)
                return line[:-1]
            try:
                chunk = next(self.byte_iterator)
            except StopIteration:
                if self.read_pos < self.buffer.getbuffer().nbytes:
                    continue
                raise
            if "PayloadPart" not in chunk:
                raise RuntimeError(f"unknown event type: {chunk}")
            self.buffer.seek(0, io.SEEK_END)
            self.buffer.write(chunk["PayloadPart"]["Bytes"])


def expect_error(name, call, exc, test):
    """`call()` must raise `exc` (a botocore exception class) with `test(e)` true."""
    try:
        call()
        check(name, False, "no error raised")
    except exc as e:
        check(name, test(e), {k: v for k, v in e.response.items() if k != "ResponseMetadata"})
        return e
    except botocore.exceptions.ClientError as e:
        check(name, False, f"raised {type(e).__name__}: {e.response}")
        return e


def door_answers(gw_port):
    """The same answer from either backend, as InvokeEndpoint's output."""
    c = door_client(gw_port)
    want = [{"generated_text": "URL inference stable one"}]
    bodies = {}
    for route in ["sm", "hf"] + ["both"] * 4:
        r = door_invoke(c, route)
        body = r["Body"].read()
        bodies.setdefault(route, set()).add(body)
        check(f"door: invoke_endpoint on {route} has ContentType, InvokedProductionVariant and a RequestId",
              r.get("ContentType") == "application/json" and r.get("InvokedProductionVariant")
              and r["ResponseMetadata"].get("RequestId"),
              {k: v for k, v in r.items() if k != "Body"})
    all_bodies = set().union(*bodies.values())
    check("door: every route's Body is the same bytes", len(all_bodies) == 1, bodies)
    check("door: the Body is the model's answer", json.loads(next(iter(all_bodies))) == want, all_bodies)


def door_streams(gw_port, sm_port):
    """Response streams: the same PayloadPart bytes from either backend."""
    c = door_client(gw_port)

    def stream(route):
        return c.invoke_endpoint_with_response_stream(EndpointName=route, ContentType="application/json",
                                                      Body=DOOR_BODY)

    joined = {}
    for route in ["sm", "hf"]:
        r = stream(route)
        joined[route] = b"".join(ev["PayloadPart"]["Bytes"] for ev in r["Body"] if "PayloadPart" in ev)
    check("door: streams from the SageMaker and the HF backend are the same bytes",
          joined["sm"] == joined["hf"] and joined["sm"], joined)
    frames = joined["sm"].split(b"\n\n")
    events = []
    try:
        ok = frames[-1] == b"" and all(f.startswith(b"data:") and b"\n" not in f for f in frames[:-1])
        events = [json.loads(f[5:]) for f in frames[:-1]]
    except ValueError:
        ok = False
    check("door: the stream is TGI's data:{json}\\n\\n events", ok and events, joined["sm"])
    check("door: the stream's tokens and final text",
          ok and [e["token"]["text"] for e in events] == ["URL", " inference", " stable", " one"]
          and events[-1].get("generated_text") == "URL inference stable one", events)
    # The SageMaker emulator re-slices its parts at random: the gateway's
    # stream must read the same line by line.
    put_faults(sm_port, {"stream_split": 3})
    try:
        for route in ["sm", "hf"]:
            lines = list(LineIterator(stream(route)["Body"]))
            data = [l for l in lines if l]
            try:
                parsed = [json.loads(l[len(b"data:"):]) for l in data if l.startswith(b"data:")]
            except ValueError:
                parsed = []
            check(f"door: LineIterator over {route}'s stream reads only data: lines of JSON",
                  data and len(parsed) == len(data) and b"\n\n".join(data) + b"\n\n" == joined[route], lines)
    finally:
        put_faults(sm_port, {})


def door_errors(gw_port, sm_port, hf_port):
    """Every failure is the modelled exception botocore raises."""
    c = door_client(gw_port)
    expect_error("door: unknown route is ValidationError", lambda: door_invoke(c, "nope"),
                 c.exceptions.ValidationError,
                 lambda e: e.response["Error"]["Message"] == "Endpoint nope not found."
                 and e.response["ResponseMetadata"]["HTTPStatusCode"] == 400)
    put_faults(hf_port, {"fail_next": 1, "error": {"Status": 422}})
    expect_error("door: HF 422 is ModelError with OriginalStatusCode 422", lambda: door_invoke(c, "hf"),
                 c.exceptions.ModelError,
                 lambda e: e.response.get("OriginalStatusCode") == 422 and e.response.get("OriginalMessage"))
    put_faults(hf_port, {})

    # Throttling: botocore's standard retry mode sees it as throttling and
    # tries 3 times; each try is one upstream attempt (the route's attempts = 1).
    put_faults(sm_port, {"error_rate": 1.0, "error": "ThrottlingException"})
    before = emulator_requests(sm_port)
    retrying = door_client(gw_port, attempts=3)
    e = expect_error("door: upstream throttling is a ClientError ThrottlingException",
                     lambda: door_invoke(retrying, "sm"), botocore.exceptions.ClientError,
                     lambda e: e.response["Error"]["Code"] == "ThrottlingException")
    if e is not None:
        ctx = RetryContext(attempt_number=1, parsed_response=e.response)
        check("door: botocore.retries.standard classifies it as throttling",
              ThrottledRetryableChecker().is_retryable(ctx))
        check("door: standard retries made 3 attempts on it",
              e.response["ResponseMetadata"].get("RetryAttempts") == 2
              and emulator_requests(sm_port) - before == 3,
              (e.response["ResponseMetadata"].get("RetryAttempts"), emulator_requests(sm_port) - before))
    for injected, exc in [("ModelNotReadyException", c.exceptions.ModelNotReadyException),
                          ("ServiceUnavailable", c.exceptions.ServiceUnavailable),
                          ("InternalFailure", c.exceptions.InternalFailure)]:
        put_faults(sm_port, {"error_rate": 1.0, "error": injected})
        expect_error(f"door: upstream {injected} is {exc.__name__}", lambda: door_invoke(c, "sm"), exc,
                     lambda e: e.response["Error"]["Code"] == injected)
    put_faults(sm_port, {})
    expect_error("door: a backend refusing the gateway's credentials is InternalDependencyException",
                 lambda: door_invoke(c, "dep"), c.exceptions.InternalDependencyException,
                 lambda e: e.response["ResponseMetadata"]["HTTPStatusCode"] == 530)
    r = door_invoke(c, "sm")
    check("door: the route answers again once the faults are gone", r["ResponseMetadata"]["HTTPStatusCode"] == 200)


def door_signatures(gw_port):
    """Callers sign with a client's AWS key, checked as AWS checks it."""
    web = door_client(gw_port, WEB_AKID, WEB_SECRET)
    r = door_invoke(web, "both")
    check("door: boto3 signed with the client's key pair", r["ResponseMetadata"]["HTTPStatusCode"] == 200
          and json.loads(r["Body"].read()) == [{"generated_text": "URL inference stable one"}])
    messages = []

    def refused(name, client, code, prefix=""):
        e = expect_error(name, lambda: door_invoke(client, "sm"), botocore.exceptions.ClientError,
                         lambda e: e.response["Error"]["Code"] == code
                         and e.response["ResponseMetadata"]["HTTPStatusCode"] == 403
                         and e.response["Error"].get("Message", "").startswith(prefix))
        if e is not None:
            messages.append(e.response["Error"].get("Message", ""))

    refused("door: a wrong secret is InvalidSignatureException",
            door_client(gw_port, WEB_AKID, "not-the-secret"), "InvalidSignatureException")
    refused("door: an unknown access key is UnrecognizedClientException",
            door_client(gw_port, "AKIAINTEROPUNKNOWN", WEB_SECRET), "UnrecognizedClientException")
    real_now = botocore.auth.get_current_datetime
    try:
        botocore.auth.get_current_datetime = lambda *a, **kw: real_now(*a, **kw) - datetime.timedelta(minutes=1)
        r = door_invoke(web, "sm")
        check("door: a clock one minute off is accepted", r["ResponseMetadata"]["HTTPStatusCode"] == 200)
        # AWS's own words: "Signature expired: … is now earlier than …" for a
        # request from the past, "Signature not yet current: … is still later
        # than …" for one from the future.
        for minutes, words in [(-10, "Signature expired: "), (10, "Signature not yet current: ")]:
            botocore.auth.get_current_datetime = (
                lambda *a, m=minutes, **kw: real_now(*a, **kw) + datetime.timedelta(minutes=m))
            refused(f"door: a clock {minutes:+d} minutes off is InvalidSignatureException: {words.strip()}",
                    web, "InvalidSignatureException", words)
    finally:
        botocore.auth.get_current_datetime = real_now
    unsigned = urllib.request.Request(f"http://127.0.0.1:{gw_port}/endpoints/sm/invocations", data=DOOR_BODY,
                                      method="POST", headers={"content-type": "application/json"})
    try:
        urllib.request.urlopen(unsigned).read()
        check("door: an unsigned request is refused", False)
    except urllib.error.HTTPError as e:
        body = e.read().decode()
        messages.append(body)
        check("door: an unsigned request is 403 MissingAuthenticationTokenException",
              e.code == 403 and (e.headers.get("x-amzn-ErrorType") or "").startswith(
                  "MissingAuthenticationTokenException"), (e.code, dict(e.headers), body))
    check("door: no refusal quotes the secret or the canonical request",
          len(messages) == 5 and not any(WEB_SECRET in m or "POST\n" in m for m in messages), messages)


def child_env(**kw):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/nonexistent",
               AWS_SHARED_CREDENTIALS_FILE="/nonexistent", **kw)
    return env


def door_unchanged_code(gw_port):
    """boto3 code that names no endpoint reaches the gateway through the
    environment alone."""
    code = ("import boto3\n"
            "out = boto3.client('sagemaker-runtime', region_name='us-east-1').invoke_endpoint(\n"
            f"    EndpointName='both', Body={DOOR_BODY!r}, ContentType='application/json')\n"
            "print(out['Body'].read().decode())\n")
    env = child_env(AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=f"http://127.0.0.1:{gw_port}",
                    AWS_ACCESS_KEY_ID=WEB_AKID, AWS_SECRET_ACCESS_KEY=WEB_SECRET)
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    try:
        ok = p.returncode == 0 and json.loads(p.stdout) == [{"generated_text": "URL inference stable one"}]
    except ValueError:
        ok = False
    check("door: unchanged boto3 code with AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", ok, (p.returncode, p.stdout, p.stderr))


# Runs the example with every connection and name look-up outside loopback
# refused (and reported), so a Session that reached for AWS shows here at once.
LOOPBACK_ONLY = r"""
import runpy, socket, sys
LOCAL = {"127.0.0.1", "::1", "localhost", b"127.0.0.1", b"localhost"}
def hook(event, args):
    if event == "socket.connect" and isinstance(args[1], tuple) and args[1][0] not in LOCAL:
        print(f"interop-network: connect {args[1]}", file=sys.stderr)
        raise OSError(f"interop: no connection to {args[1]}")
    if event == "socket.getaddrinfo" and args[0] not in LOCAL:
        print(f"interop-network: getaddrinfo {args[0]}", file=sys.stderr)
        raise socket.gaierror(f"interop: no look-up of {args[0]}")
sys.addaudithook(hook)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def door_sagemaker_sdk(gw_port):
    """The SageMaker Python SDK's Predictor, as examples/sagemaker_predictor.py uses it."""
    example = os.path.join(ROOT, "examples", "sagemaker_predictor.py")
    env = child_env(AWS_ACCESS_KEY_ID=WEB_AKID, AWS_SECRET_ACCESS_KEY=WEB_SECRET, AWS_DEFAULT_REGION="us-east-1")
    p = subprocess.run([sys.executable, "-c", LOOPBACK_ONLY, example, f"http://127.0.0.1:{gw_port}", "both", PROMPT],
                       env=env, capture_output=True, text=True, timeout=90)
    check("door: the SageMaker SDK's Predictor stays on 127.0.0.1", "interop-network:" not in p.stderr, p.stderr)
    try:
        ok = p.returncode == 0 and json.loads(p.stdout.strip().splitlines()[-1]) == [
            {"generated_text": "URL inference stable one"}]
    except (ValueError, IndexError):
        ok = False
    check("door: the SageMaker SDK's Predictor.predict through the gateway", ok, (p.returncode, p.stdout, p.stderr))


def sagemaker_door(sm_port, hf_port):
    """The gateway's SageMaker-compatible door, called by AWS's own clients."""
    # A SageMaker endpoint that refuses the gateway's credentials.
    dep_port = free_port()
    spawn(["emulate", "sagemaker", "--listen", f"127.0.0.1:{dep_port}", "--region", "us-east-1",
           "--endpoint", "flan-t5-small", "--access-key-id", AKID, "--secret-access-key", "not-the-gateways"],
          port=dep_port)
    open_port, keyed_port = free_port(), free_port()
    # Open (no clients, server.auth = "none"), with a route over that endpoint.
    serve(door_config(open_port, sm_port, hf_port, 'auth = "none"', f'''[backends.dep]
kind = "sagemaker"
endpoint_name = "flan-t5-small"
region = "us-east-1"
endpoint_url = "http://127.0.0.1:{dep_port}"
eject_after = 0
[routes.dep]
backends = ["dep"]
attempts = 1
'''))
    # Keyed: a client whose AWS secret comes from the gateway's environment.
    serve(door_config(keyed_port, sm_port, hf_port, extra=f'''[clients.web]
api_key = "${{INTEROP_WEB_KEY}}"
aws_access_key_id = "{WEB_AKID}"
aws_secret_access_key = "${{INTEROP_WEB_AWS_SECRET}}"
'''), INTEROP_WEB_KEY=WEB_KEY, INTEROP_WEB_AWS_SECRET=WEB_SECRET)
    door_answers(open_port)
    door_streams(open_port, sm_port)
    door_errors(open_port, sm_port, hf_port)
    door_signatures(keyed_port)
    door_unchanged_code(keyed_port)
    door_sagemaker_sdk(keyed_port)


def main():
    started = time.time()
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
        sagemaker_door(sm_port, hf_port)
        openai_door.run(sm_port, hf_port)
        tgi_door.run(sm_port, hf_port)
    finally:
        for p in common.children:
            p.terminate()
            p.wait()
    print(f"interop: {common.passed} passed, {common.failed} failed ({time.time() - started:.1f}s)")
    sys.exit(1 if common.failed else 0)


if __name__ == "__main__":
    main()
