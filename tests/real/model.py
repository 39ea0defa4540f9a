#!/usr/bin/env python3
"""A scripted model: a Messages API server for the real-Claude-Code tier.

It plays the model that Claude Code talks to (ANTHROPIC_BASE_URL), bound to
127.0.0.1 on a free port that it prints as its first line on stdout. Every
request is appended to the log (JSON Lines) with its answer, before the answer
is sent, so tests can assert on what Claude Code sent. The answer depends only
on the request (the model keeps no state): who is asking (the main loop, a
sub-agent) and what the conversation holds so far. See docs/development.md.

usage: model.py --scenario NAME --log FILE [--delay SECS]
"""

import argparse
import http.server
import json
import re
import threading
import time

ARGS = None
LOG_LOCK = threading.Lock()
COUNTER = [0]
COUNTER_LOCK = threading.Lock()


def next_id(prefix):
    with COUNTER_LOCK:
        COUNTER[0] += 1
        return f"{prefix}_{COUNTER[0]:04d}"


# --- reading the request ------------------------------------------------------

def texts(content):
    """Every text in a message content (strings, text blocks, tool results)."""
    if isinstance(content, str):
        yield content
        return
    for block in content or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            yield block.get("text", "")
        elif block.get("type") == "tool_result":
            yield from texts(block.get("content"))


def first_user_text(body):
    """The first user turn's own text (Claude Code's <system-reminder> blocks left out)."""
    for m in body.get("messages", []):
        if m.get("role") == "user":
            parts = [t for t in texts(m.get("content")) if not t.lstrip().startswith("<system-reminder>")]
            return "\n".join(parts)
    return ""


def first_user_all(body):
    """The first user turn's whole text, <system-reminder> blocks included
    (a workflow's agent gets its prompt inside such a framing)."""
    for m in body.get("messages", []):
        if m.get("role") == "user":
            return "\n".join(texts(m.get("content")))
    return ""


def all_text(body):
    return "\n".join(t for m in body.get("messages", []) for t in texts(m.get("content")))


def tool_names(body):
    return [t.get("name", "") for t in body.get("tools", []) or []]


