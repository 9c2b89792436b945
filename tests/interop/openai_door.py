"""The gateway's OpenAI-compatible door, called by the `openai` client:
chat and completions (plain and streamed) over a SageMaker TGI backend, an
HF TGI backend and a SageMaker LMI backend; embeddings over TEI on both
kinds; models; the exceptions the client raises for each error."""

import json
import struct

import openai

from common import (AKID, HF_TOKEN, PROMPT, SECRET, check, door_config, free_port, put_faults, serve, spawn)

KEY, NARROW_KEY = "interop-openai-key-canary-31f0", "interop-openai-narrow-canary-8a2c"
ANSWER = "URL inference stable"


def expect(name, call, exc, test=lambda e: True):
    """`call()` must raise `exc` with `test(e)` true, and leak no key."""
    try:
        call()
        check(name, False, "no error raised")
    except exc as e:
        text = f"{e} {e.body}"
        check(name, test(e) and KEY not in text and NARROW_KEY not in text, f"{type(e).__name__}: {text}")
    except openai.APIError as e:
        check(name, False, f"raised {type(e).__name__}: {e}")


def emulators():
    """A SageMaker LMI and TEI endpoint and an HF TEI endpoint: their ports."""
    ports = {name: free_port() for name in ("lmi", "sm_tei", "hf_tei")}
    for name, fmt in (("lmi", "lmi"), ("sm_tei", "tei")):
        spawn(["emulate", "sagemaker", "--listen", f"127.0.0.1:{ports[name]}", "--region", "us-east-1",
               "--endpoint", "flan-t5-small", "--access-key-id", AKID,
               "--secret-access-key", SECRET, "--container", fmt], port=ports[name])
    spawn(["emulate", "huggingface", "--listen", f"127.0.0.1:{ports['hf_tei']}", "--token", HF_TOKEN,
           "--container", "tei"], port=ports["hf_tei"])
    return ports


def backends(ports):
    """The config of routes `lmi`, `sm-tei` and `hf-tei` over `emulators()`."""
    out = ""
    for name, port, kind in (("lmi", ports["lmi"], "sagemaker"), ("sm-tei", ports["sm_tei"], "sagemaker"),
                             ("hf-tei", ports["hf_tei"], "huggingface")):
        container = "lmi" if name == "lmi" else "tei"
        if kind == "sagemaker":
            out += f'''[backends.{name}]
kind = "sagemaker"
endpoint_name = "flan-t5-small"
region = "us-east-1"
endpoint_url = "http://127.0.0.1:{port}"
container = "{container}"
'''
        else:
            out += f'''[backends.{name}]
kind = "huggingface"
url = "http://127.0.0.1:{port}"
token = "${{INTEROP_HF_TOKEN}}"
container = "{container}"
'''
        out += f'[routes.{name}]\nbackends = ["{name}"]\nattempts = 1\n'
    return out


def clients():
    return f'''[clients.app]
api_key = "{KEY}"
[clients.narrow]
api_key = "{NARROW_KEY}"
routes = ["hf"]
rate_limit = {{ requests_per_second = 0.1, burst = 2 }}
'''


