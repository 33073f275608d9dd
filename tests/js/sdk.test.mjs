// The official JavaScript SDKs (@anthropic-ai/sdk, openai) against a running ClaudeStore gateway.
//
// Run by tests/test_js_sdks.py with `node --test`; the gateway is given only by base URL and key:
//   CLAUDESTORE_URL  e.g. http://127.0.0.1:8080
//   CLAUDESTORE_KEY  a gateway API key (sk-cs-...)
//
// Every case runs through `claude-test` (Anthropic-format upstream) and `gpt-test`
// (OpenAI-format upstream), so each SDK sees both the pass-through and the translated path.
// The fake upstream's output is deterministic (src/claudestore/fake_upstream/README.md):
// text tokens cycle "lorem ipsum dolor sit ...", a tool call's input is {"city": "Paris", "days": 3}
// streamed in several argument deltas.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";

const versionOf = (pkg) =>
  JSON.parse(readFileSync(new URL(`./node_modules/${pkg}/package.json`, import.meta.url))).version;
const URL_ = process.env.CLAUDESTORE_URL;
const KEY = process.env.CLAUDESTORE_KEY;
if (!URL_ || !KEY) throw new Error("set CLAUDESTORE_URL and CLAUDESTORE_KEY");

// A well-formed key that the gateway does not know.
const UNKNOWN_KEY = "sk-cs-" + "A".repeat(43);
const MODELS = ["claude-test", "gpt-test"];
const TEXT4 = "lorem ipsum dolor sit";
const TOOL_INPUT = { city: "Paris", days: 3 };
const WEATHER_SCHEMA = {
  type: "object",
  properties: { city: { type: "string" }, days: { type: "integer" } },
  required: ["city"],
};

console.log(
  `# @anthropic-ai/sdk ${versionOf("@anthropic-ai/sdk")}, openai ${versionOf("openai")}, node ${process.version}`,
);

const claude = new Anthropic({ baseURL: URL_, apiKey: KEY, maxRetries: 0, timeout: 30_000 });
const oai = new OpenAI({ baseURL: `${URL_}/v1`, apiKey: KEY, maxRetries: 0, timeout: 30_000 });

