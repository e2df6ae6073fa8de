#!/usr/bin/env python3
"""Check Spillway's OpenAI Responses and embeddings endpoints with the official `openai` client.

Usage: openai_more_check.py BASE_URL   (e.g. http://127.0.0.1:8080/v1)

Runs against the embedded default (`spillway serve`): its listener is us-east-1, its demo
tenant's key is `spillway-demo-key`, it serves the chat model demo.chat-small-v1:0 and the
embedding model demo.embed-v1:0 on simulators. Prints one line per check; exits 1 if any check
failed (2 on bad usage or a missing `openai` package).
"""
import base64
import os
import struct
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
EMBED = "us.demo.embed-v1:0"
US = {"us-east-1", "us-east-2", "us-west-2"}
TOOLS = [{
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]


def responses_checks(client):
    @check("responses.create, output_text and usage")
    def _():
        r = client.responses.create(model=PROFILE, input="hello", instructions="be brief",
                                    max_output_tokens=5)
        expect(r.object == "response", f"object {r.object!r}")
        expect(r.id.startswith("resp_"), f"id {r.id!r}")
        expect(r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens",
               f"status {r.status!r} {r.incomplete_details}")
        expect(r.output_text, "no output_text")
        expect(r.usage.output_tokens == 5, f"usage {r.usage}")
        expect(r.usage.total_tokens == r.usage.input_tokens + 5, f"usage {r.usage}")
        return repr(r.output_text)

    @check("responses.create stream=True: typed events in order")
    def _():
        events = list(client.responses.create(model=PROFILE, input="hello",
                                              max_output_tokens=5, stream=True))
        kinds = [e.type for e in events]
        expect(kinds[:2] == ["response.created", "response.in_progress"], kinds)
        expect(kinds[-1] in ("response.completed", "response.incomplete"), kinds)
        expect([e.sequence_number for e in events] == list(range(len(events))), "sequence_number")
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        done = [e.text for e in events if e.type == "response.output_text.done"]
        expect(text and done == [text], f"deltas {text!r}, done {done!r}")
        expect(events[-1].response.usage.output_tokens == 5, f"{events[-1].response.usage}")
        return f"{len(events)} events, {text!r}"

    @check("responses.stream helper: get_final_response")
    def _():
        # No max_output_tokens: the helper's final response needs `response.completed`, and a
        # capped answer ends with `response.incomplete` (as OpenAI's does).
        with client.responses.stream(model=PROFILE, input="hello") as s:
            text = "".join(e.delta for e in s if e.type == "response.output_text.delta")
            final = s.get_final_response()
        expect(text and final.output_text == text, f"{text!r} vs {final.output_text!r}")
        return repr(final.output_text)

    @check("responses.create with function tools and a function call round trip in input")
    def _():
        # The simulators answer text (they never call tools); the call and its output go back
        # in `input` and the tools upstream as chat tools, and the answer is the model's text.
        r = client.responses.create(model=PROFILE, tools=TOOLS, tool_choice="auto", input=[
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather",
             "arguments": '{"city": "Paris"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": '{"temp": 21}'},
        ], max_output_tokens=3)
        expect(r.output_text, "no output_text")
        expect(r.tools and r.tools[0].name == "get_weather", f"tools {r.tools}")
        return repr(r.output_text)

    @check("responses with_raw_response: x-spillway-region is a us region")
    def _():
        raw = client.with_raw_response.responses.create(model=PROFILE, input="hi", max_output_tokens=2)
        region = raw.headers.get("x-spillway-region")
        expect(region in US, f"x-spillway-region {region!r}")
        expect(raw.parse().output_text, "no output_text")
        return f"served in {region}"

    @check("responses: previous_response_id raises BadRequestError naming it")
    def _():
        try:
            client.responses.create(model=PROFILE, input="hi", previous_response_id="resp_1")
        except openai.BadRequestError as e:
            expect(e.status_code == 400 and e.param == "previous_response_id", f"{e.param} {e}")
            return f"{e.status_code} param={e.param}"
        raise AssertionError("no error raised")


def floats_of(b64):
    raw = base64.b64decode(b64)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def embeddings_checks(client):
    inputs = ["the quick brown fox", "jumps over the lazy dog"]

    @check("embeddings.create float")
    def _():
        r = client.embeddings.create(model=EMBED, input=inputs, encoding_format="float")
        expect(len(r.data) == 2 and [d.index for d in r.data] == [0, 1], f"{len(r.data)} items")
        v = r.data[0].embedding
        expect(isinstance(v[0], float) and len(v) == 256, f"{len(v)} dimensions")
        expect(abs(sum(x * x for x in v) - 1.0) < 1e-3, "not a unit vector")
        expect(r.usage.prompt_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens, f"{r.usage}")
        return f"{len(r.data)} x {len(v)}, usage {r.usage.prompt_tokens}"

    @check("embeddings.create base64 (explicit) and the SDK's default, with dimensions")
    def _():
        f = client.embeddings.create(model=EMBED, input=inputs, encoding_format="float", dimensions=8)
        b = client.embeddings.create(model=EMBED, input=inputs, encoding_format="base64", dimensions=8)
        d = client.embeddings.create(model=EMBED, input=inputs, dimensions=8)
        expect(isinstance(b.data[0].embedding, str), "explicit base64 is a string")
        decoded = floats_of(b.data[0].embedding)
        expect(len(decoded) == 8 and len(d.data[0].embedding) == 8, "dimensions")
        for x, y, z in zip(f.data[0].embedding, decoded, d.data[0].embedding):
            expect(abs(x - y) < 1e-6 and abs(x - z) < 1e-6, f"{x} {y} {z}")
        return "float = base64 = SDK default"

    @check("embeddings with_raw_response: x-spillway-region is a us region")
    def _():
        raw = client.with_raw_response.embeddings.create(model=EMBED, input=inputs)
        region = raw.headers.get("x-spillway-region")
        source = raw.headers.get("x-spillway-source-region")
        expect(region in US and source == "us-east-1", f"{region!r} from {source!r}")
        expect(len(raw.parse().data) == 2, "data")
        return f"served in {region}, source {source}"

    @check("embeddings on a chat model raise BadRequestError")
    def _():
        try:
            client.embeddings.create(model=PROFILE, input=inputs)
        except openai.BadRequestError as e:
            expect(e.status_code == 400 and e.param == "model", f"{e.param} {e}")
            return f"{e.status_code} param={e.param}"
        raise AssertionError("no error raised")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    client = openai.OpenAI(base_url=sys.argv[1], api_key=KEY, max_retries=0, timeout=30)
    responses_checks(client)
    embeddings_checks(client)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
