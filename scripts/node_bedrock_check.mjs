// Check a running Spillway gateway with the official Node `@aws-sdk/client-bedrock-runtime`,
// exactly as a user builds it: only `endpoint`, `region` and credentials are set, so the SDK
// uses its DEFAULT request handler (NodeHttp2Handler: HTTP/2, the host signed as `:authority`).
//
// Usage: node node_bedrock_check.mjs ENDPOINT   (http://HOST:PORT for h2c, https://… with
//        NODE_EXTRA_CA_CERTS pointing at the CA file)
//
// Runs against the embedded default (`spillway serve`): listener us-east-1, demo tenant with the
// access key pair AKIASPILLWAYDEMO0001 / spillway-demo-secret. Prints one line per check; exits
// 1 if any failed, 2 on bad usage.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "node", "package.json"));
const {
  BedrockRuntimeClient,
  ConverseCommand,
  ConverseStreamCommand,
} = require("@aws-sdk/client-bedrock-runtime");

const REGION = "us-east-1";
const MODEL = "demo.chat-small-v1:0";
const PROFILE = "us." + MODEL;
const US = new Set(["us-east-1", "us-east-2", "us-west-2"]);
const MESSAGES = [{ role: "user", content: [{ text: "hello" }] }];

const endpoint = process.argv[2];
if (!endpoint) {
  console.error("usage: node node_bedrock_check.mjs ENDPOINT");
  process.exit(2);
}

const client = new BedrockRuntimeClient({
  endpoint,
  region: REGION,
  credentials: {
    accessKeyId: "AKIASPILLWAYDEMO0001",
    secretAccessKey: "spillway-demo-secret",
  },
  maxAttempts: 1,
});
const handler = client.config.requestHandler?.constructor?.name;
// The response headers of the last call (the SDK keeps only `$metadata`).
let lastHeaders = {};
client.middlewareStack.add(
  (next) => async (args) => {
    const out = await next(args);
    lastHeaders = out.response?.headers ?? {};
    return out;
  },
  { step: "deserialize", name: "spillwayHeaders" },
);

let failed = 0;
async function check(name, fn) {
  try {
    const detail = await fn();
    console.log(`ok   ${name}: ${detail}`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL ${name}: ${e?.name ?? ""} ${e?.message ?? e}`);
  }
}
function expect(cond, what) {
  if (!cond) throw new Error(what);
}
function servedIn() {
  const region = lastHeaders["x-spillway-region"];
  expect(US.has(region), `x-spillway-region ${region} is not in the profile's destinations`);
  expect(lastHeaders["x-spillway-source-region"] === REGION, `source ${lastHeaders["x-spillway-source-region"]}`);
  return region;
}

let answer = "";
await check(`the default request handler is HTTP/2`, async () => {
  expect(handler === "NodeHttp2Handler", `handler ${handler}`);
  return handler;
});

await check(`converse ${PROFILE}`, async () => {
  const r = await client.send(
    new ConverseCommand({ modelId: PROFILE, messages: MESSAGES, inferenceConfig: { maxTokens: 5 } }),
  );
  answer = r.output.message.content.map((b) => b.text ?? "").join("");
  expect(answer, "no text");
  expect(r.stopReason === "max_tokens", `stopReason ${r.stopReason}`);
  expect(r.usage.outputTokens === 5, `usage ${JSON.stringify(r.usage)}`);
  return `${JSON.stringify(answer)}, served in ${servedIn()}`;
});

await check(`converseStream ${PROFILE}`, async () => {
  const r = await client.send(
    new ConverseStreamCommand({ modelId: PROFILE, messages: MESSAGES, inferenceConfig: { maxTokens: 5 } }),
  );
  const region = servedIn();
  const kinds = [];
  let text = "";
  let usage;
  let stop;
  for await (const event of r.stream) {
    const [kind] = Object.keys(event);
    kinds.push(kind);
    if (kind === "contentBlockDelta") text += event[kind].delta?.text ?? "";
    if (kind === "messageStop") stop = event[kind].stopReason;
    if (kind === "metadata") usage = event[kind].usage;
  }
  expect(kinds[0] === "messageStart", `events ${kinds}`);
  expect(kinds.at(-1) === "metadata", `events ${kinds}`);
  expect(text === answer, `${JSON.stringify(text)} != ${JSON.stringify(answer)}`);
  expect(stop === "max_tokens", `stopReason ${stop}`);
  expect(usage?.outputTokens === 5, `usage ${JSON.stringify(usage)}`);
  return `${kinds.length} events, ${JSON.stringify(text)}, served in ${region}`;
});

await check("a wrong secret is refused with InvalidSignatureException", async () => {
  const bad = new BedrockRuntimeClient({
    endpoint,
    region: REGION,
    credentials: { accessKeyId: "AKIASPILLWAYDEMO0001", secretAccessKey: "not-the-secret" },
    maxAttempts: 1,
  });
  try {
    await bad.send(new ConverseCommand({ modelId: PROFILE, messages: MESSAGES }));
  } catch (e) {
    expect(e.name === "InvalidSignatureException", `error ${e.name}`);
    expect(e.$metadata?.httpStatusCode === 403, `status ${e.$metadata?.httpStatusCode}`);
    return `${e.$metadata.httpStatusCode} ${e.name}`;
  } finally {
    bad.destroy();
  }
  throw new Error("no error raised");
});

client.destroy();
console.log(failed ? `${failed} check(s) failed` : "all checks passed");
process.exit(failed ? 1 : 0);