describe("@anthropic-ai/sdk", () => {
  for (const model of MODELS) {
    describe(model, () => {
      test("messages.create", async () => {
        const msg = await claude.messages.create({
          model,
          max_tokens: 100,
          messages: [{ role: "user", content: "Say hello [[fake tokens=4]]" }],
        });
        assert.equal(msg.type, "message");
        assert.equal(msg.role, "assistant");
        assert.equal(msg.model, model);
        assert.equal(msg.stop_reason, "end_turn");
        assert.deepEqual(
          msg.content.map((b) => b.type),
          ["text"],
        );
        assert.equal(msg.content[0].text, TEXT4);
        assert.equal(msg.usage.output_tokens, 4);
        assert.ok(msg.usage.input_tokens > 0);
      });

      test("messages.create with .withResponse() exposes the request id", async () => {
        const { data, response, request_id } = await claude.messages
          .create({ model, max_tokens: 10, messages: [{ role: "user", content: "hi [[fake tokens=1]]" }] })
          .withResponse();
        assert.equal(response.status, 200);
        assert.match(request_id, /^req_/);
        assert.equal(data.content[0].text, "lorem");
      });

      test("messages.stream + finalMessage", async () => {
        const stream = claude.messages.stream({
          model,
          max_tokens: 100,
          messages: [{ role: "user", content: "Say hello [[fake tokens=4]]" }],
        });
        const deltas = [];
        stream.on("text", (delta) => deltas.push(delta));
        const msg = await stream.finalMessage();
        assert.deepEqual(deltas, ["lorem", " ipsum", " dolor", " sit"]);
        assert.equal(msg.model, model);
        assert.equal(msg.content[0].text, TEXT4);
        assert.equal(msg.stop_reason, "end_turn");
        assert.equal(msg.usage.output_tokens, 4);
      });

      test("messages.create({stream: true}) raw events", async () => {
        const stream = await claude.messages.create({
          model,
          max_tokens: 3,
          stream: true,
          messages: [{ role: "user", content: "count [[fake tokens=10]]" }],
        });
        const types = [];
        let stop;
        for await (const ev of stream) {
          types.push(ev.type);
          if (ev.type === "message_delta") stop = ev.delta.stop_reason;
        }
        assert.equal(types[0], "message_start");
        assert.equal(types.at(-1), "message_stop");
        assert.equal(stop, "max_tokens");
      });

      test("tool call, streamed input (inputJson)", async () => {
        const stream = claude.messages.stream({
          model,
          max_tokens: 200,
          tools: [{ name: "get_weather", description: "Weather", input_schema: WEATHER_SCHEMA }],
          messages: [{ role: "user", content: "Weather in Paris? [[fake tool=get_weather tokens=2]]" }],
        });
        const partials = [];
        stream.on("inputJson", (partial) => partials.push(partial));
        const msg = await stream.finalMessage();
        assert.equal(msg.stop_reason, "tool_use");
        const tool = msg.content.find((b) => b.type === "tool_use");
        assert.ok(tool, JSON.stringify(msg.content));
        assert.equal(tool.name, "get_weather");
        assert.match(tool.id, /^[A-Za-z0-9_-]+$/); // toolu_… or, translated, the upstream's call_…
        assert.deepEqual(tool.input, TOOL_INPUT);
        const nonEmpty = partials.filter((p) => p !== "");
        assert.ok(nonEmpty.length >= 2, `arguments arrived in ${nonEmpty.length} deltas`);
        assert.deepEqual(JSON.parse(nonEmpty.join("")), TOOL_INPUT);

        // Second turn: send the tool result back; the fake answers with text.
        const next = await claude.messages.create({
          model,
          max_tokens: 100,
          tools: [{ name: "get_weather", description: "Weather", input_schema: WEATHER_SCHEMA }],
          messages: [
            { role: "user", content: "Weather in Paris?" },
            { role: "assistant", content: msg.content },
            {
              role: "user",
              content: [
                { type: "tool_result", tool_use_id: tool.id, content: "sunny" },
                { type: "text", text: "thanks [[fake tokens=2]]" },
              ],
            },
          ],
        });
        assert.equal(next.stop_reason, "end_turn");
        assert.equal(next.content[0].text, "lorem ipsum");
      });

      test("messages.countTokens", async () => {
        const counted = await claude.messages.countTokens({
          model,
          messages: [{ role: "user", content: "one two three" }],
        });
        assert.equal(counted.input_tokens, 3);
      });
    });
  }

  test("models.list and models.retrieve", async () => {
    const ids = [];
    for await (const m of claude.models.list()) ids.push(m.id);
    for (const model of MODELS) assert.ok(ids.includes(model), ids.join(","));
    const one = await claude.models.retrieve("claude-test");
    assert.equal(one.id, "claude-test");
  });

  test("401 → AuthenticationError", async () => {
    const bad = new Anthropic({ baseURL: URL_, apiKey: UNKNOWN_KEY, maxRetries: 0 });
    await assert.rejects(
      bad.messages.create({ model: "claude-test", max_tokens: 5, messages: [{ role: "user", content: "hi" }] }),
      (err) => {
        assert.ok(err instanceof Anthropic.AuthenticationError, `${err?.constructor?.name}: ${err}`);
        assert.equal(err.status, 401);
        assert.equal(err.error?.type, "error");
        assert.equal(err.error?.error?.type, "authentication_error");
        assert.match(err.requestID ?? "", /^req_/);
        return true;
      },
    );
  });

  test("404 on an unknown model → NotFoundError", async () => {
    await assert.rejects(
      claude.messages.create({ model: "no-such-model", max_tokens: 5, messages: [{ role: "user", content: "hi" }] }),
      (err) => err instanceof Anthropic.NotFoundError && err.status === 404,
    );
  });
});

