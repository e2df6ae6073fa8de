#!/usr/bin/env python3
"""Check a running Spillway gateway with the official Anthropic Python SDK (`anthropic`).

Usage: anthropic_client_check.py ENDPOINT   (e.g. http://127.0.0.1:8080)

Runs against the embedded default (`spillway serve`), whose listener is us-east-1 and whose demo
tenant has the API key `spillway-demo-key` and the SigV4 pair AKIASPILLWAYDEMO0001 /
spillway-demo-secret. Two clients, used as against Anthropic and Bedrock with only the endpoint
changed:

* `Anthropic(base_url=ENDPOINT, api_key=…)`: `messages.create` and `messages.stream` on
  `/v1/messages`, with text and with a tool call (then its result sent back);
* `AnthropicBedrock(base_url=ENDPOINT, aws_region=…, aws_access_key=…, aws_secret_key=…)`: the
  same on `/model/{id}/invoke` and `/invoke-with-response-stream` with Anthropic bodies.

Each call names the `us.` profile; each answer's `x-spillway-region` must be a us-* region.
The simulators answer a request that offers tools with a call to the tool it names (arguments
from its schema: `{"city": "spillway"}` here), and a request whose last message is a tool result
with text. Prints one line per check; exits 1 if any check failed (2 on bad usage or a missing
package).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_harness import check, expect, finish  # noqa: E402 - next to this script

try:
    import anthropic
    from anthropic import Anthropic, AnthropicBedrock
except ImportError:
    print("the `anthropic` package is missing: pip install 'anthropic[bedrock]'", file=sys.stderr)
    sys.exit(2)

REGION = "us-east-1"
API_KEY = "spillway-demo-key"
ACCESS_KEY = "AKIASPILLWAYDEMO0001"
SECRET = "spillway-demo-secret"
PROFILE = "us.demo.chat-small-v1:0"
US = {"us-east-1", "us-east-2", "us-west-2"}
HI = [{"role": "user", "content": "hello"}]
TOOLS = [
    {
        "name": "get_weather",
        "description": "The current weather in a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]
FORCE = {"type": "tool", "name": "get_weather"}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def region_of(headers):
    region = headers.get("x-spillway-region")
    expect(region in US, f"x-spillway-region {region!r}")
    return region


def text_of(message):
    return "".join(b.text for b in message.content if b.type == "text")


def check_text(client, label):
    @check(f"{label} messages.create text")
    def _():
        raw = client.messages.with_raw_response.create(model=PROFILE, max_tokens=5, messages=HI)
        region = region_of(raw.headers)
        m = raw.parse()
        expect(m.type == "message" and m.role == "assistant", f"message {m}")
        expect(text_of(m), f"no text: {m}")
        expect(m.stop_reason == "max_tokens", f"stop_reason {m.stop_reason!r}")
        expect(m.usage.output_tokens == 5 and m.usage.input_tokens > 0, f"usage {m.usage}")
        return f"{text_of(m)!r}, served in {region}"

    @check(f"{label} messages.stream text")
    def _():
        with client.messages.stream(model=PROFILE, max_tokens=5, messages=HI) as s:
            region = region_of(s.response.headers)
            streamed = "".join(s.text_stream)
            m = s.get_final_message()
        expect(streamed and streamed == text_of(m), f"{streamed!r} vs {m}")
        expect(m.stop_reason == "max_tokens", f"stop_reason {m.stop_reason!r}")
        expect(m.usage.output_tokens == 5, f"usage {m.usage}")
        return f"{streamed!r}, served in {region}"


def tool_use_of(m):
    expect(m.stop_reason == "tool_use", f"stop_reason {m.stop_reason!r}: {m}")
    calls = [b for b in m.content if b.type == "tool_use"]
    expect(len(calls) == 1, f"content {m.content}")
    call = calls[0]
    expect(call.name == "get_weather", f"tool {call.name!r}")
    expect(call.input == {"city": "spillway"}, f"input {call.input!r}")
    return call


def answer_tool(client, call):
    """Send the tool's result back; the answer is text."""
    messages = ASK + [
        {"role": "assistant", "content": [call.model_dump(include={"type", "id", "name", "input"})]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "20C, sunny"}],
        },
    ]
    raw = client.messages.with_raw_response.create(
        model=PROFILE, max_tokens=6, messages=messages, tools=TOOLS
    )
    region_of(raw.headers)
    m = raw.parse()
    expect(text_of(m), f"no text after the tool result: {m}")
    return text_of(m)


def check_tools(client, label):
    @check(f"{label} messages.create tool call, then its result")
    def _():
        raw = client.messages.with_raw_response.create(
            model=PROFILE, max_tokens=64, messages=ASK, tools=TOOLS, tool_choice=FORCE
        )
        region = region_of(raw.headers)
        call = tool_use_of(raw.parse())
        text = answer_tool(client, call)
        return f"{call.name}({call.input}) in {region}, then {text!r}"

    @check(f"{label} messages.stream tool call, then its result")
    def _():
        with client.messages.stream(
            model=PROFILE, max_tokens=64, messages=ASK, tools=TOOLS, tool_choice=FORCE
        ) as s:
            region = region_of(s.response.headers)
            kinds = [e.type for e in s]
            m = s.get_final_message()
        expect("input_json" in kinds, f"no input_json events: {kinds}")
        call = tool_use_of(m)
        text = answer_tool(client, call)
        return f"{call.name}({call.input}) in {region}, then {text!r}"


def check_errors(endpoint):
    @check("Anthropic with a bad key: AuthenticationError")
    def _():
        bad = Anthropic(base_url=endpoint, api_key="sk-not-a-key", max_retries=0)
        try:
            bad.messages.create(model=PROFILE, max_tokens=5, messages=HI)
        except anthropic.AuthenticationError as e:
            expect(e.status_code == 401, f"status {e.status_code}")
            expect("sk-not-a-key" not in str(e), "the key is echoed")
            return str(e.body)
        raise AssertionError("accepted a bad key")

    @check("Anthropic with an unknown model: NotFoundError")
    def _():
        client = Anthropic(base_url=endpoint, api_key=API_KEY, max_retries=0)
        try:
            client.messages.create(model="us.no-such-model", max_tokens=5, messages=HI)
        except anthropic.NotFoundError as e:
            return str(e.body)
        raise AssertionError("an unknown model was served")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    endpoint = sys.argv[1]
    direct = Anthropic(base_url=endpoint, api_key=API_KEY, max_retries=0)
    bedrock = AnthropicBedrock(
        base_url=endpoint,
        aws_region=REGION,
        aws_access_key=ACCESS_KEY,
        aws_secret_key=SECRET,
        max_retries=0,
    )
    for client, label in ((direct, "Anthropic"), (bedrock, "AnthropicBedrock")):
        check_text(client, label)
        check_tools(client, label)
    check_errors(endpoint)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
