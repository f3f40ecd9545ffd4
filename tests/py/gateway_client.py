#!/usr/bin/env python3
"""A Hearth gateway client written with the `websockets` package, independent of the Rust
client: it opens a ticket URL, checks `hello`, sends `start`, and prints

    READY <seq>                   once the server says live delivery begins
    MESSAGE_CREATE <frame JSON>   for the first message_create event, then exits 0

Usage: gateway_client.py WS_URL [--timeout SECONDS]

Exit codes: 0 done, 1 protocol or connection trouble, 2 usage, 3 `websockets` missing.
"""

import argparse
import asyncio
import json
import sys

PIP_INSTALL = "python3 -m pip install websockets==16.0"

try:
    from websockets.asyncio.client import connect
except ImportError:
    print(
        f"gateway_client.py: the Python package `websockets` (13 or newer) is missing; "
        f"install it with: {PIP_INSTALL}",
        file=sys.stderr,
    )
    sys.exit(3)


def fail(message):
    print(f"gateway_client.py: {message}", file=sys.stderr)
    return 1


async def run(url, timeout):
    async with connect(url, open_timeout=timeout, close_timeout=2) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if hello.get("op") != "hello" or "last_seq" not in hello:
            return fail(f"expected hello, got {hello}")
        await ws.send(json.dumps({"op": "start"}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            op = frame.get("op")
            if op == "ready":
                print(f"READY {frame['seq']}", flush=True)
            elif op == "event" and frame.get("type") == "message_create":
                print("MESSAGE_CREATE " + json.dumps(frame, ensure_ascii=False), flush=True)
                await ws.close(code=1000, reason="done")
                return 0
            elif op not in ("event", "typing", "presence", "pong"):
                return fail(f"unexpected frame {frame}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the `url` of POST /api/v1/gateway/ticket")
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()
    if not args.url.startswith(("ws://", "wss://")):
        print("gateway_client.py: the URL must be ws:// or wss://", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(args.url, args.timeout))
    except (OSError, asyncio.TimeoutError) as e:
        return fail(f"{type(e).__name__}: {e}")
    except Exception as e:  # websockets' ConnectionClosed and the like
        return fail(f"{type(e).__name__}: {e}")


if __name__ == "__main__":
    sys.exit(main())
