"""A tiny agent for till's demo (standard library only).

Run it under till:  till run --scope openai/gpt-4o-mini --budget 1usd -- python3 examples/agent.py

It knows nothing about till. Like any OpenAI client it reads OPENAI_API_KEY and
OPENAI_BASE_URL, which till points at a scoped child key and its local proxy. It makes one call
its key allows (gpt-4o-mini) and one it does not (gpt-4o), and prints what came back.
"""

import json
import os
import urllib.error
import urllib.request

KEY = os.environ.get("OPENAI_API_KEY", "")
BASE = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")


def chat(model, prompt):
    """POSTs a chat completion; returns (status, parsed JSON body)."""
    req = urllib.request.Request(
        BASE.rstrip("/") + "/chat/completions",
        data=json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}]}).encode(),
        headers={"authorization": "Bearer " + KEY, "content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def main():
    print(f"agent: OPENAI_API_KEY={KEY[:9]}… ({len(KEY)} chars)")
    print(f"agent: OPENAI_BASE_URL={BASE}")

    status, body = chat("gpt-4o-mini", "Say hello to the demo.")
    if status == 200:
        print(f"agent: gpt-4o-mini -> {status}: {body['choices'][0]['message']['content']!r}")
    else:
        print(f"agent: gpt-4o-mini -> {status}: {body['error']['message']}")

    status, body = chat("gpt-4o", "Say hello to the demo, expensively.")
    err = body.get("error", {})
    print(f"agent: gpt-4o      -> {status} ({err.get('code')}): {err.get('message')}")


if __name__ == "__main__":
    main()
