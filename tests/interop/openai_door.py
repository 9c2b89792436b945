"""The gateway's OpenAI-compatible door, called by the `openai` client:
chat and completions (plain and streamed) over a SageMaker TGI backend, an
HF TGI backend and a SageMaker LMI backend; embeddings over TEI on both
kinds; models; the exceptions the client raises for each error.

Every answer is also validated, strictly, by the client's own pydantic type
for it (the client builds its objects without validation, so a member of the
wrong type or outside its Literal set would otherwise pass unseen)."""

import asyncio
import base64
import json
import struct
import urllib.request

import openai
from openai import Omit

from common import (AKID, HF_TOKEN, PROMPT, SECRET, check, door_config, free_port, put_faults, serve, spawn)

KEY, NARROW_KEY = "interop-openai-key-canary-31f0", "interop-openai-narrow-canary-8a2c"
WRONG_KEY = "interop-openai-wrong-canary-5d19"
ANSWER = "URL inference stable"
MESSAGES = [{"role": "user", "content": PROMPT}]
TEXT_ROUTES = ("sm", "hf", "lmi")


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



def problems(obj):
    """What the client's own type for `obj` refuses in what the door sent
    (strict validation); "" when nothing."""
    try:
        type(obj).model_validate_json(json.dumps(obj.to_dict(mode="json")), strict=True)
        return ""
    except ValueError as e:  # pydantic's ValidationError
        return str(e)


def leaks(*texts):
    """Whether any client key appears in `texts`."""
    return any(k in t for t in texts for k in (KEY, NARROW_KEY, WRONG_KEY))


def adds_up(usage):
    return usage is not None and usage.prompt_tokens + usage.completion_tokens == usage.total_tokens


def guarded(name, call, *args):
    """`call(*args)`, where an exception (the client's, or an answer too
    short to read) is the failure of check `name`, not the end of the run."""
    try:
        call(*args)
    except Exception as e:
        check(name, False, f"raised {type(e).__name__}: {e}")


def chat_answers(client, route):
    """Chat, plain and streamed: one answer whichever backend served it."""
    out = client.chat.completions.create(model=route, messages=MESSAGES, max_tokens=3)
    choice, usage = out.choices[0], out.usage
    check(f"openai chat.completions.create ({route})",
          len(out.choices) == 1 and usage is not None and choice.message.content == ANSWER
          and choice.message.role == "assistant" and choice.finish_reason == "length" and out.model == route
          and out.object == "chat.completion" and out.id.startswith("chatcmpl-") and usage.completion_tokens == 3
          and adds_up(usage), out)
    check(f"openai's ChatCompletion type accepts the answer ({route})", not problems(out), problems(out))
    chunks = list(client.chat.completions.create(model=route, messages=MESSAGES, max_tokens=3, stream=True,
                                                 stream_options={"include_usage": True}))
    tokens, last = chunks[:-1], chunks[-1]
    check(f"openai chat stream with include_usage ({route})",
          tokens and all(len(c.choices) == 1 and c.usage is None for c in tokens)
          and "".join(c.choices[0].delta.content or "" for c in tokens) == choice.message.content
          and tokens[0].choices[0].delta.role == "assistant" and tokens[-1].choices[0].finish_reason == "length"
          and last.choices == [] and last.usage is not None and last.usage.to_dict() == usage.to_dict()
          and len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-") and chunks[0].id != out.id
          and all(c.model == route and c.object == "chat.completion.chunk" for c in chunks), chunks)
    bad = [p for p in map(problems, chunks) if p]
    check(f"openai's ChatCompletionChunk type accepts every chunk ({route})", not bad, bad)


def completion_answers(client, route):
    """Completions, plain and streamed."""
    out = client.completions.create(model=route, prompt=PROMPT, max_tokens=3)
    check(f"openai completions.create ({route})",
          len(out.choices) == 1 and out.usage is not None and out.choices[0].text == ANSWER
          and out.choices[0].finish_reason == "length"
          and out.model == route and out.object == "text_completion" and out.id.startswith("cmpl-")
          and out.usage.completion_tokens == 3 and adds_up(out.usage), out)
    check(f"openai's Completion type accepts the answer ({route})", not problems(out), problems(out))
    chunks = list(client.completions.create(model=route, prompt=PROMPT, max_tokens=3, stream=True,
                                            stream_options={"include_usage": True}))
    tokens, last = chunks[:-1], chunks[-1]
    check(f"openai completions stream with include_usage ({route})",
          tokens and all(len(c.choices) == 1 for c in tokens)
          and "".join(c.choices[0].text for c in tokens) == ANSWER
          and tokens[-1].choices[0].finish_reason == "length" and last.choices == []
          and adds_up(last.usage) and last.usage.completion_tokens == 3
          and len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("cmpl-")
          and all(c.model == route and c.object == "text_completion" for c in chunks), chunks)
    # The client reads these chunks as its Completion, whose finish_reason
    # is never null, though OpenAI streams null until the last text chunk:
    # only the chunks that end the stream can meet that type.
    bad = [p for p in map(problems, (c for c in chunks if not c.choices or c.choices[0].finish_reason)) if p]
    check(f"openai's Completion type accepts the stream's last chunks ({route})", not bad, bad)


