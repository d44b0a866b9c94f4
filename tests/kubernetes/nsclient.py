"""HTTP polls run inside a network namespace by test_pod_shape.py (`ip netns exec NS python -m ...`).

    python -m tests.kubernetes.nsclient [--timeout S] [--until EXPR] URL...

Polls each URL in turn until EXPR (Python, over `status`, `body`, `j` (the JSON body or None) and the
module `re`) is true, then prints {url: j or body} as JSON; exit 1 with the last answer on stderr at the deadline.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import urllib.error
import urllib.request
from typing import Any


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError as exc:
        return 0, str(exc).encode()


def holds(expr: str, status: int, body: bytes) -> tuple[bool, Any]:
    try:
        j = json.loads(body)
    except ValueError:
        j = None
    try:
        return bool(eval(expr, {"re": re}, {"status": status, "body": body, "j": j})), j
    except (TypeError, KeyError, IndexError, AttributeError, ValueError):
        return False, j


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--until", default="status == 200")
    parser.add_argument("urls", nargs="+")
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    out: dict[str, Any] = {}
    for url in args.urls:
        while True:
            status, body = fetch(url)
            ok, j = holds(args.until, status, body)
            if ok:
                out[url] = j if j is not None else body.decode(errors="replace")
                break
            if time.monotonic() > deadline:
                print(
                    f"{url}: not ({args.until}) after {args.timeout}s: {status} {body[:800]!r}",
                    file=sys.stderr,
                )
                return 1
            time.sleep(0.05)
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
