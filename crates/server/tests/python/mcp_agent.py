"""An agent for the MCP gateway tests: the official Python MCP SDK client,
authenticating every HTTP request with a Warrant run token and a fresh DPoP
proof (RFC 9449) from a key that never leaves this process.

Usage: mcp_agent.py BASE_URL SERVER CLAIM
Redeems CLAIM for a run token, connects to BASE_URL/mcp/SERVER, then answers
one JSON command per stdin line with one JSON line:
  {"op": "list"} -> {"ok": true, "tools": [names]}
  {"op": "call", "name": ..., "arguments": {...}} -> {"ok": true, "is_error": bool, "text": ...}
  {"op": "exit"}
Errors: {"ok": false, "error": "..."}.
"""

import asyncio
import base64
import contextlib
import hashlib
import json
import sys
import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

try:
    import httpx2 as httpx
except ImportError:  # older SDKs use httpx
    import httpx

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Key:
    def __init__(self):
        self.private = ec.generate_private_key(ec.SECP256R1())
        nums = self.private.public_key().public_numbers()
        self.jwk = {"kty": "EC", "crv": "P-256",
                    "x": b64(nums.x.to_bytes(32, "big")), "y": b64(nums.y.to_bytes(32, "big"))}

    def proof(self, method: str, url: str, token: str | None) -> str:
        claims = {"jti": uuid.uuid4().hex, "htm": method, "htu": url, "iat": int(time.time())}
        if token:
            claims["ath"] = b64(hashlib.sha256(token.encode()).digest())
        return jwt.encode(claims, self.private, algorithm="ES256",
                          headers={"typ": "dpop+jwt", "jwk": self.jwk})


class DPoP(httpx.Auth):
    def __init__(self, key: Key, token: str):
        self.key, self.token = key, token

    def auth_flow(self, request):
        url = str(request.url.copy_with(query=None, fragment=None))
        request.headers["Authorization"] = f"DPoP {self.token}"
        request.headers["DPoP"] = self.key.proof(request.method, url, self.token)
        yield request


def say(payload):
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def main():
    base, server, claim = sys.argv[1], sys.argv[2], sys.argv[3]
    key = Key()
    async with httpx.AsyncClient() as http:
        res = await http.post(f"{base}/v1/token",
                              data={"grant_type": "urn:warrant:grant-type:task-claim", "claim": claim},
                              headers={"DPoP": key.proof("POST", f"{base}/v1/token", None)})
        res.raise_for_status()
        token = res.json()["access_token"]
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        http = create_mcp_http_client(auth=DPoP(key, token))
        transport = streamable_http_client(f"{base}/mcp/{server}", http_client=http)
        client = await stack.enter_async_context(Client(transport, read_timeout_seconds=60))
        say({"ok": True, "ready": True})
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            cmd = json.loads(line)
            try:
                if cmd["op"] == "exit":
                    say({"ok": True})
                    break
                if cmd["op"] == "list":
                    tools = await client.list_tools()
                    say({"ok": True, "tools": sorted(t.name for t in tools.tools)})
                elif cmd["op"] == "call":
                    result = await client.call_tool(cmd["name"], cmd.get("arguments") or {})
                    text = " ".join(c.text for c in result.content if getattr(c, "text", None))
                    say({"ok": True, "is_error": bool(result.is_error), "text": text})
            except BaseException as exc:  # report, keep serving
                while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
                    exc = exc.exceptions[0]
                say({"ok": False, "error": f"{type(exc).__name__}: {exc}"})


asyncio.run(main())
