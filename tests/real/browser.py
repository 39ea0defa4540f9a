#!/usr/bin/env python3
"""Opens a page in headless Chromium through the DevTools protocol over
--remote-debugging-pipe (Python's standard library only), takes a screenshot
and prints what the page did as JSON: console messages, exceptions, log
entries, every network request, and facts read from its DOM (the rows of an
orch page, each bar's row, attempt, outcome, position and title, the labels
and cells, the scripts in it).
usage: browser.py URL OUT.png"""
import json, os, subprocess, sys, tempfile, time, base64

url, png = sys.argv[1], sys.argv[2]
prof = tempfile.mkdtemp(prefix="orch-chromium-")
# fd 3: we write commands, chromium reads; fd 4: chromium writes replies/events, we read. Messages are JSON + b"\0".
c_in_r, c_in_w = os.pipe()    # chromium's fd 3
c_out_r, c_out_w = os.pipe()  # chromium's fd 4
def child_fds():  # runs in the child: put the pipe ends on fds 3 and 4 (dup first: they may already be 3..6)
    a, b = os.dup(c_in_r), os.dup(c_out_w)
    os.dup2(a, 3); os.dup2(b, 4)
proc = subprocess.Popen(
    ["/usr/lib/chromium/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
     "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
     "--disable-component-update", "--disable-sync", "--disable-extensions", "--mute-audio",
     "--hide-scrollbars", "--window-size=800,600", f"--user-data-dir={prof}",
     "--remote-debugging-pipe", "about:blank"],
    preexec_fn=child_fds, pass_fds=(3, 4), stdin=subprocess.DEVNULL,
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
os.close(c_in_r); os.close(c_out_w)
wfd, rf = c_in_w, os.fdopen(c_out_r, "rb", buffering=0)
buf, nid, events = b"", 0, []

def read_msg():
    global buf
    while b"\0" not in buf:
        chunk = rf.read(65536)
        if not chunk: raise EOFError("chromium closed the pipe")
        buf += chunk
    msg, buf = buf.split(b"\0", 1)
    return json.loads(msg)

def send(method, params=None, session=None):
    global nid
    nid += 1
    m = {"id": nid, "method": method, "params": params or {}}
    if session: m["sessionId"] = session
    os.write(wfd, json.dumps(m).encode() + b"\0")
    while True:
        r = read_msg()
        if r.get("id") == nid:
            if "error" in r: raise RuntimeError(f"{method}: {r['error']}")
            return r["result"]
        events.append(r)

def pump(seconds):
    import select
    end = time.time() + seconds
    while time.time() < end:
        if b"\0" in buf or select.select([rf], [], [], max(0, end - time.time()))[0]:
            events.append(read_msg())

t0 = time.time()
tid = send("Target.createTarget", {"url": "about:blank"})["targetId"]
sid = send("Target.attachToTarget", {"targetId": tid, "flatten": True})["sessionId"]
for d in ("Page", "Runtime", "Log", "Network"):
    send(f"{d}.enable", session=sid)
send("Page.navigate", {"url": url}, session=sid)
# wait for load, then a grace period for timers
loaded = False
while not loaded:
    ev = read_msg(); events.append(ev)
    loaded = ev.get("method") == "Page.loadEventFired"
pump(1.0)
shot = send("Page.captureScreenshot", {"format": "png"}, session=sid)
open(png, "wb").write(base64.b64decode(shot["data"]))
QUERY = """JSON.stringify({
  rows: document.querySelectorAll('#timeline .row').length,
  bars: Array.from(document.querySelectorAll('#timeline .bar')).map(b => ({row: Number(b.closest('.row').dataset.row), attempt: Number(b.dataset.attempt || 0), outcome: b.classList[1], left: b.getBoundingClientRect().left, right: b.getBoundingClientRect().right, title: b.title})),
  labels: Array.from(document.querySelectorAll('#timeline .label')).map(l => l.textContent),
  cells: Array.from(document.querySelectorAll('table td')).map(c => c.textContent),
  scripts: document.scripts.length,
  verdict: document.getElementById('verdict').textContent,
  speedup: document.getElementById('speedup').textContent,
  events: document.querySelectorAll('#events tr').length - 1,
  height: document.documentElement.scrollHeight,
  html: document.documentElement.outerHTML.length
})"""
dom = json.loads(send("Runtime.evaluate", {"expression": QUERY, "returnByValue": True}, session=sid)["result"]["value"])
# Printed on A4: how many sheets (each page object of the PDF is "/Type /Page").
import re
def sheets():
    pdf = base64.b64decode(send("Page.printToPDF", {"paperWidth": 8.27, "paperHeight": 11.69}, session=sid)["data"])
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))
dom["printed_pages"] = sheets()
# The run (verdict, timeline, table) without its events, which start a new sheet.
send("Runtime.evaluate", {"expression": "document.querySelectorAll('h2.events, #events').forEach(e => e.remove())"}, session=sid)
dom["printed_pages_before_events"] = sheets()
try: send("Browser.close")
except EOFError: pass
proc.wait(timeout=10)
import shutil; shutil.rmtree(prof, ignore_errors=True)

def text(args): return " ".join(str(a.get("value", a.get("description", ""))) for a in args)
out = {
  "seconds": round(time.time() - t0, 2),
  "console": [{"type": e["params"]["type"], "text": text(e["params"]["args"])} for e in events if e.get("method") == "Runtime.consoleAPICalled"],
  "exceptions": [e["params"]["exceptionDetails"].get("exception", {}).get("description", e["params"]["exceptionDetails"]["text"]) for e in events if e.get("method") == "Runtime.exceptionThrown"],
  "log": [{"level": e["params"]["entry"]["level"], "source": e["params"]["entry"]["source"], "text": e["params"]["entry"]["text"], "url": e["params"]["entry"].get("url")} for e in events if e.get("method") == "Log.entryAdded"],
  "requests": [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"],
  "responses": [(e["params"]["response"]["url"], e["params"]["response"]["status"]) for e in events if e.get("method") == "Network.responseReceived"],
  "failed": [e["params"]["errorText"] for e in events if e.get("method") == "Network.loadingFailed"],
  "dom": dom,
}
print(json.dumps(out, indent=1))
errs = [c for c in out["console"] if c["type"] in ("error", "assert")] + out["exceptions"] + out["failed"] + [l for l in out["log"] if l["level"] == "error"]
sys.exit(1 if errs else 0)
