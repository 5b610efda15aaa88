// Drives fal's official JavaScript clients through a proxy URL and prints what they got, as
// one JSON object on stdout, for tests/test_proxy_js.py to assert on.
//
//   node proxy_client.mjs <proxy url> [1.x|0.x]
//
// 1.x: @fal-ai/client 1.10.1 with proxyUrl {url, when: "always"} (proxying outside browsers).
// 0.x: @fal-ai/serverless-client 0.15.0, whose proxy middleware only runs where `window`
//      exists, so a bare `window` (no document: still "not a browser") is defined first.
// Each scenario is caught on its own so one failure does not hide the others.

import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const [proxyUrl, generation = "1.x"] = process.argv.slice(2);
const ENDPOINT = "fal-ai/fast-sdxl";
const INPUT = { prompt: "a cat in a fish market", num_inference_steps: 2, image_size: "square" };

async function attempt(fn) {
  try {
    return await fn();
  } catch (error) {
    return { error: String(error?.message ?? error), status: error?.status, body: error?.body };
  }
}

// The package's exports map hides the token helper; load it by file path, as the client does.
function internal(pkg, file) {
  return require(path.join(here, "node_modules", pkg, "src", file));
}

async function client1x() {
  const { createFalClient } = await import("@fal-ai/client");
  const options = { proxyUrl: { url: proxyUrl, when: "always" } };
  const fal = createFalClient(options);
  const out = {};

  out.subscribe_polling = await attempt(async () => {
    const statuses = [];
    let enqueued = null;
    const result = await fal.subscribe(ENDPOINT, {
      input: INPUT,
      logs: true,
      pollInterval: 50,
      onEnqueue: (requestId) => (enqueued = requestId),
      onQueueUpdate: (update) => statuses.push(update.status),
    });
    return { requestId: result.requestId, enqueued, statuses, data: result.data };
  });

  out.subscribe_streaming = await attempt(async () => {
    const statuses = [];
    const result = await fal.subscribe(ENDPOINT, {
      input: INPUT,
      logs: true,
      mode: "streaming",
      onQueueUpdate: (update) => statuses.push(update.status),
    });
    return { requestId: result.requestId, statuses, data: result.data };
  });

  out.queue = await attempt(async () => {
    const submitted = await fal.queue.submit(ENDPOINT, { input: INPUT });
    const requestId = submitted.request_id;
    let status;
    for (let i = 0; i < 400; i++) {
      status = await fal.queue.status(ENDPOINT, { requestId, logs: true });
      if (status.status === "COMPLETED") break;
      await new Promise((r) => setTimeout(r, 25));
    }
    const result = await fal.queue.result(ENDPOINT, { requestId });
    return { submitted, status, result };
  });

  out.cancel = await attempt(async () => {
    // Enough steps that the job is still queued or running when the cancel arrives.
    const slow = { ...INPUT, num_inference_steps: 50 };
    const { request_id: requestId } = await fal.queue.submit(ENDPOINT, { input: slow });
    await fal.queue.cancel(ENDPOINT, { requestId });
    return { requestId, cancelled: true };
  });

  out.run = await attempt(async () => {
    const result = await fal.run(ENDPOINT, { input: INPUT });
    return { requestId: result.requestId, data: result.data };
  });

  out.stream = await attempt(async () => {
    const stream = await fal.stream(ENDPOINT, { input: INPUT });
    const events = [];
    for await (const event of stream) events.push(event);
    const done = await stream.done();
    return { events: events.length, done, requestId: stream.requestId };
  });

  out.upload = await attempt(async () => {
    const bytes = new TextEncoder().encode("Hello, World!");
    const url = await fal.storage.upload(new Blob([bytes], { type: "text/plain" }));
    const fetched = await fetch(url);
    return { url, status: fetched.status, text: await fetched.text() };
  });

  out.token = await attempt(async () => {
    const { createConfig } = internal("@fal-ai/client", "config.js");
    const { getTemporaryAuthToken } = internal("@fal-ai/client", "auth.js");
    const token = await getTemporaryAuthToken(ENDPOINT, createConfig(options));
    return { token };
  });
  return out;
}

async function client0x() {
  globalThis.window = {};
  const fal = require("@fal-ai/serverless-client");
  fal.config({ proxyUrl });
  const out = {};

  out.subscribe_polling = await attempt(async () => {
    const statuses = [];
    const data = await fal.subscribe(ENDPOINT, {
      input: INPUT,
      logs: true,
      pollInterval: 50,
      onQueueUpdate: (update) => statuses.push(update.status),
    });
    return { statuses, data };
  });

  out.run = await attempt(async () => ({ data: await fal.run(ENDPOINT, { input: INPUT }) }));

  out.upload = await attempt(async () => {
    const url = await fal.storage.upload(new Blob(["Hello, 0.x!"], { type: "text/plain" }));
    const fetched = await fetch(url);
    return { url, status: fetched.status, text: await fetched.text() };
  });

  out.token = await attempt(async () => {
    const { getTemporaryAuthToken } = internal("@fal-ai/serverless-client", "auth.js");
    return { token: await getTemporaryAuthToken(ENDPOINT) };
  });
  return out;
}

const out = generation === "0.x" ? await client0x() : await client1x();
process.stdout.write(JSON.stringify(out) + "\n");