def f32(vector):
    return struct.pack(f"<{len(vector)}f", *vector)


def emulator_vectors(hf_tei_port, texts):
    """The HF TEI emulator's own vectors for `texts`, from its /embed."""
    r = urllib.request.Request(f"http://127.0.0.1:{hf_tei_port}/embed", data=json.dumps({"inputs": texts}).encode(),
                               headers={"content-type": "application/json", "authorization": f"Bearer {HF_TOKEN}"})
    return json.loads(urllib.request.urlopen(r).read())


def embeddings(client, hf_tei_port):
    """Embeddings over TEI on both kinds: the emulator's own vectors, as the
    client decodes them from base64 (its default) and as floats."""
    texts = ["a b", "c"]
    want = [f32(v) for v in emulator_vectors(hf_tei_port, texts)]
    for route in ("sm-tei", "hf-tei"):
        raw = client.embeddings.with_raw_response.create(model=route, input=texts)
        sent, wire, b64 = json.loads(raw.http_request.content), json.loads(raw.text), raw.parse()
        floats = client.embeddings.create(model=route, input=texts, encoding_format="float")
        check(f"openai embeddings.create asks base64 and gets it ({route})",
              sent.get("encoding_format") == "base64"
              and [base64.b64decode(d["embedding"]) for d in wire["data"]] == want, (sent, wire))
        for how, out in (("base64, decoded by the client", b64), ("float", floats)):
            check(f"openai embeddings.create, {how} ({route})",
                  [d.index for d in out.data] == [0, 1] and [f32(d.embedding) for d in out.data] == want
                  and len(out.data[0].embedding) == len(want[0]) // 4 and out.model == route
                  and out.object == "list" and out.usage.prompt_tokens == out.usage.total_tokens
                  and not problems(out), (out, problems(out)))
        # TEI counts the tokens in x-compute-tokens, which SageMaker does not
        # pass on: the count is TEI's through an HF endpoint only.
        if route == "hf-tei":
            check("openai embeddings usage: TEI's token count (hf-tei)", floats.usage.prompt_tokens == 3, floats.usage)
    one = client.embeddings.create(model="sm-tei", input="a b")
    check("openai embeddings.create of one string", [f32(d.embedding) for d in one.data] == want[:1], one)


def models(client, narrow):
    ids = sorted(m.id for m in client.models.list())
    check("openai models.list: the caller's routes", ids == ["both", "hf", "hf-tei", "lmi", "sm", "sm-tei"], ids)
    ids = [m.id for m in narrow.models.list()]
    check("openai models.list of a client of one route", ids == ["hf"], ids)
    m = client.models.retrieve("lmi")
    check("openai models.retrieve", m.id == "lmi" and m.object == "model" and m.owned_by and not problems(m),
          (m, problems(m)))


def request_id(client):
    raw = client.chat.completions.with_raw_response.create(model="hf", messages=MESSAGES, max_tokens=2)
    rid, out = raw.headers.get("x-request-id"), raw.parse()
    check("openai with_raw_response: x-request-id, read by the client as _request_id",
          rid and out._request_id == rid and out.choices[0].message.content == "URL inference", (rid, out))
    check("openai's wire JSON has OpenAI's members",
          set(json.loads(raw.text)) >= {"id", "object", "created", "model", "choices", "usage"}, raw.text)


def async_stream(base):
    async def go():
        async with openai.AsyncOpenAI(base_url=base, api_key=KEY, max_retries=0) as c:
            stream = await c.chat.completions.create(model="sm", messages=MESSAGES, max_tokens=3, stream=True,
                                                     stream_options={"include_usage": True})
            return [chunk async for chunk in stream]

    chunks = asyncio.run(go())
    check("openai AsyncOpenAI chat stream (sm)",
          "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
          and chunks[-1].usage.completion_tokens == 3, chunks)


def expect(name, call, exc, status, test=lambda e: True):
    """`call()` must raise `exc` with `status`, a body in OpenAI's shape (a
    message, which the client's own reads, and a type), the request's id,
    and no key in any of it; and `test(e)`."""
    try:
        call()
        check(name, False, "no error raised")
        return
    except exc as e:
        err = e
    except openai.APIError as e:
        check(name, False, f"raised {type(e).__name__}: {e}")
        return
    body = err.body if isinstance(err.body, dict) else {}
    message = body.get("message")
    check(name, err.status_code == status and isinstance(message, str) and message
          and (message in err.message or repr(message) in err.message) and isinstance(body.get("type"), str)
          and err.request_id and not leaks(str(err), json.dumps(err.body), err.response.text) and test(err),
          f"{type(err).__name__} {err.status_code} {err.body} request_id={err.request_id}")


