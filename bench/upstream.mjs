// A trivial fal upstream for bench/proxy.py: the floor every proxy is measured against.
//
//   node upstream.mjs [port]     (prints "listening <port>")
//
// GET (any path): a completed queue status, as small as fal's, with x-fal-request-id.
// POST .../stream: three SSE events, the first at once. PUT: the body is drained (counted,
// never held) and answered 200 with its length. Anything else: 200 with a small JSON body.

import http from "node:http";

const STATUS = JSON.stringify({
  status: "COMPLETED",
  request_id: "0193b1d2-bench-4000-8000-000000000000",
  response_url: "https://queue.fal.run/fal-ai/fast-sdxl/requests/0193b1d2-bench",
  status_url: "https://queue.fal.run/fal-ai/fast-sdxl/requests/0193b1d2-bench/status",
  cancel_url: "https://queue.fal.run/fal-ai/fast-sdxl/requests/0193b1d2-bench/cancel",
  logs: null,
  metrics: { inference_time: 0.01 },
});
const HEADERS = {
  "content-type": "application/json",
  "x-fal-request-id": "0193b1d2-bench-4000-8000-000000000000",
};
const json = (res, body) =>
  res.writeHead(200, { ...HEADERS, "content-length": Buffer.byteLength(body) }).end(body);

const server = http.createServer((req, res) => {
  if (req.method === "PUT") {
    let size = 0;
    req.on("data", (chunk) => (size += chunk.length));
    req.on("end", () => json(res, JSON.stringify({ size })));
    return;
  }
  if (req.method === "POST" && req.url.endsWith("/stream")) {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      let n = 0;
      const send = () => {
        res.write(`data: ${JSON.stringify({ step: n })}\n\n`);
        if (++n < 3) setTimeout(send, 5);
        else res.end();
      };
      send();
    });
    return;
  }
  req.resume();
  req.on("end", () => json(res, STATUS));
});

server.keepAliveTimeout = 30_000;
server.listen(Number(process.argv[2] || 0), "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
