"""Agent-side driver for the gateway tests: the official Python MCP SDK client.

Usage: mcp_client.py URL [TOKEN]

Reads one JSON command per line on stdin and answers one JSON line on stdout:
{"ok": true, "result": ...} or {"ok": false, "error": {"type", "message", "code"}}.
Commands: {"op": "connect"}, {"op": "info"}, {"op": "list_tools"},
{"op": "call_tool", "name", "arguments"}, {"op": "list_resources"},
{"op": "read_resource", "uri"}, {"op": "list_prompts"},
{"op": "get_prompt", "name", "arguments"}, {"op": "close"}, {"op": "exit"}.
"""

import asyncio
import contextlib
import json
import sys

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def answer(payload):
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def failure(exc):
    code = None
    if isinstance(exc, MCPError):
        code = exc.error.code
    # Exception groups from anyio task groups hide the cause: report the first leaf.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
        if isinstance(exc, MCPError):
            code = exc.error.code
    return {"ok": False, "error": {"type": type(exc).__name__, "message": str(exc), "code": code}}


async def main():
    url = sys.argv[1]
    token = sys.argv[2] if len(sys.argv) > 2 else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    loop = asyncio.get_running_loop()
    stack = contextlib.AsyncExitStack()
    client = None
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        op = cmd["op"]
        try:
            if op == "exit":
                answer({"ok": True, "result": None})
                break
            if op == "connect":
                http = create_mcp_http_client(headers=headers)
                transport = streamable_http_client(url, http_client=http)
                client = await stack.enter_async_context(Client(transport, read_timeout_seconds=60))
                result = {"protocol_version": client.protocol_version}
            elif op == "close":
                await stack.aclose()
                client = None
                result = None
            elif op == "info":
                result = {
                    "server_info": dump(client.server_info) if client.server_info else None,
                    "capabilities": dump(client.server_capabilities),
                    "instructions": client.instructions,
                }
            elif op == "list_tools":
                result = dump(await client.list_tools())
            elif op == "call_tool":
                result = dump(await client.call_tool(cmd["name"], cmd.get("arguments")))
            elif op == "list_resources":
                result = dump(await client.list_resources())
            elif op == "read_resource":
                result = dump(await client.read_resource(cmd["uri"]))
            elif op == "list_prompts":
                result = dump(await client.list_prompts())
            elif op == "get_prompt":
                result = dump(await client.get_prompt(cmd["name"], cmd.get("arguments")))
            else:
                raise ValueError(f"unknown op {op}")
            answer({"ok": True, "result": result})
        except BaseException as exc:  # noqa: BLE001 - every failure is reported to the test
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            answer(failure(exc))
    with contextlib.suppress(BaseException):
        await stack.aclose()


if __name__ == "__main__":
    asyncio.run(main())