def tool_uses(body):
    """Every tool_use block the model (this script) already sent in this conversation."""
    out = []
    for m in body.get("messages", []):
        if m.get("role") == "assistant" and isinstance(m.get("content"), list):
            out += [b for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_use"]
    return out


def tool_results(body):
    out = []
    for m in body.get("messages", []):
        if m.get("role") == "user" and isinstance(m.get("content"), list):
            out += [b for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]
    return out


DECODER = json.JSONDecoder()


def agent_calls(text):
    """The last JSON array of Agent inputs in `text` (orch's message), or []."""
    found = []
    for m in re.finditer(r"\[\s*\{", text):
        try:
            value, _ = DECODER.raw_decode(text, m.start())
        except ValueError:
            continue
        if isinstance(value, list) and value and all(
            isinstance(c, dict) and isinstance(c.get("prompt"), str) for c in value
        ):
            found = value
    return found


# A line a sub-agent runs through Bash: the probe command orch-verify's message
# names, or any `run: COMMAND` line a test puts in a task's prompt.
COMMAND = re.compile(r"^(?:run: )?((?:orch-verify probe |orch-queue )[^\n]+)$", re.M)
TASK = re.compile(r"^orch-task: (\d+)$", re.M)
# The same line inside a framing that may not keep it on a line of its own.
TASK_ANY = re.compile(r"orch-task: (\d+)")


def is_subagent(body):
    """Claude Code marks a sub-agent's requests in the first system block."""
    system = body.get("system")
    return "cc_is_subagent=true" in json.dumps(system if system is not None else "")


def who(body):
    """main (a session's own loop), probe (a sub-agent told to run a command),
    agent (a sub-agent given an orch task), or other."""
    first = first_user_text(body)
    if not is_subagent(body):
        if "Agent" in tool_names(body):
            return "main"
        # A workflow's agent has neither Agent nor Workflow among its tools.
        return "agent" if TASK_ANY.search(first_user_all(body)) else "other"
    if COMMAND.search(first):
        return "probe"
    if TASK.search(first) or TASK_ANY.search(first_user_all(body)):
        return "agent"
    return "other"


# --- answers ------------------------------------------------------------------

def text_answer(text):
    return [{"type": "text", "text": text}], "end_turn"


def tool_answer(calls):
    blocks = [{"type": "tool_use", "id": next_id("toolu"), "name": name, "input": inp} for name, inp in calls]
    return blocks, "tool_use"


def finished_calls(body):
    """The tool_use ids of Agent calls whose agent has finished: a result that
    is not a background launch, or a <task-notification> naming the call."""
    done = set()
    for r in tool_results(body):
        text = "\n".join(texts(r.get("content")))
        if not text.startswith("Async agent launched"):
            done.add(r.get("tool_use_id"))
    done.update(re.findall(r"<tool-use-id>([^<]+)</tool-use-id>", all_text(body)))
    return done


def launch(body, calls):
    """Launches the Agent calls orch handed over that are not launched yet: all
    in one message (obedient) or one per turn, each after the last finished."""
    uses = [u for u in tool_uses(body) if u.get("name") in ("Agent", "Task")]
    issued = {u["input"].get("prompt") for u in uses}
    pending = [c for c in calls if c.get("prompt") not in issued]
    if not pending:
        return None
    if ARGS.scenario == "one-by-one":
        if not {u["id"] for u in uses} <= finished_calls(body):
            return text_answer("Waiting for the agent to finish.")
        pending = pending[:1]
    if ARGS.scenario == "foreground":
        pending = [{**c, "run_in_background": False} for c in pending]
    return tool_answer([("Agent", c) for c in pending])


MCP_QUEUE = "mcp__orch__queue_parallel_task"
MCP_EXECUTE = "mcp__orch__execute_parallel_batch"


def mcp(body):
    """Uses orch-mcp: queues three tasks in one message, then executes the batch."""
    used = [u.get("name") for u in tool_uses(body)]
    if MCP_QUEUE not in tool_names(body) and "ToolSearch" not in used:
        # Claude Code defers MCP tools: load their schemas first, as a model would.
        return tool_answer([("ToolSearch", {"query": f"select:{MCP_QUEUE},{MCP_EXECUTE}", "max_results": 5})])
    if MCP_QUEUE not in used:
        # A prompt line `queue-with: {JSON}` adds its keys to every queue call.
        extra = re.search(r"^queue-with: (\{.*\})$", first_user_text(body), re.M)
        extra = json.loads(extra.group(1)) if extra else {}
        return tool_answer([
            (MCP_QUEUE, {"agent": "general-purpose", "task": f"mcp task {i}", "description": f"mcp task {i}", **extra})
            for i in (1, 2, 3)
        ])
    if MCP_EXECUTE not in used:
        return tool_answer([(MCP_EXECUTE, {})])
    return None


BAD_SCRIPT = "export const meta = { name: 'bad', description: 'TypeScript' }\nconst a: string = 'x'\n"


def workflow(body):
    """Calls the Workflow tool: a rejected script first when the prompt has
    `workflow-bad: yes`, then the script in the file a `workflow-file: PATH`
    line names, or the named workflow of a `workflow-name: NAME` line; then
    waits for the workflow's <task-notification>."""
    first = first_user_text(body)
    calls = [u for u in tool_uses(body) if u.get("name") == "Workflow"]
    bad = re.search(r"^workflow-bad: yes$", first, re.M) is not None
    if bad and not calls:
        return tool_answer([("Workflow", {"script": BAD_SCRIPT})])
    if len(calls) < (2 if bad else 1):
        path = re.search(r"^workflow-file: (.+)$", first, re.M)
        if path:
            with open(path.group(1)) as f:
                return tool_answer([("Workflow", {"script": f.read()})])
        name = re.search(r"^workflow-name: (.+)$", first, re.M)
        if name:
            return tool_answer([("Workflow", {"name": name.group(1)})])
    if "<task-notification>" in all_text(body):
        return text_answer("The workflow finished.")
    return text_answer("Waiting for the workflow.")


def main_loop(body):
    """A session's own loop: launches the Agent calls orch handed it (in the
    prompt, a hook's context, a blocked stop, a tool result); with nothing to
    launch, answers with the first line of the prompt."""
    if ARGS.scenario == "mcp":
        step = mcp(body)
        if step:
            return step
    if ARGS.scenario == "workflow":
        return workflow(body)
    command = COMMAND.search(first_user_text(body))
    if command and not any(u.get("name") == "Bash" for u in tool_uses(body)):
        return tool_answer([("Bash", {"command": command.group(1), "description": "Run the command the prompt names"})])
    calls = agent_calls(all_text(body))
    step = launch(body, calls) if calls else None
    if step:
        return step
    if calls:
        return text_answer("All agents finished.")
    first = first_user_text(body).strip().splitlines() or [""]
    return text_answer(f"done: {first[0]}")


def probe(body):
    """A sub-agent told to run a command: runs it through Bash, once, after the delay."""
    if tool_results(body):
        return text_answer("command finished")
    time.sleep(ARGS.delay)
    cmd = COMMAND.search(first_user_text(body)).group(1)
    return tool_answer([("Bash", {"command": cmd, "description": "Run the command the task names"})])


def agent(body):
    """A sub-agent given an orch task: answers after the delay."""
    time.sleep(ARGS.delay)
    found = TASK.search(first_user_text(body))
    task = found.group(1) if found else TASK_ANY.findall(first_user_all(body))[-1]
    return text_answer(f"finished task {task}")


def answer(body):
    role = who(body)
    if role == "main":
        return role, main_loop(body)
    if role == "probe":
        return role, probe(body)
    if role == "agent":
        return role, agent(body)
    return role, text_answer("ok")


# --- the wire -----------------------------------------------------------------

def message(body, content, stop):
    return {
        "id": next_id("msg"), "type": "message", "role": "assistant",
        "model": body.get("model", "scripted"), "content": content,
        "stop_reason": stop, "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }


def sse(msg):
    events = [("message_start", {"type": "message_start", "message": {**msg, "content": [], "stop_reason": None}})]
    for i, block in enumerate(msg["content"]):
        if block["type"] == "text":
            events += [
                ("content_block_start", {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}),
                ("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": block["text"]}}),
            ]
        else:
            events += [
                ("content_block_start", {"type": "content_block_start", "index": i, "content_block": {**block, "input": {}}}),
                ("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}}),
            ]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    events += [
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None}, "usage": {"output_tokens": 5}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    return "".join(f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in events).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.handle_any()

    def do_POST(self):
        self.handle_any()

    def do_HEAD(self):
        self.handle_any()

    def reply(self, code, ctype, data):
        self.send_response(code)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def handle_any(self):
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?")[0]
        entry = {"t": time.time(), "method": self.command, "path": path, "headers": dict(self.headers)}
        role, content, stop = None, None, None
        failure = None
        if path == "/v1/messages" and isinstance(body, dict):
            role, (content, stop) = answer(body)
            failure = re.search(r"^model-error: (\d{3})$", first_user_text(body), re.M)
        entry.update({"role": role, "body": body, "answer": content, "stop": stop})
        with LOG_LOCK:
            with open(ARGS.log, "a") as f:
                f.write(json.dumps(entry) + "\n")
        if failure:
            code = int(failure.group(1))
            # The error type the real API gives with each status.
            kind = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error",
                    529: "overloaded_error"}.get(code, "invalid_request_error")
            error = {"type": "error", "error": {"type": kind, "message": f"scripted failure {code}"}}
            self.reply(code, "application/json", json.dumps(error).encode())
        elif content is not None:
            msg = message(body, content, stop)
            if body.get("stream") and re.search(r"^model-stream: broken$", first_user_text(body), re.M):
                # A stream cut after its first event (Claude Code retries without streaming).
                data = sse(msg)
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                self.wfile.write(data[: data.index(b"\n\n") + 2])
                self.wfile.flush()
                self.close_connection = True
            elif body.get("stream"):
                self.reply(200, "text/event-stream", sse(msg))
            else:
                self.reply(200, "application/json", json.dumps(msg).encode())
        elif path == "/v1/messages/count_tokens":
            self.reply(200, "application/json", b'{"input_tokens": 100}')
        else:
            self.reply(404, "application/json",
                       b'{"type":"error","error":{"type":"not_found_error","message":"not scripted"}}')


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--scenario", required=True, choices=["obedient", "one-by-one", "foreground", "mcp", "workflow"])
    p.add_argument("--log", required=True)
    p.add_argument("--delay", type=float, default=2.0)
    ARGS = p.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
