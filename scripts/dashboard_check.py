"""Drive headless Chromium over the DevTools protocol (--remote-debugging-pipe: JSON messages
separated by NUL on file descriptors 3 and 4, no extra package) against a running
`spillway serve` while load runs: the dashboard must show the regions of both geographies,
the figures it displays must change, a spill flow must be drawn, and a screenshot is saved.

Usage: dashboard_check.py CHROMIUM API_ADDR ADMIN_ADDR SCREENSHOT.png
"""
import base64, json, os, subprocess, sys, tempfile, threading, time, urllib.request

chromium, api, admin, shot = sys.argv[1:5]
KEY = "spillway-demo-key"  # the embedded default's documented demo key (loopback only)
PROFILE = "us.demo.chat-small-v1:0"
stop = threading.Event()
sent = {"ok": 0, "other": 0}


def load(stream):
    body = json.dumps({"model": PROFILE, "max_tokens": 80, "stream": stream,
                       "messages": [{"role": "user", "content": "hello"}]}).encode()
    while not stop.is_set():
        req = urllib.request.Request(f"http://{api}/v1/chat/completions", data=body, headers={
            "authorization": f"Bearer {KEY}", "content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                r.read()
                sent["ok"] += 1
        except Exception:
            sent["other"] += 1
            time.sleep(0.05)


class Browser:
    def __init__(self):
        self.profile = tempfile.mkdtemp()
        r_cmd, w_cmd = os.pipe()   # we write commands, Chromium reads fd 3
        r_out, w_out = os.pipe()   # Chromium writes fd 4, we read
        def fds():  # in the child: the pipe ends onto 3 and 4, whatever numbers they had
            a, b = os.dup(r_cmd), os.dup(w_out)
            os.dup2(a, 3)
            os.dup2(b, 4)
        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--hide-scrollbars", "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
             "--window-size=1280,1000", "about:blank"],
            preexec_fn=fds, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(r_cmd)
        os.close(w_out)
        self.w, self.r = os.fdopen(w_cmd, "wb"), os.fdopen(r_out, "rb")
        self.next_id, self.buf, self.session = 0, b"", None

    def call(self, method, params=None, timeout=30):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        self.w.write(json.dumps(msg).encode() + b"\0")
        self.w.flush()
        deadline = time.time() + timeout
        while time.time() < deadline:
            while b"\0" not in self.buf:
                chunk = os.read(self.r.fileno(), 1 << 16)
                if not chunk:
                    sys.exit("dashboard_check: Chromium closed its pipe")
                self.buf += chunk
            raw, self.buf = self.buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    sys.exit(f"dashboard_check: {method} failed: {reply['error']}")
                return reply["result"]
        sys.exit(f"dashboard_check: no answer to {method}")

    def open(self, url):
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False})
        self.call("Page.navigate", {"url": url})

    def eval(self, expr):
        res = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True})
        return res["result"].get("value")

    def close(self):
        self.proc.kill()
        self.proc.wait()


def wait_for(browser, what, expr, deadline_s=20):
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        v = browser.eval(expr)
        if v:
            return v
        time.sleep(0.2)
    sys.exit(f"dashboard_check: timed out waiting for {what}")


threads = [threading.Thread(target=load, args=(i % 4 == 0,), daemon=True) for i in range(40)]
for t in threads:
    t.start()
browser = Browser()
fail = []
try:
    browser.open(f"http://{admin}/dashboard")
    regions = wait_for(browser, "the region cards",
                       "(() => { const r = [...document.querySelectorAll('[data-region]')]"
                       ".map(e => e.dataset.region); return r.length ? r : null })()")
    print(f"  regions shown: {regions}")
    for want in ["us-east-1", "us-east-2", "us-west-2", "eu-central-1", "eu-west-1", "eu-west-3"]:
        if want not in regions:
            fail.append(f"region {want} not shown")
    first = browser.eval("document.getElementById('kpis').innerText")
    n0 = int(browser.eval("document.body.dataset.snapshots || '0'"))
    flows = wait_for(browser, "a spill flow drawn (us-east-1 → another us region)",
                     "(() => { const f = [...document.querySelectorAll('[data-flow]')]"
                     ".map(e => e.dataset.flow); return f.length ? f : null })()")
    print(f"  live flows drawn: {flows}")
    if not any(f.startswith("us-east-1>us-") for f in flows):
        fail.append(f"no flow out of us-east-1 inside us: {flows}")
    later = wait_for(browser, "the displayed figures to change",
                     f"(() => {{ const t = document.getElementById('kpis').innerText;"
                     f" return t !== {json.dumps(first)} && +document.body.dataset.snapshots > {n0 + 2} ? t : null }})()")
    n1 = int(browser.eval("document.body.dataset.snapshots"))
    print(f"  snapshots drawn: {n0} then {n1}; totals went from {first!r} to {later!r}")
    status = browser.eval("document.getElementById('conn').textContent")
    if status != "live":
        fail.append(f"connection status is {status!r}, not live")
    # A few more seconds of load, so that the traffic chart in the screenshot has a history.
    wait_for(browser, "ten snapshots drawn", "+document.body.dataset.snapshots >= 10", 30)
    height = browser.eval("Math.ceil(document.documentElement.scrollHeight)")
    browser.call("Emulation.setDeviceMetricsOverride",
                 {"width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": False})
    time.sleep(0.3)
    png = browser.call("Page.captureScreenshot", {"format": "png"})["data"]
    with open(shot, "wb") as f:
        f.write(base64.b64decode(png))
    print(f"  screenshot: {shot} (1280x{height})")
    # A narrow window: no horizontal scrolling of the page itself.
    browser.call("Emulation.setDeviceMetricsOverride",
                 {"width": 380, "height": 800, "deviceScaleFactor": 1, "mobile": True})
    time.sleep(1.5)
    overflow = browser.eval("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    print(f"  at 380 px wide the page overflows by {overflow} px")
    if overflow > 2:
        fail.append(f"at 380 px the page scrolls sideways by {overflow} px")
finally:
    stop.set()
    browser.close()
print(f"  load: {sent['ok']} answers, {sent['other']} refusals or errors")
if sent["ok"] == 0:
    fail.append("the load got no answers")
if fail:
    print("dashboard_check: FAILED\n  " + "\n  ".join(fail))
    sys.exit(1)
print("dashboard_check: the dashboard shows the regions and follows the load live")
