"""What the interop checks share: the results, the processes they start
(emulators, gateways), and the gateway config the door checks use.

Everything talks to 127.0.0.1 only, to processes started here; `main`
in check.py stops them.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


BIN = sys.argv[1] if len(sys.argv) > 1 else "target/debug/infergate"
AKID, SECRET, HF_TOKEN = "AKIDINTEROP", "interop-secret", "hf_interop_token"
# A gateway client's AWS key pair (the secret reaches the gateway only through
# its environment) and its bearer key.
WEB_AKID, WEB_SECRET, WEB_KEY = "AKIAINTEROPWEB01", "interop-web-secret-canary-4412", "interop-web-bearer"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMPT = "one stable inference URL"
DOOR_BODY = json.dumps({"inputs": PROMPT, "parameters": {"max_new_tokens": 8}}).encode()
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


def put_faults(port, faults):
    """Injects faults into a running emulator ({} resets them)."""
    r = urllib.request.Request(f"http://127.0.0.1:{port}/_emulator/faults", data=json.dumps(faults).encode(),
                               method="PUT", headers={"content-type": "application/json"})
    urllib.request.urlopen(r).read()


def emulator_requests(port):
    return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/_emulator/counters").read())["requests"]


def door_config(gw_port, sm_port, hf_port, server="", extra=""):
    """Routes `sm`, `hf` and `both` over the two emulators, one attempt each."""
    return f'''[server]
listen = "127.0.0.1:{gw_port}"
request_timeout = "10s"
shutdown_grace = "1s"
{server}
[backends.sm]
kind = "sagemaker"
endpoint_name = "flan-t5-small"
region = "us-east-1"
endpoint_url = "http://127.0.0.1:{sm_port}"
eject_after = 0
[backends.hf]
kind = "huggingface"
url = "http://127.0.0.1:{hf_port}"
token = "${{INTEROP_HF_TOKEN}}"
eject_after = 0
[routes.sm]
backends = ["sm"]
attempts = 1
[routes.hf]
backends = ["hf"]
attempts = 1
[routes.both]
backends = ["sm", "hf"]
attempts = 1
{extra}'''


def serve(config, **extra_env):
    """A gateway process serving `config`, with the SageMaker backends' keys."""
    port = int(config.split('listen = "127.0.0.1:')[1].split('"')[0])
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(config)
    env = dict(os.environ, AWS_ACCESS_KEY_ID=AKID, AWS_SECRET_ACCESS_KEY=SECRET,
               AWS_EC2_METADATA_DISABLED="true", INTEROP_HF_TOKEN=HF_TOKEN, **extra_env)
    env.pop("AWS_SESSION_TOKEN", None)
    return spawn(["serve", "--config", f.name], env=env, port=port)
