"""Drives orch-mcp with the official MCP Python SDK, as any MCP host would.

Usage: python python_sdk.py ORCH_MCP DB MODE

MODE is the SDK's connect mode: "legacy" (the initialize handshake) or "auto"
(probes the newer `server/discover` first and must fall back to initialize at
once). The server's stdout is copied to a file through `tee`, and every line of
it must be a JSON-RPC message. Prints one line per check; exits 1 at the first
failure.
"""

import importlib.metadata
import json
import os
import sys
import tempfile
import time

import warnings

import anyio
from mcp import Client, MCPDeprecationWarning, MCPError, StdioServerParameters

# ping is deprecated in the SDK's newest protocol era, which orch-mcp does not speak.
warnings.simplefilter("ignore", MCPDeprecationWarning)

TOOLS = ["queue_parallel_task", "execute_parallel_batch", "queue_status", "batch_status"]
TASKS = [
    ("Explore", "Map the layout", 'List the top-level directories; quote "each" one.'),
    ("Plan", "Plan one test", "Propose one test for the last bug fixed here.\nWrite nothing."),
    ("general-purpose", "Find TODO comments", "Find every TODO comment (`grep -rn TODO`)."),
]

checks = 0


def check(ok, what):
    global checks
    if not ok:
        print(f"FAIL  {what}", flush=True)
        sys.exit(1)
    checks += 1
    print(f"ok    {what}", flush=True)


def text_of(result):
    return result.content[0].text if result.content else ""


async def session(exe, db, mode, stdout_copy):
    problems = []

    async def on_message(message):
        # The SDK hands lines it could not parse as JSON-RPC to this handler as exceptions.
        if isinstance(message, Exception):
            problems.append(repr(message))

    server = StdioServerParameters(
        command="/bin/sh",
        args=["-c", '"$0" --db "$1" | tee "$2"', exe, db, stdout_copy],
    )
    started = time.monotonic()
    async with Client(server, mode=mode, message_handler=on_message, read_timeout_seconds=30) as c:
        took = time.monotonic() - started
        check(took < 3, f"{mode} mode connected in {took:.2f} s")
        check(c.protocol_version == "2025-11-25", f"negotiated protocol {c.protocol_version}")
        check(c.server_info is not None and c.server_info.name == "orch-mcp", f"server {c.server_info}")
        check(c.server_capabilities.tools is not None, "server declares tools")

        await c.send_ping()
        check(True, "ping")

        listed = (await c.list_tools()).tools
        check([t.name for t in listed] == TOOLS, f"tools/list: {[t.name for t in listed]}")
        by_name = {t.name: t for t in listed}
        for name in TOOLS:
            t = by_name[name]
            check(t.output_schema is not None and t.input_schema["type"] == "object", f"{name} has input and output schemas")
            read_only = bool(t.annotations and t.annotations.read_only_hint)
            check(read_only == (name in ("queue_status", "batch_status")), f"{name} readOnlyHint={read_only}")

        ids = []
        for n, (agent, description, task) in enumerate(TASKS, start=1):
            r = await c.call_tool("queue_parallel_task", {"agent": agent, "task": task, "description": description})
            sc = r.structured_content
            check(not r.is_error and sc["ready"] == n, f"queue_parallel_task -> task {sc['task']}, {sc['ready']} ready")
            ids.append(sc["task"])

        r = await c.call_tool("queue_status", {})
        sc = r.structured_content
        check(not r.is_error and sc["ready"] == 3 and [t["id"] for t in sc["ready_tasks"]] == ids, f"queue_status: {sc['ready']} ready")

        r = await c.call_tool("execute_parallel_batch", {})
        sc = r.structured_content
        check(not r.is_error and sc["tasks"] == ids and sc["tool"] == "Agent", f"execute_parallel_batch -> batch {sc['batch']}, tasks {sc['tasks']}")
        calls = sc["calls"]
        for call, task_id, (agent, description, task) in zip(calls, ids, TASKS):
            check(
                call["prompt"] == f"{task}\n\norch-task: {task_id}"
                and call["subagent_type"] == agent
                and call["description"] == description,
                f"the call for task {task_id} carries its prompt exactly",
            )
        check(text_of(r).startswith("Launch 3 agents in parallel"), "the message opens with the launch instruction")
        check(json.dumps(calls, indent=2, ensure_ascii=False) in text_of(r), "the message holds the same calls as JSON")

        r = await c.call_tool("batch_status", {"batch": sc["batch"]})
        statuses = [t["status"] for t in r.structured_content["tasks"]]
        check(not r.is_error and statuses == ["batched"] * 3, f"batch_status: {statuses}")

        r = await c.call_tool("execute_parallel_batch", {})
        check(r.is_error and "Nothing to launch" in text_of(r), f"nothing left -> isError: {text_of(r)!r}")

        try:
            await c.call_tool("no_such_tool", {})
            check(False, "an unknown tool was accepted")
        except MCPError as e:
            check(e.code == -32602, f"unknown tool -> error {e.code}: {e.message}")

        r = await c.call_tool("queue_parallel_task", {"agent": "Explore"})
        check(r.is_error and "missing field `task`" in text_of(r), f"missing argument -> isError: {text_of(r)!r}")

        r = await c.call_tool("batch_status", {"batch": 999})
        check(r.is_error and "batch 999 not found" in text_of(r), f"unknown batch -> isError: {text_of(r)!r}")

    check(not problems, f"the SDK parsed every line the server wrote ({problems or 'no problems'})")
    with open(stdout_copy, encoding="utf-8") as f:
        lines = f.read().splitlines()
    bad = [line for line in lines if not is_jsonrpc(line)]
    check(lines and not bad, f"stdout carried {len(lines)} lines, all JSON-RPC messages (bad: {bad[:3]})")
    if mode == "auto":
        first = json.loads(lines[0])
        check(first.get("error", {}).get("code") == -32601, f"the server/discover probe was answered -32601 at once: {lines[0]}")


def is_jsonrpc(line):
    try:
        msg = json.loads(line)
    except ValueError:
        return False
    return isinstance(msg, dict) and msg.get("jsonrpc") == "2.0" and "id" in msg and ("result" in msg or "error" in msg)


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in ("legacy", "auto"):
        sys.exit(__doc__)
    exe, db, mode = sys.argv[1:]
    print(f"mcp {importlib.metadata.version('mcp')} (Python {sys.version.split()[0]}), mode {mode}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        anyio.run(session, exe, db, mode, os.path.join(tmp, "stdout"))
    print(f"{checks} checks passed", flush=True)


if __name__ == "__main__":
    main()
