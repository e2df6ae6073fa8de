#!/usr/bin/env python3
"""Scrape a running Spillway gateway's /metrics with Python's `prometheus_client` parser.

Usage: metrics_check.py API_BASE ADMIN_BASE   (e.g. http://127.0.0.1:8080 http://127.0.0.1:9090)

Against the embedded default (listener us-east-1, key `spillway-demo-key`): sends a burst of
profile calls larger than us-east-1's capacity (so some spill), a few streamed calls and a call
with a wrong key, then reads `/metrics` with `Accept: text/plain` through
`prometheus_client.parser.text_string_to_metric_families` (the classic-text parser) and checks
the families against what was sent: requests, spill flows with source and destination labels,
tokens and cost with a tenant label, the end-to-end histogram, and a TTFT count equal to the
number of streamed requests only. Exits 1 if a check failed.
"""
import json
import os
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_harness import check, expect, finish  # noqa: E402 - next to this script

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    print("the `prometheus_client` package is missing: pip install prometheus-client", file=sys.stderr)
    sys.exit(2)

KEY = "spillway-demo-key"
PROFILE = "us.demo.chat-small-v1:0"
MODEL = "demo.chat-small-v1:0"
US = {"us-east-1", "us-east-2", "us-west-2"}
BURST = 48  # three times us-east-1's 16 slots


def post(api, body, key=KEY):
    req = urllib.request.Request(
        f"{api}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def scrape(admin):
    req = urllib.request.Request(f"{admin}/metrics", headers={"accept": "text/plain"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers["content-type"], r.read().decode()


def samples(families, family, sample):
    for f in families:
        if f.name == family:
            return [s for s in f.samples if s.name == sample]
    return []


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    api, admin = sys.argv[1], sys.argv[2]
    chat = {"model": PROFILE, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}
    with ThreadPoolExecutor(BURST) as pool:
        replies = list(pool.map(lambda _: post(api, chat), range(BURST)))
    served = [h for s, h, _ in replies if s == 200]
    spilled = [h for h in served if h.get("x-spillway-region") != "us-east-1"]
    streams = 3
    for _ in range(streams):
        status, _, body = post(api, {**chat, "model": MODEL, "max_tokens": 5, "stream": True})
        expect(status == 200, f"stream status {status}: {body[:200]!r}")
    status, _, _ = post(api, {**chat, "model": MODEL}, key="sk-wrong")
    expect(status == 401, f"wrong key status {status}")
    sent = BURST + streams + 1
    print(f"sent {sent}: {len(served)} of the burst served, {len(spilled)} spilled, {streams} streams")

    content_type, text = scrape(admin)
    families = list(text_string_to_metric_families(text))
    names = {f.name: f.type for f in families}

    @check("classic text content type")
    def _():
        expect(content_type.startswith("text/plain; version=0.0.4"), content_type)

    @check("requests: one per request sent, grouped in one counter family")
    def _():
        expect(names.get("spillway_requests") == "counter", f"families: {sorted(names)}")
        total = sum(s.value for s in samples(families, "spillway_requests", "spillway_requests_total"))
        expect(total == sent, f"{total} counted, {sent} sent")

    @check("spill flows: source and destination labels, one per spilled request")
    def _():
        flows = samples(families, "spillway_flows", "spillway_flows_total")
        expect(len(spilled) > 0, "the burst did not spill; nothing to check")
        expect(all(s.labels["source"] == "us-east-1" and s.labels["destination"] in US - {"us-east-1"} for s in flows), f"{flows}")
        expect(sum(s.value for s in flows) == len(spilled), f"{flows} vs {len(spilled)} spilled")

    @check("tokens and cost with a tenant label")
    def _():
        tokens = samples(families, "spillway_tokens", "spillway_tokens_total")
        cost = samples(families, "spillway_cost_usd", "spillway_cost_usd_total")
        expect(tokens and all(s.labels.get("tenant") == "demo" for s in tokens), f"{tokens}")
        expect({s.labels["type"] for s in tokens} == {"input", "output"}, f"{tokens}")
        expect(cost and all(s.labels.get("tenant") == "demo" and s.value > 0 for s in cost), f"{cost}")

    @check("end-to-end histogram counts every request")
    def _():
        expect(names.get("spillway_request_duration_seconds") == "histogram", f"{names}")
        count = samples(families, "spillway_request_duration_seconds", "spillway_request_duration_seconds_count")
        expect(sum(s.value for s in count) == sent, f"{count}")

    @check("TTFT counts the streamed requests only")
    def _():
        count = samples(families, "spillway_ttft_seconds", "spillway_ttft_seconds_count")
        expect(sum(s.value for s in count) == streams, f"{count}")

    return finish()


if __name__ == "__main__":
    sys.exit(main())
