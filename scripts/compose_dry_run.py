#!/usr/bin/env python3
"""The Docker Compose deployment (deploy/compose.yaml) tried without Docker.

Reads deploy/compose.yaml and starts what it describes as plain processes on free loopback
ports: a redis-server, each `spillway sim` service with its own command line, and each gateway
with its own mounted config file (deploy/compose/<region>.toml). The only rewrites are
addresses: the simulators' `http://sim-<region>:9100/v1` become the free ports they got, and
the gateways' API and admin listeners (0.0.0.0:8080 and 0.0.0.0:9090) become 127.0.0.1:0.

Then, through the OpenAI chat completions API:
  * every regional gateway serves a request, audited with itself as the source region;
  * a burst at one region beyond its deployment's max_in_flight (4) but within the
    geography's (3 x 4) is served in full, spilling to the other regions, and no request is
    served outside the `us` geography's regions;
  * every gateway is ready (/readyz 200: Redis reachable) and Redis holds the deployment's
    keys (the `key_prefix` of the configs), so the shared state is used;
  * SIGHUP reloads a gateway's edited config file (what the systemd unit's ExecReload sends);
  * SIGTERM stops every gateway with exit status 0.

Usage: compose_dry_run.py [--bin PATH]   (default $SPILLWAY_BIN, else target/debug/spillway)
Needs redis-server on PATH and PyYAML. Exits 0 when every check passed.
"""

import argparse
import concurrent.futures
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "deploy" / "compose.yaml"
MODEL = "us.example.chat-v1:0"
GEOGRAPHY = {"us-east-1", "us-east-2", "us-west-2"}
DEADLINE_S = 30


def fail(msg):
    print(f"compose_dry_run: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def wait_for(what, cond, deadline_s=DEADLINE_S):
    """Poll cond() until it returns a truthy value or the deadline passes."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    fail(f"timed out waiting for {what}")


class Procs:
    """Child processes, each logging to a file; all stopped on exit."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = []

    def start(self, name, argv, env=None):
        with open(self.workdir / f"{name}.out", "wb") as out, \
                open(self.workdir / f"{name}.err", "wb") as err:
            # The child keeps its own copies of the descriptors.
            proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env,
                                    stdin=subprocess.DEVNULL)
        self.procs.append((name, proc))
        return proc

    def log(self, name, stream="err"):
        return (self.workdir / f"{name}.{stream}").read_text(errors="replace")

    def stop_all(self):
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_cmd(port, *args):
    """One RESP command to Redis; returns the raw reply bytes."""
    payload = f"*{len(args)}\r\n".encode()
    for a in args:
        b = str(a).encode()
        payload += b"$%d\r\n%s\r\n" % (len(b), b)
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(payload)
        s.settimeout(2)
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def start_redis(procs):
    """redis-server on a free port, retried when another process takes the port first."""
    for attempt in range(5):
        port = free_port()
        name = f"redis-{attempt}"
        proc = procs.start(name, ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no"])

        def up(proc=proc, port=port):
            if proc.poll() is not None:
                return "exited"
            try:
                return redis_cmd(port, "PING").startswith(b"+PONG")
            except OSError:
                return False

        if wait_for("redis-server", up) is True:
            return port
    fail("redis-server did not start on a free port in 5 attempts")


def listening(procs, name, proc, pattern):
    def found():
        if proc.poll() is not None:
            fail(f"{name} exited ({proc.returncode}):\n{procs.log(name)}{procs.log(name, 'out')}")
        m = re.search(pattern, procs.log(name) + procs.log(name, "out"))
        return m.group(1) if m else None

    return wait_for(f"{name} to listen", found)


def sim_argv(bin_path, command):
    """The compose service's `sim` command with its listener moved to a free loopback port."""
    argv = [bin_path] + list(command)
    for flag, value in (("--host", "127.0.0.1"), ("--port", "0")):
        argv[argv.index(flag) + 1] = value
    return argv


def http(method, url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def chat(api, key, max_tokens):
    body = {"model": MODEL, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "Say hello from the dry run."}]}
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    return http("POST", f"http://{api}/v1/chat/completions", body, headers)


