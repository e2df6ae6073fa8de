#!/usr/bin/env python3
"""Check a running Spillway gateway with the official `openai` Python client.

Usage: openai_client_check.py BASE_URL   (e.g. http://127.0.0.1:8080/v1)

Runs against the embedded default (`spillway serve`), whose listener is us-east-1 and whose demo
tenant's key is `spillway-demo-key`. Prints one line per check; exits 1 if any check failed
(2 on bad usage or a missing `openai` package).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_harness import check, expect, finish  # noqa: E402 - next to this script

try:
    import openai
except ImportError:
    print("the `openai` package is missing: pip install openai", file=sys.stderr)
    sys.exit(2)

KEY = "spillway-demo-key"
PROFILE = "us.demo.chat-small-v1:0"
MODEL = "demo.chat-small-v1:0"
US = {"us-east-1", "us-east-2", "us-west-2"}
MESSAGES = [{"role": "user", "content": "hello"}]

def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    base_url = sys.argv[1]
    client = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=30)

    for model in (PROFILE, MODEL):

        @check(f"chat.completions.create {model}")
        def _():
            r = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=5)
            expect(r.object == "chat.completion", f"object {r.object!r}")
            expect(r.choices and r.choices[0].message.content, "no content")
            expect(r.choices[0].finish_reason in ("length", "stop"), r.choices[0].finish_reason)
            expect(r.usage is not None and r.usage.completion_tokens == 5, f"usage {r.usage}")
            expect(r.usage.total_tokens == r.usage.prompt_tokens + 5, f"usage {r.usage}")
            return repr(r.choices[0].message.content)

        @check(f"chat.completions.create {model} stream=True include_usage")
        def _():
            stream = client.chat.completions.create(
                model=model,
                messages=MESSAGES,
                max_tokens=5,
                stream=True,
                stream_options={"include_usage": True},
            )
            text, finish, usage, chunks = "", None, None, 0
            for chunk in stream:
                chunks += 1
                expect(chunk.object == "chat.completion.chunk", f"object {chunk.object!r}")
                if chunk.choices:
                    expect(usage is None, "a content chunk after the usage chunk")
                    text += chunk.choices[0].delta.content or ""
                    finish = chunk.choices[0].finish_reason or finish
                else:
                    usage = chunk.usage
            expect(text, "no streamed content")
            expect(finish in ("length", "stop"), f"finish_reason {finish!r}")
            expect(usage is not None, "no final usage chunk")
            expect(usage.completion_tokens == 5, f"usage {usage}")
            expect(usage.total_tokens == usage.prompt_tokens + 5, f"usage {usage}")
            return f"{chunks} chunks, {text!r}, usage {usage.prompt_tokens}+{usage.completion_tokens}"

    @check("with_raw_response: x-spillway-region is a us region")
    def _():
        raw = client.with_raw_response.chat.completions.create(
            model=PROFILE, messages=MESSAGES, max_tokens=3
        )
        region = raw.headers.get("x-spillway-region")
        source = raw.headers.get("x-spillway-source-region")
        expect(region in US, f"x-spillway-region {region!r}")
        expect(source == "us-east-1", f"x-spillway-source-region {source!r}")
        parsed = raw.parse()
        expect(parsed.usage.completion_tokens == 3, f"usage {parsed.usage}")
        return f"served in {region}, source {source}"

    @check("a bad key raises AuthenticationError")
    def _():
        bad = openai.OpenAI(base_url=base_url, api_key="not-a-key", max_retries=0, timeout=30)
        try:
            bad.chat.completions.create(model=PROFILE, messages=MESSAGES, max_tokens=3)
        except openai.AuthenticationError as e:
            expect(e.status_code == 401, f"status {e.status_code}")
            return f"{e.status_code} {e.code}"
        raise AssertionError("no error raised")

    @check("an unknown model raises NotFoundError")
    def _():
        try:
            client.chat.completions.create(
                model="us.no-such.model-v1:0", messages=MESSAGES, max_tokens=3
            )
        except openai.NotFoundError as e:
            expect(e.status_code == 404, f"status {e.status_code}")
            return f"{e.status_code} {e.code}"
        raise AssertionError("no error raised")

    @check("models.list contains the us profile and no eu profile")
    def _():
        ids = [m.id for m in client.models.list()]
        expect(PROFILE in ids, f"{PROFILE} not in {ids}")
        expect(not any(i.startswith("eu.") for i in ids), f"eu. profile listed: {ids}")
        return ", ".join(ids)

    return finish()


if __name__ == "__main__":
    sys.exit(main())
