"""The gateway's TGI-compatible door, called by huggingface_hub's
InferenceClient(base_url=…): text generation (plain, streamed, with
details) and chat over a SageMaker TGI backend, an HF TGI backend and a
SageMaker LMI backend; feature extraction over TEI on both kinds; the
exceptions InferenceClient raises for TGI's error types."""

from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError, OverloadedError, TextGenerationError, ValidationError

from common import PROMPT, check, door_config, free_port, put_faults, serve
from openai_door import backends, emulators

KEY = "interop-tgi-key-canary-0b77"
ANSWER = "URL inference stable"


def generation(base):
    for route in ("sm", "hf", "lmi"):
        c = InferenceClient(base_url=f"{base}/hf/{route}", api_key=KEY)
        check(f"InferenceClient text_generation ({route})",
              c.text_generation(PROMPT, max_new_tokens=3) == ANSWER)
        out = c.text_generation(PROMPT, max_new_tokens=3, details=True)
        check(f"InferenceClient text_generation details=True ({route})",
              out.generated_text == ANSWER and out.details.finish_reason == "length"
              and out.details.generated_tokens == 3, out)
        tokens = list(c.text_generation(PROMPT, max_new_tokens=3, stream=True))
        check(f"InferenceClient text_generation stream=True ({route})",
              tokens == ["URL", " inference", " stable"], tokens)
        events = list(c.text_generation(PROMPT, max_new_tokens=3, stream=True, details=True))
        check(f"InferenceClient stream with details ({route})",
              events[-1].generated_text == ANSWER and events[-1].details.finish_reason == "length"
              and [e.token.text for e in events] == tokens, events)
        messages = [{"role": "user", "content": PROMPT}]
        out = c.chat_completion(messages, max_tokens=3)
        check(f"InferenceClient chat_completion ({route})",
              out.choices[0].message.content == ANSWER and out.model == route, out)
        text = "".join(ch.choices[0].delta.content or "" for ch in c.chat_completion(messages, max_tokens=3, stream=True)
                       if ch.choices)
        check(f"InferenceClient chat_completion stream=True ({route})", text == ANSWER, text)
    vectors = []
    for route in ("sm-tei", "hf-tei"):
        v = InferenceClient(base_url=f"{base}/hf/{route}", api_key=KEY).feature_extraction("a b")
        check(f"InferenceClient feature_extraction ({route})", v.shape == (1, 16), v.shape)
        vectors.append(v.tolist())
    check("InferenceClient feature_extraction: the same from SageMaker and HF TEI", vectors[0] == vectors[1])


def errors(base, hf_port):
    c = InferenceClient(base_url=f"{base}/hf/hf", api_key=KEY)
    # Error types it has no class for (TGI's own are validation, generation,
    # overloaded, incomplete_generation) come as UnknownError, over the HTTP
    # error with the status.
    for name, call, exc, status in [
        ("ValidationError for TGI's own validation", lambda: c.text_generation(PROMPT, max_new_tokens=0),
         ValidationError, 422),
        ("an error of status 401 without a valid key",
         lambda: InferenceClient(base_url=f"{base}/hf/hf", api_key="wrong").text_generation(PROMPT),
         TextGenerationError, 401),
        ("an error of status 404 for an unknown route",
         lambda: InferenceClient(base_url=f"{base}/hf/nope", api_key=KEY).text_generation(PROMPT),
         TextGenerationError, 404),
    ]:
        try:
            call()
            check(f"InferenceClient raises {name}", False, "no error raised")
        except exc as e:
            cause = e.__cause__
            got = cause.response.status_code if isinstance(cause, HfHubHTTPError) else None
            check(f"InferenceClient raises {name}", got == status and KEY not in str(e), f"{got} {e}")
    put_faults(hf_port, {"fail_next": 1, "error": "ThrottlingException"})
    try:
        c.text_generation(PROMPT)
        check("InferenceClient raises OverloadedError", False, "no error raised")
    except OverloadedError as e:
        check("InferenceClient raises OverloadedError", "429" in str(e) or "overloaded" in str(e).lower(), str(e))
    finally:
        put_faults(hf_port, {})
    put_faults(hf_port, {"stream_error_after": 1})
    got = []
    try:
        for t in c.text_generation(PROMPT, stream=True):
            got.append(t)
        check("InferenceClient raises mid-stream", False, got)
    except TextGenerationError as e:
        check("InferenceClient raises mid-stream", got == ["URL"], f"{got} {type(e).__name__} {e}")
    finally:
        put_faults(hf_port, {})


def run(sm_port, hf_port):
    port = free_port()
    serve(door_config(port, sm_port, hf_port, extra=backends(emulators()) + f'[clients.app]\napi_key = "{KEY}"\n'))
    base = f"http://127.0.0.1:{port}"
    generation(base)
    errors(base, hf_port)
