#!/usr/bin/env python3
"""Check a Spillway TLS listener with `boto3` and a Bedrock API key (`AWS_BEARER_TOKEN_BEDROCK`).

Usage: AWS_CA_BUNDLE=ca.pem boto3_tls_check.py ENDPOINT   (e.g. https://127.0.0.1:8443)

botocore sends a bearer token only over HTTPS, so this is what a user of Bedrock API keys meets:
the gateway's own TLS listener (`spillway serve --tls-cert … --tls-key …`), trusted through the CA
file in `AWS_CA_BUNDLE` (as made by `spillway tls-cert`). No access key is configured: the token
is the only credential. Runs against the embedded default (listener us-east-1, demo API key
`spillway-demo-key`). Prints one line per check; exits 1 if any check failed (2 on bad usage or a
missing `boto3` package).
"""
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
API_KEY = "spillway-demo-key"
PROFILE = "us.demo.chat-small-v1:0"
US = {"us-east-1", "us-east-2", "us-west-2"}
MESSAGES = [{"role": "user", "content": [{"text": "hello"}]}]
NO_RETRIES = Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=30)


def client(endpoint):
    return boto3.client(
        "bedrock-runtime", endpoint_url=endpoint, region_name=REGION, config=NO_RETRIES
    )


def served_in(r):
    h = r["ResponseMetadata"]["HTTPHeaders"]
    region = h.get("x-spillway-region")
    expect(region in US, f"x-spillway-region {region!r} is not in the profile's destinations")
    expect(h.get("x-spillway-source-region") == REGION, f"headers {h}")
    return region


def main():
    if len(sys.argv) != 2 or not sys.argv[1].startswith("https://"):
        print(__doc__, file=sys.stderr)
        return 2
    expect(os.environ.get("AWS_CA_BUNDLE"), "AWS_CA_BUNDLE is not set")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        os.environ.pop(var, None)
    os.environ["AWS_BEARER_TOKEN_BEDROCK"] = API_KEY
    endpoint = sys.argv[1]
    runtime = client(endpoint)
    answer = {}

    @check(f"converse {PROFILE} with a bearer token over https")
    def _():
        r = runtime.converse(modelId=PROFILE, messages=MESSAGES, inferenceConfig={"maxTokens": 5})
        text = "".join(b.get("text", "") for b in r["output"]["message"]["content"])
        expect(text, "no text")
        expect(r["usage"]["outputTokens"] == 5, f"usage {r['usage']}")
        answer["text"] = text
        return f"{text!r}, served in {served_in(r)}"

    @check(f"converse_stream {PROFILE} with a bearer token over https")
    def _():
        r = runtime.converse_stream(
            modelId=PROFILE, messages=MESSAGES, inferenceConfig={"maxTokens": 5}
        )
        region = served_in(r)
        text, kinds, usage = "", [], None
        for event in r["stream"]:
            (kind,) = event.keys()
            kinds.append(kind)
            if kind == "contentBlockDelta":
                text += event[kind]["delta"].get("text", "")
            elif kind == "metadata":
                usage = event[kind]["usage"]
        expect(kinds and kinds[0] == "messageStart", f"events {kinds}")
        expect(text == answer.get("text"), f"{text!r} != {answer.get('text')!r}")
        expect(usage is not None and usage["outputTokens"] == 5, f"usage {usage}")
        return f"{len(kinds)} events, {text!r}, served in {region}"

    @check("a wrong bearer token is refused with a Bedrock error")
    def _():
        os.environ["AWS_BEARER_TOKEN_BEDROCK"] = "not-a-key"
        try:
            client(endpoint).converse(modelId=PROFILE, messages=MESSAGES)
        except ClientError as e:
            status = e.response["ResponseMetadata"]["HTTPStatusCode"]
            expect(status in (401, 403), f"status {status}")
            return f"{status} {e.response['Error']['Code']}"
        finally:
            os.environ["AWS_BEARER_TOKEN_BEDROCK"] = API_KEY
        raise AssertionError("no error raised")

    @check("the certificate is checked: without the CA file the call fails")
    def _():
        bundle = os.environ.pop("AWS_CA_BUNDLE")
        try:
            boto3.client(
                "bedrock-runtime",
                endpoint_url=endpoint,
                region_name=REGION,
                config=NO_RETRIES,
                verify=True,
            ).converse(modelId=PROFILE, messages=MESSAGES)
        except Exception as e:  # noqa: BLE001 - botocore's SSLError, whatever its wrapping
            expect("SSL" in type(e).__name__ or "certificate" in str(e).lower(), repr(e))
            return type(e).__name__
        finally:
            os.environ["AWS_CA_BUNDLE"] = bundle
        raise AssertionError("an untrusted certificate was accepted")

    return finish()


if __name__ == "__main__":
    sys.exit(main())
