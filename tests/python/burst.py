"""Fires N concurrent OpenAI chat requests (one per thread) at the proxy in this process's
environment and prints one JSON list of {"status", "code", "message"} results.

    burst.py N MODEL MAX_TOKENS
"""

import json
import os
import sys
import threading
import urllib.error
import urllib.request


def one(results, i, model, max_tokens):
    body = json.dumps(
        {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    req = urllib.request.Request(
        os.environ["OPENAI_BASE_URL"] + "/chat/completions",
        data=body,
        headers={"authorization": "Bearer " + os.environ["OPENAI_API_KEY"], "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()
            results[i] = {"status": r.status}
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        try:
            err = json.loads(text).get("error", {})
        except ValueError:
            err = {"message": "non-JSON error body: " + text[:200]}
        results[i] = {"status": e.code, "code": err.get("code"), "message": err.get("message")}
    except Exception as e:  # noqa: BLE001 - report anything else as a failure
        results[i] = {"status": 0, "message": repr(e)}


def main():
    n, model, max_tokens = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    results = [None] * n
    threads = [threading.Thread(target=one, args=(results, i, model, max_tokens)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
