#!/usr/bin/env python3
"""Check the rest of a running Spillway gateway's Bedrock surface with `boto3`.

Usage: bedrock_surface_check.py ENDPOINT   (e.g. http://127.0.0.1:8080)

Runs against the embedded default (`spillway serve`; see scripts/boto3_check.py for its demo
tenant) with the `bedrock` and `bedrock-runtime` clients exactly as against AWS:
ListFoundationModels (and its byProvider filter), GetFoundationModel, tags on an application
inference profile (TagResource, UntagResource, ListTagsForResource), CountTokens (when the
installed botocore has it), InvokeModel's token-count headers read from the raw response, and
operations Spillway does not serve raising a `ClientError` with Bedrock's error code. Prints one
line per check; exits 1 if any check failed (2 on bad usage or a missing `boto3` package).
"""
import json
import os
import sys
import uuid

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


def client(service, endpoint):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET,
        config=NO_RETRIES,
    )


def error_code(call, **kwargs):
    """The Bedrock error code `call` raises (and its HTTP status)."""
    try:
        call(**kwargs)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError("no error raised")


def tags_of(control, arn):
    return {t["key"]: t["value"] for t in control.list_tags_for_resource(resourceARN=arn)["tags"]}


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    endpoint = sys.argv[1]
    runtime = client("bedrock-runtime", endpoint)
    control = client("bedrock", endpoint)

    @check("list_foundation_models")
    def _():
        models = control.list_foundation_models()["modelSummaries"]
        ids = [m["modelId"] for m in models]
        expect(MODEL in ids, f"{MODEL} not in {ids}")
        m = next(m for m in models if m["modelId"] == MODEL)
        expect(
            m["modelArn"] == f"arn:aws:bedrock:{REGION}::foundation-model/{MODEL}", m["modelArn"]
        )
        expect(m["modelLifecycle"]["status"] == "ACTIVE", f"{m}")
        expect("ON_DEMAND" in m["inferenceTypesSupported"], f"{m}")
        expect("INFERENCE_PROFILE" in m["inferenceTypesSupported"], f"{m}")
        expect(m["outputModalities"] == ["TEXT"] and m["responseStreamingSupported"], f"{m}")
        return ", ".join(ids)

    @check("list_foundation_models byProvider")
    def _():
        provider = control.get_foundation_model(modelIdentifier=MODEL)["modelDetails"][
            "providerName"
        ]
        mine = control.list_foundation_models(byProvider=provider)["modelSummaries"]
        expect(mine and all(m["providerName"] == provider for m in mine), f"{mine}")
        none = control.list_foundation_models(byProvider="nosuchprovider")["modelSummaries"]
        expect(none == [], f"{none}")
        return f"{provider}: {len(mine)} model(s)"

    @check("get_foundation_model, and a missing model raises ResourceNotFoundException")
    def _():
        d = control.get_foundation_model(modelIdentifier=MODEL)["modelDetails"]
        expect(d["modelId"] == MODEL, f"{d}")
        code, status = error_code(
            control.get_foundation_model, modelIdentifier="demo.no-such-model-v1:0"
        )
        expect((code, status) == ("ResourceNotFoundException", 404), f"{code} {status}")
        return f"{d['modelName']} by {d['providerName']}; missing: {status} {code}"

    @check("tag_resource / untag_resource / list_tags_for_resource on an application profile")
    def _():
        arn = control.create_inference_profile(
            inferenceProfileName=f"surface-{uuid.uuid4().hex[:8]}",
            modelSource={
                "copyFrom": f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/{PROFILE}"
            },
            tags=[{"key": "team", "value": "search"}],
        )["inferenceProfileArn"]
        try:
            expect(tags_of(control, arn) == {"team": "search"}, f"{tags_of(control, arn)}")
            control.tag_resource(
                resourceARN=arn,
                tags=[{"key": "team", "value": "ads"}, {"key": "cost-center", "value": "42"}],
            )
            expect(
                tags_of(control, arn) == {"team": "ads", "cost-center": "42"},
                f"{tags_of(control, arn)}",
            )
            control.untag_resource(resourceARN=arn, tagKeys=["team"])
            expect(tags_of(control, arn) == {"cost-center": "42"}, f"{tags_of(control, arn)}")
            code, _ = error_code(
                control.tag_resource, resourceARN=arn, tags=[{"key": "aws:x", "value": "1"}]
            )
            expect(code == "ValidationException", code)
            too_many = [{"key": f"k{i}", "value": "v"} for i in range(50)]
            code, _ = error_code(control.tag_resource, resourceARN=arn, tags=too_many)
            expect(code == "TooManyTagsException", code)
            # The tagged profile serves, in the us geography.
            r = runtime.converse(modelId=arn, messages=MESSAGES, inferenceConfig={"maxTokens": 3})
            region = r["ResponseMetadata"]["HTTPHeaders"].get("x-spillway-region")
            expect(region in US, f"served in {region!r}")
        finally:
            control.delete_inference_profile(inferenceProfileIdentifier=arn)
        return f"{arn}; aws: prefix and 51 tags refused"

    @check("count_tokens equals the usage converse reports")
    def _():
        if not hasattr(runtime, "count_tokens"):
            return "skipped: this botocore has no count_tokens"
        n = runtime.count_tokens(
            modelId=MODEL, input={"converse": {"messages": MESSAGES}}
        )["inputTokens"]
        r = runtime.converse(modelId=MODEL, messages=MESSAGES, inferenceConfig={"maxTokens": 3})
        expect(n == r["usage"]["inputTokens"], f"{n} != {r['usage']}")
        body = json.dumps({"messages": [{"role": "user", "content": "hello"}], "max_tokens": 3})
        m = runtime.count_tokens(modelId=PROFILE, input={"invokeModel": {"body": body}})
        expect(m["inputTokens"] > 0, f"{m}")
        return f"{n} input tokens (converse), {m['inputTokens']} (invokeModel)"

    @check("invoke_model answers carry X-Amzn-Bedrock-*-Token-Count headers")
    def _():
        body = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}
        r = runtime.invoke_model(modelId=PROFILE, body=json.dumps(body))
        v = json.loads(r["body"].read())
        h = r["ResponseMetadata"]["HTTPHeaders"]
        inp = int(h["x-amzn-bedrock-input-token-count"])
        out = int(h["x-amzn-bedrock-output-token-count"])
        expect(inp == v["usage"]["prompt_tokens"], f"{inp} != {v['usage']}")
        expect(out == v["usage"]["completion_tokens"] == 5, f"{out} != {v['usage']}")
        expect(int(h["x-amzn-bedrock-invocation-latency"]) >= 0, f"{h}")
        return f"input {inp}, output {out}, latency {h['x-amzn-bedrock-invocation-latency']} ms"

    @check("invoke_model_with_response_stream's last chunk has amazon-bedrock-invocationMetrics")
    def _():
        body = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}
        r = runtime.invoke_model_with_response_stream(modelId=PROFILE, body=json.dumps(body))
        chunks = [json.loads(e["chunk"]["bytes"]) for e in r["body"]]
        m = chunks[-1].get("amazon-bedrock-invocationMetrics")
        expect(m and m["outputTokenCount"] == 5 and m["inputTokenCount"] > 0, f"{chunks[-1]}")
        return f"{m}"

    for name, call in (
        ("bedrock list_custom_models", control.list_custom_models),
        (
            "bedrock get_model_invocation_logging_configuration",
            control.get_model_invocation_logging_configuration,
        ),
        ("bedrock-runtime list_async_invokes", runtime.list_async_invokes),
    ):

        @check(f"{name} (not served) raises ClientError UnknownOperationException")
        def _():
            code, status = error_code(call)
            expect(code == "UnknownOperationException", f"code {code!r}")
            expect(status == 404, f"status {status}")
            return f"{status} {code}"

    return finish()


if __name__ == "__main__":
    sys.exit(main())
