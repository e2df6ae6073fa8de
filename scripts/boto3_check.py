#!/usr/bin/env python3
"""Check a running Spillway gateway's Bedrock API with `boto3` (the official AWS SDK for Python).

Usage: boto3_check.py ENDPOINT   (e.g. http://127.0.0.1:8080)

Runs against the embedded default (`spillway serve`), whose listener is us-east-1 and whose demo
tenant has the access key pair AKIASPILLWAYDEMO0001 / spillway-demo-secret, account 111122223333
and the API key `spillway-demo-key`. Uses the `bedrock-runtime` and `bedrock` clients exactly as
against AWS, with `endpoint_url` pointed at the gateway. Prints one line per check; exits 1 if any
check failed (2 on bad usage or a missing `boto3` package). Bedrock API keys (bearer tokens, which
botocore sends only over HTTPS) are checked against a TLS listener by scripts/boto3_tls_check.py.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_harness import check, expect, finish  # noqa: E402 - next to this script

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError
except ImportError:
    print("the `boto3` package is missing: pip install boto3", file=sys.stderr)
    sys.exit(2)

REGION = "us-east-1"
ACCESS_KEY = "AKIASPILLWAYDEMO0001"
SECRET = "spillway-demo-secret"
ACCOUNT = "111122223333"
MODEL = "demo.chat-small-v1:0"
PROFILE = "us." + MODEL
US = {"us-east-1", "us-east-2", "us-west-2"}
MESSAGES = [{"role": "user", "content": [{"text": "hello"}]}]
NO_RETRIES = Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=30)

def client(service, endpoint, secret=SECRET):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=secret,
        config=NO_RETRIES,
    )


def converse_text(r):
    return "".join(b.get("text", "") for b in r["output"]["message"]["content"])


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    endpoint = sys.argv[1]
    runtime = client("bedrock-runtime", endpoint)
    control = client("bedrock", endpoint)
    answers = {}

    for model_id in (
        PROFILE,
        MODEL,
        f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/{PROFILE}",
    ):

        @check(f"converse {model_id}")
        def _():
            r = runtime.converse(
                modelId=model_id, messages=MESSAGES, inferenceConfig={"maxTokens": 5}
            )
            text = converse_text(r)
            expect(text, "no text")
            expect(r["stopReason"] == "max_tokens", f"stopReason {r['stopReason']!r}")
            u = r["usage"]
            expect(u["outputTokens"] == 5, f"usage {u}")
            expect(u["totalTokens"] == u["inputTokens"] + 5, f"usage {u}")
            expect(r["metrics"]["latencyMs"] >= 0, f"metrics {r['metrics']}")
            h = r["ResponseMetadata"]["HTTPHeaders"]
            region = h.get("x-spillway-region")
            expect(region in US, f"x-spillway-region {region!r}")
            expect(h.get("x-spillway-source-region") == REGION, f"headers {h}")
            answers[model_id] = text
            return f"{text!r}, served in {region}"

    @check(f"converse_stream {PROFILE}")
    def _():
        r = runtime.converse_stream(
            modelId=PROFILE, messages=MESSAGES, inferenceConfig={"maxTokens": 5}
        )
        text, kinds, usage, stop = "", [], None, None
        for event in r["stream"]:
            (kind,) = event.keys()
            kinds.append(kind)
            if kind == "contentBlockDelta":
                text += event[kind]["delta"].get("text", "")
            elif kind == "messageStop":
                stop = event[kind]["stopReason"]
            elif kind == "metadata":
                usage = event[kind]["usage"]
        expect(kinds and kinds[0] == "messageStart", f"events {kinds}")
        expect(kinds[-1] == "metadata", f"events {kinds}")
        expect(text, "no streamed text")
        expect(text == answers.get(PROFILE), f"{text!r} != {answers.get(PROFILE)!r}")
        expect(stop == "max_tokens", f"stopReason {stop!r}")
        expect(usage is not None and usage["outputTokens"] == 5, f"usage {usage}")
        expect(usage["totalTokens"] == usage["inputTokens"] + 5, f"usage {usage}")
        return f"{len(kinds)} events, {text!r}, usage {usage['inputTokens']}+{usage['outputTokens']}"

    @check(f"invoke_model {PROFILE} with an OpenAI chat body")
    def _():
        body = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}
        r = runtime.invoke_model(modelId=PROFILE, body=json.dumps(body))
        v = json.loads(r["body"].read())
        expect(v.get("object") == "chat.completion", f"body {v}")
        expect(v["usage"]["completion_tokens"] == 5, f"usage {v['usage']}")
        return repr(v["choices"][0]["message"]["content"])

    @check(f"invoke_model_with_response_stream {PROFILE}")
    def _():
        body = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}
        r = runtime.invoke_model_with_response_stream(
            modelId=PROFILE, body=json.dumps(body), contentType="application/json"
        )
        chunks = [json.loads(e["chunk"]["bytes"]) for e in r["body"]]
        expect(chunks, "no chunks")
        expect(all(c.get("object") == "chat.completion.chunk" for c in chunks), f"{chunks}")
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
        )
        expect(text == answers.get(PROFILE), f"{text!r} != {answers.get(PROFILE)!r}")
        return f"{len(chunks)} chunks"

    @check("list_inference_profiles contains the us profile and no eu profile")
    def _():
        ids = []
        for page in control.get_paginator("list_inference_profiles").paginate(
            PaginationConfig={"PageSize": 1}
        ):
            ids += [p["inferenceProfileId"] for p in page["inferenceProfileSummaries"]]
        expect(PROFILE in ids, f"{PROFILE} not in {ids}")
        expect(not any(i.startswith("eu.") for i in ids), f"eu. profile listed: {ids}")
        expect(len(ids) == len(set(ids)), f"duplicates across pages: {ids}")
        system = control.list_inference_profiles(typeEquals="SYSTEM_DEFINED")
        expect(
            all(p["type"] == "SYSTEM_DEFINED" for p in system["inferenceProfileSummaries"]),
            "typeEquals ignored",
        )
        return ", ".join(ids)

    @check(f"get_inference_profile {PROFILE}")
    def _():
        p = control.get_inference_profile(inferenceProfileIdentifier=PROFILE)
        arns = sorted(m["modelArn"] for m in p["models"])
        want = sorted(f"arn:aws:bedrock:{r}::foundation-model/{MODEL}" for r in US)
        expect(arns == want, f"models {arns}")
        expect(
            p["inferenceProfileArn"]
            == f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/{PROFILE}",
            p["inferenceProfileArn"],
        )
        return p["inferenceProfileArn"]

    @check("a wrong secret raises ClientError InvalidSignatureException")
    def _():
        bad = client("bedrock-runtime", endpoint, secret="not-the-secret")
        try:
            bad.converse(modelId=PROFILE, messages=MESSAGES, inferenceConfig={"maxTokens": 3})
        except ClientError as e:
            code = e.response["Error"]["Code"]
            status = e.response["ResponseMetadata"]["HTTPStatusCode"]
            expect(code == "InvalidSignatureException", f"code {code!r}")
            expect(status == 403, f"status {status}")
            return f"{status} {code}"
        raise AssertionError("no error raised")

    @check("an unknown model raises ResourceNotFoundException")
    def _():
        try:
            runtime.converse(modelId="us.no-such.model-v1:0", messages=MESSAGES)
        except runtime.exceptions.ResourceNotFoundException as e:
            return f"{e.response['ResponseMetadata']['HTTPStatusCode']} {e.response['Error']['Code']}"
        raise AssertionError("no error raised")

    return finish()


if __name__ == "__main__":
    sys.exit(main())
