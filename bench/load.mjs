// The load generator of falweb's benches: keep-alive HTTP/1.1 requests from N concurrent
// connections for a while, in one Node process (so the client costs far less CPU than the
// Python servers it measures). Prints one JSON line: requests, errors, req/s, p50/p90/p99 ms.
//
//   node load.mjs '<json spec>'
//   spec: {"url", "method"?, "headers"?, "body"?, "connections", "seconds", "warmup"?,
//          "count"? (stop after this many requests), "expect"? (status codes counted as
//          success, default [200])}

import http from "node:http";

const spec = JSON.parse(process.argv[2]);
const url = new URL(spec.url);
const agent = new http.Agent({ keepAlive: spec.keepAlive ?? true, maxSockets: spec.connections });
const expect = new Set(spec.expect || [200]);
const body = spec.body === undefined ? null : Buffer.from(spec.body);
const headers = { ...(spec.headers || {}) };
if (body) headers["content-length"] = body.length;

const codes = {};

function once() {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    const req = http.request(
      { agent, host: url.hostname, port: url.port, path: url.pathname + url.search,
        method: spec.method || "GET", headers },
      (res) => {
        res.on("data", () => {});
        res.on("end", () => {
          codes[res.statusCode] = (codes[res.statusCode] || 0) + 1;
          resolve([expect.has(res.statusCode), started]);
        });
        res.on("error", () => resolve([false, started]));
      },
    );
    req.on("error", () => resolve([false, started]));
    req.end(body);
  });
}

async function run(seconds, record, count = Infinity) {
  const stopAt = Date.now() + seconds * 1000;
  const latencies = [];
  let errors = 0;
  let started = 0;
  async function loop() {
    while (Date.now() < stopAt && started++ < count) {
      const [ok, started] = await once();
      if (record) latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
      if (!ok) errors++;
    }
  }
  const began = process.hrtime.bigint();
  await Promise.all(Array.from({ length: spec.connections }, loop));
  const elapsed = Number(process.hrtime.bigint() - began) / 1e9;
  return { latencies, errors, elapsed };
}

function pct(sorted, q) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.round((q / 100) * (sorted.length - 1)))];
}

if (spec.warmup ?? 0.5) await run(spec.warmup ?? 0.5, false);
const { latencies, errors, elapsed } = await run(spec.seconds, true, spec.count);
latencies.sort((a, b) => a - b);
console.log(JSON.stringify({
  requests: latencies.length,
  errors,
  codes,
  rps: latencies.length / elapsed,
  p50: pct(latencies, 50),
  p90: pct(latencies, 90),
  p99: pct(latencies, 99),
}));
agent.destroy();