def audit_records(procs, name):
    records = []
    for line in procs.log(name, "out").splitlines():
        line = line.strip()
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def start_stack(procs, bin_path, workdir, compose):
    services = compose["services"]
    redis_port = start_redis(procs)
    print(f"compose_dry_run: redis-server on 127.0.0.1:{redis_port}")
    sims = {}
    for name, svc in services.items():
        if svc.get("command", [None])[0] == "sim":
            proc = procs.start(name, sim_argv(bin_path, svc["command"]))
            addr = listening(procs, name, proc, r"listening on http://(\S+)")
            sims[name] = addr
            print(f"compose_dry_run: {name} on {addr}")
    key = secrets.token_hex(16)
    gateways = {}
    for name, svc in services.items():
        if svc.get("command", [None])[0] != "serve":
            continue
        host_path, _, _ = svc["volumes"][0].partition(":")
        config = (COMPOSE.parent / host_path).resolve()
        text = config.read_text()
        for sim, addr in sims.items():
            text = text.replace(f"http://{sim}:9100/", f"http://{addr}/")
        for bind in ('"0.0.0.0:8080"', '"0.0.0.0:9090"'):
            if bind not in text:
                fail(f"{config} has no {bind} listener to move to a free port")
            text = text.replace(bind, '"127.0.0.1:0"')
        if "sim-" in text.replace("spillway sim", ""):
            fail(f"{config} names a simulator that compose.yaml does not run")
        local = workdir / config.name
        local.write_text(text)
        env = dict(os.environ, NO_COLOR="1", SPILLWAY_LOG="warn")
        env.update({k: str(v) for k, v in svc["environment"].items()})
        env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}"
        env["SPILLWAY_DEMO_KEY"] = key
        argv = [bin_path, "serve", "--config", str(local)]
        proc = procs.start(name, argv, env)
        region = re.search(r'region = "([^"]+)"\s*$', text).group(1)
        api = listening(procs, name, proc, rf"listening on http://(\S+) as {re.escape(region)}\b")
        admin = listening(procs, name, proc, r"admin on http://(\S+)")
        gateways[name] = {"proc": proc, "api": api, "admin": admin, "region": region,
                          "config": local}
        print(f"compose_dry_run: {name} ({config.relative_to(ROOT)}) api {api} admin {admin}")
    if len(gateways) != 3 or len(sims) != 3:
        fail(f"expected 3 gateways and 3 simulators in {COMPOSE}, got {len(gateways)} and {len(sims)}")
    return redis_port, key, gateways


def serving_region(record):
    """The audit record names the inference region only when it is not the source region."""
    return record.get("inferenceRegion") or record["sourceRegion"]


def check_each_serves(procs, key, gateways):
    for name, gw in gateways.items():
        status, body = chat(gw["api"], key, 8)
        if status != 200:
            fail(f"{name}: chat completion answered {status}: {body[:300]!r}")
        reply = json.loads(body)
        if not reply["choices"][0]["message"]["content"]:
            fail(f"{name}: empty completion")
        recs = wait_for(f"{name}'s audit record", lambda name=name: audit_records(procs, name))
        if recs[-1]["sourceRegion"] != gw["region"] or recs[-1]["outcome"] != "ok":
            fail(f"{name}: audit record {recs[-1]}")
        print(f"compose_dry_run: {name}: 200, source {gw['region']}, "
              f"served in {serving_region(recs[-1])}")