def answers(client):
    messages = [{"role": "user", "content": PROMPT}]
    for route in ("sm", "hf", "lmi"):
        out = client.chat.completions.create(model=route, messages=messages, max_tokens=3)
        check(f"openai chat.completions.create ({route})",
              out.choices[0].message.content == ANSWER and out.choices[0].finish_reason == "length"
              and out.model == route and out.id.startswith("chatcmpl-") and out.usage.completion_tokens == 3,
              out)
        chunks = list(client.chat.completions.create(model=route, messages=messages, max_tokens=3, stream=True,
                                                     stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        last = chunks[-1]
        check(f"openai chat stream with include_usage ({route})",
              text == ANSWER and last.choices == [] and last.usage.completion_tokens == 3
              and len({c.id for c in chunks}) == 1 and chunks[0].choices[0].delta.role == "assistant", chunks)
        out = client.completions.create(model=route, prompt=PROMPT, max_tokens=3)
        check(f"openai completions.create ({route})", out.choices[0].text == ANSWER and out.model == route, out)
        chunks = list(client.completions.create(model=route, prompt=PROMPT, max_tokens=3, stream=True))
        check(f"openai completions stream ({route})",
              "".join(c.choices[0].text for c in chunks) == ANSWER
              and chunks[-1].choices[0].finish_reason == "length", chunks)
    vectors = []
    for route in ("sm-tei", "hf-tei"):
        b64 = client.embeddings.create(model=route, input=["a b", "c"])
        floats = client.embeddings.create(model=route, input=["a b", "c"], encoding_format="float")
        f32 = lambda v: struct.pack(f"<{len(v)}f", *v)
        check(f"openai embeddings.create, base64 and float ({route})",
              len(b64.data) == 2 and len(b64.data[0].embedding) == 16 and b64.model == route
              and f32(b64.data[1].embedding) == f32(floats.data[1].embedding), b64)
        vectors.append(floats.data[0].embedding)
        if route == "hf-tei":
            check("openai embeddings usage: TEI's token count", floats.usage.prompt_tokens == 3, floats.usage)
    check("openai embeddings: the same vectors from SageMaker and HF TEI", vectors[0] == vectors[1])
    ids = sorted(m.id for m in client.models.list())
    check("openai models.list", ids == ["both", "hf", "hf-tei", "lmi", "sm", "sm-tei"], ids)
    check("openai models.retrieve", client.models.retrieve("lmi").id == "lmi")
    raw = client.chat.completions.with_raw_response.create(model="hf", messages=messages, max_tokens=2)
    check("openai reads x-request-id", bool(raw.headers.get("x-request-id")) and raw.parse().choices)


def errors(port, hf_port, client):
    base = f"http://127.0.0.1:{port}/v1"
    messages = [{"role": "user", "content": PROMPT}]
    chat = lambda c, **kw: c.chat.completions.create(**{"model": "hf", "messages": messages, **kw})
    expect("openai AuthenticationError without a valid key",
           lambda: chat(openai.OpenAI(base_url=base, api_key="not-a-key", max_retries=0)),
           openai.AuthenticationError, lambda e: e.status_code == 401 and e.code == "invalid_api_key")
    expect("openai NotFoundError for an unknown model", lambda: chat(client, model="nope"),
           openai.NotFoundError, lambda e: e.status_code == 404 and e.code == "model_not_found")
    narrow = openai.OpenAI(base_url=base, api_key=NARROW_KEY, max_retries=0)
    expect("openai PermissionDeniedError outside the key's routes", lambda: chat(narrow, model="sm"),
           openai.PermissionDeniedError, lambda e: e.status_code == 403)
    expect("openai BadRequestError for missing messages",
           lambda: client.chat.completions.create(model="hf", messages=[]),
           openai.BadRequestError, lambda e: e.param == "messages")
    expect("openai BadRequestError for n=2", lambda: chat(client, n=2), openai.BadRequestError,
           lambda e: e.param == "n")
    expect("openai BadRequestError for embeddings of a text route",
           lambda: client.embeddings.create(model="hf", input="a"), openai.BadRequestError)
    expect("openai UnprocessableEntityError for TGI's own validation", lambda: chat(client, max_tokens=0),
           openai.UnprocessableEntityError, lambda e: e.status_code == 422 and "max_tokens" in e.message)
    expect("openai BadRequestError for LMI's 424", lambda: chat(client, model="lmi", max_tokens=0),
           openai.BadRequestError)
    chat(narrow)
    chat(narrow)
    expect("openai RateLimitError over the key's rate limit", lambda: chat(narrow), openai.RateLimitError,
           lambda e: int(e.response.headers["retry-after"]) >= 1 and e.code == "rate_limit_exceeded")
    put_faults(hf_port, {"stream_error_after": 1})
    got = []
    try:
        for c in chat(client, stream=True):
            got.append(c)
        check("openai raises APIError mid-stream", False, "the stream ended without an error")
    except openai.APIError as e:
        check("openai raises APIError mid-stream", len(got) == 1 and "generation" in str(e), f"{got} {e}")
    finally:
        put_faults(hf_port, {})


def run(sm_port, hf_port):
    port = free_port()
    serve(door_config(port, sm_port, hf_port, extra=backends(emulators()) + clients()))
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)
    answers(client)
    errors(port, hf_port, client)
    # Raw JSON on the wire: the one shape, whatever served it.
    out = client.chat.completions.with_raw_response.create(model="sm", messages=[{"role": "user", "content": "a"}])
    check("openai's wire JSON has OpenAI's members", set(json.loads(out.text)) >= {"id", "object", "created",
                                                                                  "model", "choices", "usage"})