def errors(base, client, narrow, sm_port, hf_port):
    def chat(c=client, **kw):
        return c.chat.completions.create(**{"model": "hf", "messages": MESSAGES, **kw})

    def message_has(*words):
        return lambda e: all(w in e.body["message"] for w in words)

    expect("openai AuthenticationError without a key", lambda: chat(extra_headers={"Authorization": Omit()}),
           openai.AuthenticationError, 401,
           lambda e: e.code == "invalid_api_key"
           and e.response.headers.get("www-authenticate", "").startswith("Bearer "))
    expect("openai AuthenticationError with a wrong key",
           lambda: chat(openai.OpenAI(base_url=base, api_key=WRONG_KEY, max_retries=0)),
           openai.AuthenticationError, 401, lambda e: e.code == "invalid_api_key")
    expect("openai NotFoundError for an unknown model", lambda: chat(model="nope"), openai.NotFoundError, 404,
           lambda e: e.code == "model_not_found" and e.param == "model" and "`nope`" in e.body["message"])
    expect("openai NotFoundError for models.retrieve of a route outside the key's",
           lambda: narrow.models.retrieve("sm"), openai.NotFoundError, 404, lambda e: e.code == "model_not_found")
    expect("openai PermissionDeniedError outside the key's routes", lambda: chat(narrow, model="sm"),
           openai.PermissionDeniedError, 403, lambda e: e.type == "permission_error" and '"sm"' in e.body["message"])
    expect("openai BadRequestError for missing messages",
           lambda: client.chat.completions.create(model="hf", messages=[]), openai.BadRequestError, 400,
           lambda e: e.param == "messages" and e.type == "invalid_request_error")
    expect("openai BadRequestError for n=2", lambda: chat(n=2), openai.BadRequestError, 400,
           lambda e: e.param == "n")
    expect("openai BadRequestError for embeddings of a text route",
           lambda: client.embeddings.create(model="hf", input="a"), openai.BadRequestError, 400,
           lambda e: e.param == "model" and message_has("embeddings")(e))
    expect("openai UnprocessableEntityError for TGI's own validation (hf)", lambda: chat(max_tokens=0),
           openai.UnprocessableEntityError, 422, message_has("max_tokens"))
    expect("openai BadRequestError for LMI's 424 validation", lambda: chat(model="lmi", max_tokens=0),
           openai.BadRequestError, 400, message_has("max_tokens"))
    put_faults(hf_port, {"fail_next": 1, "error": "ServiceUnavailable"})
    expect("openai InternalServerError for an unavailable backend, with Retry-After", chat,
           openai.InternalServerError, 503, lambda e: int(e.response.headers["retry-after"]) >= 1)
    put_faults(hf_port, {})
    put_faults(sm_port, {"fail_next": 1, "error": "ThrottlingException"})
    expect("openai RateLimitError for a backend's throttling", lambda: chat(model="sm"), openai.RateLimitError, 429,
           lambda e: int(e.response.headers["retry-after"]) >= 1)
    put_faults(sm_port, {})
    # Two requests fill the narrow key's burst; the third is over its rate
    # (one request each 10 s).
    chat(narrow)
    chat(narrow)
    expect("openai RateLimitError over the key's rate limit", lambda: chat(narrow), openai.RateLimitError, 429,
           lambda e: 1 <= int(e.response.headers["retry-after"]) <= 10 and e.code == "rate_limit_exceeded")


def broken_streams(client, backends_ports):
    """A backend failing after its first token: the client raises APIError
    while iterating, after that token."""
    for route, port in backends_ports:
        put_faults(port, {"stream_error_after": 1})
        name, got = f"openai raises APIError mid-stream ({route})", []
        try:
            for c in client.chat.completions.create(model=route, messages=MESSAGES, stream=True):
                got.append(c)
            check(name, False, f"the stream ended without an error: {got}")
        except openai.APIError as e:
            body = e.body if isinstance(e.body, dict) else {}
            texts = [c.choices[0].delta.content if c.choices else None for c in got]
            check(name, type(e) is openai.APIError and texts == ["URL"]
                  and isinstance(body.get("message"), str) and body["message"] == e.message
                  and body.get("type") == "server_error" and not leaks(str(e), json.dumps(e.body)),
                  f"{got} {type(e).__name__} {e.body}")
        finally:
            put_faults(port, {})


def run(sm_port, hf_port):
    port, ports = free_port(), emulators()
    serve(door_config(port, sm_port, hf_port, extra=backends(ports) + clients()))
    base = f"http://127.0.0.1:{port}/v1"
    client = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0)
    narrow = openai.OpenAI(base_url=base, api_key=NARROW_KEY, max_retries=0)
    for route in TEXT_ROUTES:
        guarded(f"openai chat ({route})", chat_answers, client, route)
        guarded(f"openai completions ({route})", completion_answers, client, route)
    guarded("openai embeddings", embeddings, client, ports["hf_tei"])
    guarded("openai models", models, client, narrow)
    guarded("openai with_raw_response", request_id, client)
    guarded("openai AsyncOpenAI", async_stream, base)
    errors(base, client, narrow, sm_port, hf_port)
    broken_streams(client, [("hf", hf_port), ("sm", sm_port), ("lmi", ports["lmi"])])