def check_spill(procs, key, gw_name, gw, burst):
    with concurrent.futures.ThreadPoolExecutor(max_workers=burst) as pool:
        results = list(pool.map(lambda _: chat(gw["api"], key, 48), range(burst)))
    codes = sorted(status for status, _ in results)
    if any(c != 200 for c in codes):
        fail(f"burst at {gw_name}: statuses {codes}")
    recs = wait_for(f"{burst + 1} audit records of {gw_name}",
                    lambda: (r := audit_records(procs, gw_name)) and len(r) >= burst + 1 and r)
    served = {}
    for r in recs[-burst:]:
        region = serving_region(r)
        served[region] = served.get(region, 0) + 1
    outside = set(served) - GEOGRAPHY
    if outside:
        fail(f"burst at {gw_name}: served outside the us geography: {served}")
    spilled = burst - served.get(gw["region"], 0)
    if spilled == 0:
        fail(f"burst of {burst} at {gw_name} did not spill: {served}")
    print(f"compose_dry_run: burst of {burst} at {gw['region']}: served {served} "
          f"({spilled} spilled, none outside the geography)")


def check_shared_state(redis_port, gateways):
    for name, gw in gateways.items():
        status, body = http("GET", f"http://{gw['admin']}/readyz")
        if status != 200:
            fail(f"{name}: /readyz {status} {body!r}")
    reply = redis_cmd(redis_port, "KEYS", "spillway-compose*").decode(errors="replace")
    keys = [line for line in reply.split("\r\n") if line.startswith("spillway-compose")]
    if not keys:
        fail(f"no spillway-compose keys in Redis: {reply!r}")
    print(f"compose_dry_run: every gateway ready; Redis holds {len(keys)} spillway-compose keys, "
          f"e.g. {sorted(keys)[:3]}")


def check_reload(procs, name, gw):
    """SIGHUP (systemd's ExecReload, `kill -HUP`) reloads the edited config file."""
    text = gw["config"].read_text()
    if "max_in_flight = 4" not in text:
        fail(f"{gw['config']} has no max_in_flight = 4 to change")
    gw["config"].write_text(text.replace("max_in_flight = 4", "max_in_flight = 5"))
    gw["proc"].send_signal(signal.SIGHUP)
    line = wait_for(f"{name} to reload on SIGHUP",
                    lambda: re.search(r"^spillway: (?:the configuration was not )?reload.*$",
                                      procs.log(name), re.MULTILINE))
    if "not reloaded" in line.group(0):
        fail(f"{name}: {line.group(0)}")
    print(f"compose_dry_run: SIGHUP to {name}: {line.group(0)}")


def stop_gateways(gateways):
    for gw in gateways.values():
        gw["proc"].send_signal(signal.SIGTERM)
    for name, gw in gateways.items():
        try:
            code = gw["proc"].wait(timeout=45)  # drain_delay 5 s + in-flight grace
        except subprocess.TimeoutExpired:
            fail(f"{name} still running 45 s after SIGTERM")
        if code != 0:
            fail(f"{name} exited with {code} after SIGTERM")
    print("compose_dry_run: every gateway drained and exited 0 on SIGTERM")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_bin = os.environ.get("SPILLWAY_BIN") or str(
        Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "spillway")
    ap.add_argument("--bin", default=default_bin)
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        fail(f"no spillway binary at {args.bin} (build it or set SPILLWAY_BIN)")
    if not shutil.which("redis-server"):
        fail("redis-server is not on PATH (apt-get install redis-server)")
    compose = yaml.safe_load(COMPOSE.read_text())
    workdir = Path(tempfile.mkdtemp(prefix="spillway-compose-dry-run."))
    procs = Procs(workdir)
    ok = False
    try:
        redis_port, key, gateways = start_stack(procs, args.bin, workdir, compose)
        check_each_serves(procs, key, gateways)
        source = "gateway-us-east-2"
        check_spill(procs, key, source, gateways[source], burst=10)  # within the 3 x 4 slots of the geography
        check_shared_state(redis_port, gateways)
        check_reload(procs, "gateway-us-west-2", gateways["gateway-us-west-2"])
        stop_gateways(gateways)
        ok = True
    finally:
        procs.stop_all()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"compose_dry_run: logs kept in {workdir}", file=sys.stderr)
    print("compose_dry_run: PASS")


if __name__ == "__main__":
    main()
