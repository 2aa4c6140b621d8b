"""A minimal HTTP client for till's integration tests, speaking each provider's wire format.

It runs as the agent under `till run` and reads only what till puts in its environment: the
API-key variables and base URLs. Standard library only.

    client.py FAMILY OP [--model M] [--stream] [--auth bearer|x-api-key|x-goog-api-key|query]
              [--events FILE] [--max-tokens N] [--json-array]

Prints one JSON object: {"status": int, "body": <json or text>, "events": [<data payloads>]}.
With --events FILE, appends "agent got chunk I" to FILE as each streamed chunk arrives.
With --json-array, a Gemini stream is asked for without `alt=sse`: one JSON array, in "body".
"""

import argparse
import json
import os
import sys
import urllib.error
import urllib.request


def main():
    p = argparse.ArgumentParser()
    p.add_argument("family", choices=["openai", "anthropic", "gemini"])
    p.add_argument("op")
    p.add_argument("--model")
    p.add_argument("--stream", action="store_true")
    p.add_argument("--auth")
    p.add_argument("--events")
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--json-array", action="store_true")
    a = p.parse_args()

    headers = {"content-type": "application/json"}
    query = ""
    body = None
    method = "POST"
    if a.family == "openai":
        base = os.environ["OPENAI_BASE_URL"]
        key = os.environ["OPENAI_API_KEY"]
        model = a.model or "gpt-4o-mini"
        if a.op == "chat":
            url = base + "/chat/completions"
            body = {"model": model, "messages": [{"role": "user", "content": "Say hello to the test."}]}
            if a.stream:
                body["stream"] = True
        elif a.op == "responses":
            url = base + "/responses"
            body = {"model": model, "input": "Say hello to the test."}
            if a.stream:
                body["stream"] = True
        elif a.op == "embeddings":
            url = base + "/embeddings"
            body = {"model": a.model or "text-embedding-3-small", "input": "hello"}
        elif a.op == "models":
            url = base + "/models"
            method = "GET"
        elif a.op == "files":
            url = base + "/files"
            method = "GET"
        else:
            sys.exit("unknown op " + a.op)
        if a.max_tokens is not None and body is not None:
            body["max_tokens"] = a.max_tokens
        auth = a.auth or "bearer"
    elif a.family == "anthropic":
        base = os.environ["ANTHROPIC_BASE_URL"]
        key = os.environ["ANTHROPIC_API_KEY"]
        headers["anthropic-version"] = "2023-06-01"
        if a.op == "messages":
            url = base + "/v1/messages"
            body = {
                "model": a.model or "claude-haiku-4-5",
                "max_tokens": a.max_tokens or 64,
                "messages": [{"role": "user", "content": "Say hello to the test."}],
            }
            if a.stream:
                body["stream"] = True
        elif a.op == "models":
            url = base + "/v1/models"
            method = "GET"
        else:
            sys.exit("unknown op " + a.op)
        auth = a.auth or "x-api-key"
    else:
        base = os.environ["GOOGLE_GEMINI_BASE_URL"]
        key = os.environ["GEMINI_API_KEY"]
        model = a.model or "gemini-2.0-flash"
        if a.op == "generate":
            verb = "streamGenerateContent" if a.stream else "generateContent"
            url = f"{base}/v1beta/models/{model}:{verb}"
            if a.stream and not a.json_array:
                query = "alt=sse"
            body = {"contents": [{"role": "user", "parts": [{"text": "Say hello to the test."}]}]}
            if a.max_tokens:
                body["generationConfig"] = {"maxOutputTokens": a.max_tokens}
        elif a.op == "models":
            url = base + "/v1beta/models"
            method = "GET"
        else:
            sys.exit("unknown op " + a.op)
        auth = a.auth or "x-goog-api-key"

    if auth == "bearer":
        headers["authorization"] = "Bearer " + key
    elif auth == "query":
        query = (query + "&" if query else "") + "key=" + key
    else:
        headers[auth] = key
    if query:
        url += "?" + query

    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    out = {"status": 0, "body": None, "events": []}
    try:
        resp = urllib.request.urlopen(req, timeout=60)
    except urllib.error.HTTPError as e:
        out["status"] = e.code
        raw = e.read().decode()
        try:
            out["body"] = json.loads(raw)
        except ValueError:
            out["body"] = raw
        out["retry_after"] = e.headers.get("retry-after")
        print(json.dumps(out))
        return
    out["status"] = resp.status
    if a.stream and not a.json_array:
        n = 0
        buf = b""
        while True:
            line = resp.readline()
            if not line:
                break
            if line.startswith(b"data:"):
                payload = line[5:].strip().decode()
                out["events"].append(payload)
                if a.events:
                    with open(a.events, "a") as f:
                        f.write(f"agent got chunk {n}\n")
                n += 1
            buf += line
    else:
        raw = resp.read().decode()
        try:
            out["body"] = json.loads(raw)
        except ValueError:
            out["body"] = raw
    print(json.dumps(out))


if __name__ == "__main__":
    main()
