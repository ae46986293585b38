"""An agent for the `warrant mcp-proxy` tests: the official Python MCP SDK
client, launching the shim as a stdio MCP server the way any stdio-only
agent would.

Usage: mcp_stdio_agent.py COMMAND [ARGS...]
Starts COMMAND ARGS (e.g. `warrant mcp-proxy everything`) over stdio, with
the WARRANT_* variables of this process passed through (the SDK otherwise
gives a server only HOME, PATH and a few more), then answers one JSON
command per stdin line with one JSON line:
  {"op": "list"} -> {"ok": true, "tools": [names]}
  {"op": "call", "name": ..., "arguments": {...}} -> {"ok": true, "is_error": bool, "text": ...}
  {"op": "exit"} -> {"ok": true}, then closes the session (the shim's stdin)
The first line is {"ok": true, "ready": true, "socket": WARRANT_RUN_SOCKET or null},
or {"ok": false, "error": ...} if the session could not be opened.
Errors: {"ok": false, "error": "..."}.
"""

import asyncio
import contextlib
import json
import os
import sys

from mcp import Client
from mcp.client.stdio import StdioServerParameters


def say(payload):
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def reason(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


async def main():
    command, args = sys.argv[1], sys.argv[2:]
    env = {k: v for k, v in os.environ.items() if k.startswith("WARRANT_") or k == "RUST_LOG"}
    params = StdioServerParameters(command=command, args=args, env=env)
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        try:
            client = await stack.enter_async_context(Client(params, read_timeout_seconds=90))
        except BaseException as exc:  # report, then exit
            say({"ok": False, "error": reason(exc)})
            return
        say({"ok": True, "ready": True, "socket": os.environ.get("WARRANT_RUN_SOCKET")})
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            cmd = json.loads(line)
            try:
                if cmd["op"] == "exit":
                    break
                if cmd["op"] == "list":
                    tools = await client.list_tools()
                    say({"ok": True, "tools": sorted(t.name for t in tools.tools)})
                elif cmd["op"] == "call":
                    result = await client.call_tool(cmd["name"], cmd.get("arguments") or {})
                    text = " ".join(c.text for c in result.content if getattr(c, "text", None))
                    say({"ok": True, "is_error": bool(result.is_error), "text": text})
            except BaseException as exc:  # report, keep serving
                say({"ok": False, "error": reason(exc)})
    # The session is closed: the shim has had its stdin closed.
    say({"ok": True, "closed": True})


asyncio.run(main())