describe("openai", () => {
  for (const model of MODELS) {
    describe(model, () => {
      test("chat.completions.create", async () => {
        const completion = await oai.chat.completions.create({
          model,
          messages: [{ role: "user", content: "Say hello [[fake tokens=4]]" }],
        });
        assert.equal(completion.object, "chat.completion");
        assert.equal(completion.model, model);
        assert.equal(completion.choices.length, 1);
        assert.equal(completion.choices[0].message.role, "assistant");
        assert.equal(completion.choices[0].message.content, TEXT4);
        assert.equal(completion.choices[0].finish_reason, "stop");
        assert.equal(completion.usage.completion_tokens, 4);
        assert.ok(completion.usage.prompt_tokens > 0);
      });

      test("create({stream: true, stream_options: {include_usage: true}})", async () => {
        const stream = await oai.chat.completions.create({
          model,
          stream: true,
          stream_options: { include_usage: true },
          messages: [{ role: "user", content: "Say hello [[fake tokens=4]]" }],
        });
        let text = "";
        let finish;
        let usage;
        for await (const chunk of stream) {
          assert.equal(chunk.object, "chat.completion.chunk");
          assert.equal(chunk.model, model);
          if (chunk.usage) usage = chunk.usage;
          for (const choice of chunk.choices) {
            text += choice.delta?.content ?? "";
            if (choice.finish_reason) finish = choice.finish_reason;
          }
        }
        assert.equal(text, TEXT4);
        assert.equal(finish, "stop");
        assert.ok(usage, "no usage chunk");
        assert.equal(usage.completion_tokens, 4);
      });

      test("create({stream: true}) without include_usage has no usage chunk", async () => {
        const stream = await oai.chat.completions.create({
          model,
          stream: true,
          messages: [{ role: "user", content: "Say hello [[fake tokens=2]]" }],
        });
        let text = "";
        for await (const chunk of stream) {
          assert.ok(!chunk.usage, JSON.stringify(chunk));
          assert.ok(chunk.choices.length > 0, "empty choices chunk although include_usage was not asked");
          text += chunk.choices[0].delta?.content ?? "";
        }
        assert.equal(text, "lorem ipsum");
      });

      test("chat.completions.stream + finalChatCompletion", async () => {
        const stream = oai.chat.completions.stream({
          model,
          stream_options: { include_usage: true },
          messages: [{ role: "user", content: "Say hello [[fake tokens=4]]" }],
        });
        const deltas = [];
        stream.on("content.delta", ({ delta }) => deltas.push(delta));
        const completion = await stream.finalChatCompletion();
        assert.deepEqual(deltas, ["lorem", " ipsum", " dolor", " sit"]);
        assert.equal(completion.choices[0].message.content, TEXT4);
        assert.equal(completion.choices[0].finish_reason, "stop");
        assert.equal(completion.usage?.completion_tokens, 4);
      });

      test("tool call, streamed arguments", async () => {
        const tools = [
          {
            type: "function",
            function: { name: "get_weather", description: "Weather", parameters: WEATHER_SCHEMA },
          },
        ];
        const stream = oai.chat.completions.stream({
          model,
          tools,
          messages: [{ role: "user", content: "Weather in Paris? [[fake tool=get_weather tokens=2]]" }],
        });
        const argDeltas = [];
        stream.on("tool_calls.function.arguments.delta", ({ arguments_delta }) => argDeltas.push(arguments_delta));
        const completion = await stream.finalChatCompletion();
        const choice = completion.choices[0];
        assert.equal(choice.finish_reason, "tool_calls");
        assert.equal(choice.message.tool_calls.length, 1);
        const call = choice.message.tool_calls[0];
        assert.equal(call.type, "function");
        assert.equal(call.function.name, "get_weather");
        assert.ok(call.id);
        assert.deepEqual(JSON.parse(call.function.arguments), TOOL_INPUT);
        const nonEmpty = argDeltas.filter((d) => d !== "");
        assert.ok(nonEmpty.length >= 2, `arguments arrived in ${nonEmpty.length} deltas`);
        assert.deepEqual(JSON.parse(nonEmpty.join("")), TOOL_INPUT);

        // Second turn with the tool's result.
        const next = await oai.chat.completions.create({
          model,
          tools,
          messages: [
            { role: "user", content: "Weather in Paris?" },
            choice.message,
            { role: "tool", tool_call_id: call.id, content: "sunny" },
            { role: "user", content: "thanks [[fake tokens=2]]" },
          ],
        });
        assert.equal(next.choices[0].finish_reason, "stop");
        assert.equal(next.choices[0].message.content, "lorem ipsum");
      });
    });
  }

  test("models.list and models.retrieve", async () => {
    const ids = [];
    for await (const m of oai.models.list()) ids.push(m.id);
    for (const model of MODELS) assert.ok(ids.includes(model), ids.join(","));
    const one = await oai.models.retrieve("gpt-test");
    assert.equal(one.id, "gpt-test");
  });

  test("401 → AuthenticationError", async () => {
    const bad = new OpenAI({ baseURL: `${URL_}/v1`, apiKey: UNKNOWN_KEY, maxRetries: 0 });
    await assert.rejects(
      bad.chat.completions.create({ model: "gpt-test", messages: [{ role: "user", content: "hi" }] }),
      (err) => {
        assert.ok(err instanceof OpenAI.AuthenticationError, `${err?.constructor?.name}: ${err}`);
        assert.equal(err.status, 401);
        assert.equal(err.code, "invalid_api_key");
        assert.equal(typeof err.error?.message, "string");
        assert.match(err.requestID ?? "", /^req_/);
        return true;
      },
    );
  });

  test("404 on an unknown model → NotFoundError", async () => {
    await assert.rejects(
      oai.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "hi" }] }),
      (err) => err instanceof OpenAI.NotFoundError && err.status === 404,
    );
  });
});
