// Drives fal's official JavaScript client (1.x) through a proxy URL against apps the local
// runtime hosts, and prints what it got as one JSON object for tests/test_apps_js.py.
//
//   node apps_client.mjs <proxy url> <webhook url> <realtime base>
//
// Realtime: the client opens wss://fal.run/<id>/realtime with the global WebSocket (Node 22
// has one; here the `ws` package stands in), rewritten to the runtime's realtime base
// (fal-protocol §13.2, 4); its token comes through the proxy.
//
// Each scenario is caught on its own so one failure does not hide the others.

const [proxyUrl, webhookUrl, realtimeBase] = process.argv.slice(2);
const T2I = "local/text-to-image";
const INPUT = { prompt: "from node", width: 48, height: 32, num_inference_steps: 2 };

async function attempt(fn) {
  try {
    return await fn();
  } catch (error) {
    return { error: String(error?.message ?? error), status: error?.status, body: error?.body };
  }
}

async function download(url) {
  const fetched = await fetch(url);
  return { status: fetched.status, type: fetched.headers.get("content-type"),
           bytes: (await fetched.arrayBuffer()).byteLength };
}

const { createFalClient } = await import("@fal-ai/client");
const fal = createFalClient({ proxyUrl: { url: proxyUrl, when: "always" } });
const out = {};

out.subscribe = await attempt(async () => {
  const statuses = [];
  let logs = [];
  const result = await fal.subscribe(T2I, {
    input: INPUT,
    logs: true,
    pollInterval: 50,
    onQueueUpdate: (update) => {
      statuses.push(update.status);
      if (update.logs) logs = update.logs.map((line) => line.message);
    },
  });
  return { requestId: result.requestId, statuses, logs, data: result.data,
           file: await download(result.data.images[0].url) };
});

out.webhook = await attempt(async () => {
  const submitted = await fal.queue.submit(T2I, { input: INPUT, webhookUrl });
  return { requestId: submitted.request_id };
});

out.cancel = await attempt(async () => {
  const slow = { ...INPUT, num_inference_steps: 50, step_seconds: 0.2 };
  const { request_id: requestId } = await fal.queue.submit(T2I, { input: slow });
  let status;
  for (let i = 0; i < 600; i++) {
    status = await fal.queue.status(T2I, { requestId, logs: true });
    if (status.logs && status.logs.length) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  await fal.queue.cancel(T2I, { requestId });
  for (let i = 0; i < 600; i++) {
    status = await fal.queue.status(T2I, { requestId, logs: true });
    if (status.status === "COMPLETED") break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const result = await attempt(() => fal.queue.result(T2I, { requestId }));
  return { requestId, status, result };
});

out.run = await attempt(async () => {
  const result = await fal.run(T2I, { input: INPUT });
  return { requestId: result.requestId, data: result.data };
});

out.stream = await attempt(async () => {
  const stream = await fal.stream("local/streaming-text", { input: { prompt: "js", steps: 3 } });
  const events = [];
  for await (const event of stream) events.push(event);
  return { events, done: await stream.done() };
});

out.realtime = await attempt(async () => {
  const { default: WS } = await import("ws");
  globalThis.WebSocket = class extends WS {
    constructor(url, protocols) {
      super(String(url).replace("wss://fal.run/", realtimeBase), protocols);
    }
  };
  const results = [];
  const errors = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no realtime answers in 20 s")), 20000);
    const connection = fal.realtime.connect("local/realtime-sketch", {
      throttleInterval: 0,
      onResult: (result) => {
        results.push({ seed: result.seed, prompt: result.prompt, bytes: result.image?.length });
        if (results.length < 3) {
          connection.send({ prompt: "js rt", seed: results.length, size: 16 });
        } else {
          clearTimeout(timer);
          connection.close();
          resolve();
        }
      },
      onError: (error) => errors.push(String(error?.message ?? error)),
    });
    connection.send({ prompt: "js rt", seed: 0, size: 16 });
  });
  return { results, errors };
});

process.stdout.write(JSON.stringify(out) + "\n");
