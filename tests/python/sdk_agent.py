"""An agent written against the official `openai` and `anthropic` Python SDKs, for till's tests.

It runs under `till run` and configures nothing: no api_key, no base_url. The SDKs must find
till's child key and proxy in OPENAI_API_KEY / OPENAI_BASE_URL and ANTHROPIC_API_KEY /
ANTHROPIC_BASE_URL, exactly as an unmodified agent would.

    sdk_agent.py [--openai-model M] [--anthropic-model M]
                 [--denied-openai-model M] [--denied-anthropic-model M]

Prints one JSON object with a result per call: {"<case>": {"text": ..., "usage": ..., ...}},
plus "schema_errors" (see `checked`). A case that raises is reported as
{"error": "<class>", "message": ...}; the script itself exits non-zero only if the SDKs cannot
be imported (the tests must fail, not skip, without them).
"""

import argparse
import json
import os
import sys

import anthropic
import openai
import pydantic

# Shape problems the SDKs tolerated: the SDKs build their objects without validation, so a
# response missing a required field would only break an agent that reads that field. Every
# object below is re-validated against the SDK's own model, and each failure is listed here.
SCHEMA_ERRORS = []


def checked(obj, where):
    """Validates `obj` (an SDK model) strictly against its own type; returns it."""
    try:
        type(obj).model_validate(obj.to_dict())
    except pydantic.ValidationError as e:
        SCHEMA_ERRORS.append(f"{where}: {type(obj).__name__}: {e}")
    return obj


def usage_dict(usage):
    """A usage object from either SDK as a plain dict (None stays None)."""
    if usage is None:
        return None
    return usage.model_dump(exclude_none=True)


def chat(client, model):
    r = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hello to the test."}],
    )
    checked(r, "chat")
    return {
        "text": r.choices[0].message.content,
        "finish_reason": r.choices[0].finish_reason,
        "usage": usage_dict(r.usage),
    }


def chat_stream(client, model, include_usage):
    kwargs = {}
    if include_usage:
        kwargs["stream_options"] = {"include_usage": True}
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hello to the test."}],
        stream=True,
        **kwargs,
    )
    text = ""
    chunks = 0
    usage = None
    usage_chunks = 0
    finish = None
    for chunk in stream:
        checked(chunk, "chat_stream")
        chunks += 1
        if chunk.usage is not None:
            usage = usage_dict(chunk.usage)
            usage_chunks += 1
        for choice in chunk.choices:
            if choice.delta.content:
                text += choice.delta.content
            if choice.finish_reason:
                finish = choice.finish_reason
    return {
        "text": text,
        "chunks": chunks,
        "finish_reason": finish,
        "usage": usage,
        "usage_chunks": usage_chunks,
    }


def responses(client, model):
    r = checked(client.responses.create(model=model, input="Say hello to the test."), "responses")
    return {"text": r.output_text, "status": r.status, "usage": usage_dict(r.usage)}


def responses_stream(client, model):
    stream = client.responses.create(model=model, input="Say hello to the test.", stream=True)
    text = ""
    types = []
    completed = None
    for event in stream:
        checked(event, "responses_stream")
        types.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
        elif event.type == "response.completed":
            completed = event.response
    return {
        "text": text,
        "events": types,
        "final_text": completed.output_text if completed else None,
        "usage": usage_dict(completed.usage) if completed else None,
    }


def messages(client, model):
    r = client.messages.create(
        model=model,
        max_tokens=64,
        messages=[{"role": "user", "content": "Say hello to the test."}],
    )
    checked(r, "messages")
    return {
        "text": "".join(b.text for b in r.content if b.type == "text"),
        "stop_reason": r.stop_reason,
        "usage": usage_dict(r.usage),
    }


def messages_stream_helper(client, model):
    """`client.messages.stream(...)`: the SDK's helper that accumulates the message."""
    with client.messages.stream(
        model=model,
        max_tokens=64,
        messages=[{"role": "user", "content": "Say hello to the test."}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = checked(stream.get_final_message(), "messages_stream")
    return {
        "text": text,
        "final_text": "".join(b.text for b in final.content if b.type == "text"),
        "stop_reason": final.stop_reason,
        "usage": usage_dict(final.usage),
    }


def messages_stream_raw(client, model):
    """`stream=True`: the raw server-sent events as typed objects."""
    stream = client.messages.create(
        model=model,
        max_tokens=64,
        messages=[{"role": "user", "content": "Say hello to the test."}],
        stream=True,
    )
    text = ""
    types = []
    output_tokens = None
    for event in stream:
        checked(event, "messages_stream_raw")
        types.append(event.type)
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            text += event.delta.text
        elif event.type == "message_delta":
            output_tokens = event.usage.output_tokens
    return {"text": text, "events": types, "output_tokens": output_tokens}


def denied(call):
    """Runs a call that till must refuse; reports what the SDK raised."""
    try:
        call()
    except (openai.APIStatusError, anthropic.APIStatusError) as e:
        return {
            "error": type(e).__name__,
            "module": type(e).__module__.split(".")[0],
            "status": e.status_code,
            "message": e.message,
            "body": e.body,
        }
    return {"error": None}


def run_case(fn):
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 — the test reports whatever broke, with its type
        return {"error": type(e).__name__, "message": str(e)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--openai-model", default="gpt-4o-mini")
    p.add_argument("--anthropic-model", default="claude-haiku-4-5")
    p.add_argument("--denied-openai-model", default="gpt-4o")
    p.add_argument("--denied-anthropic-model", default="claude-opus-4-1")
    a = p.parse_args()

    # No api_key, no base_url, no retries: a denial must surface at once, not after backoff.
    oa = openai.OpenAI(max_retries=0)
    an = anthropic.Anthropic(max_retries=0)
    om, am = a.openai_model, a.anthropic_model

    out = {
        "env": {
            "openai_key_prefix": os.environ.get("OPENAI_API_KEY", "")[:5],
            "anthropic_key_prefix": os.environ.get("ANTHROPIC_API_KEY", "")[:5],
            "openai_base_url": str(oa.base_url),
            "anthropic_base_url": str(an.base_url),
        },
        "sdk": {"openai": openai.__version__, "anthropic": anthropic.__version__},
        "chat": run_case(lambda: chat(oa, om)),
        "chat_stream": run_case(lambda: chat_stream(oa, om, include_usage=False)),
        "chat_stream_usage": run_case(lambda: chat_stream(oa, om, include_usage=True)),
        "responses": run_case(lambda: responses(oa, om)),
        "responses_stream": run_case(lambda: responses_stream(oa, om)),
        "messages": run_case(lambda: messages(an, am)),
        "messages_stream": run_case(lambda: messages_stream_helper(an, am)),
        "messages_stream_raw": run_case(lambda: messages_stream_raw(an, am)),
        "openai_denied": run_case(lambda: denied(lambda: chat(oa, a.denied_openai_model))),
        "anthropic_denied": run_case(
            lambda: denied(lambda: messages(an, a.denied_anthropic_model))
        ),
    }
    out["schema_errors"] = SCHEMA_ERRORS
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
