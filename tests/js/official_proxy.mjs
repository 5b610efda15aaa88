// fal's official server proxy (@fal-ai/server-proxy 1.2.1) on Node's plain http server, pointed
// at a local runtime instead of fal: the comparison point of bench/proxy.py.
//
//   node official_proxy.mjs <upstream base URL> [port]     (prints "listening <port>")
//
// The package ships adapters for Express, Next.js, Hono, Remix and SvelteKit only; this is the
// smallest adapter over its `handleRequest(behavior, config)` core, written as those are.
// The proxy calls the global `fetch` with canonical fal URLs (it is strict: allowedUrlPatterns
// are checked first), so `fetch` is wrapped to send fal's hosts where falweb's hosts map sends
// them (https://queue.fal.run/... -> <base>/queue/..., fal.run -> /run, rest.* -> /rest).
// Its default allowlist lacks /tokens/ and initiate-multipart; both are added here.

import http from "node:http";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { handleRequest, DEFAULT_ALLOWED_URL_PATTERNS, DEFAULT_PROXY_ROUTE, resolveProxyConfig } =
  require("@fal-ai/server-proxy");

const [upstream, port = "0"] = process.argv.slice(2);
const PREFIXES = [
  ["https://queue.fal.run", "/queue"],
  ["https://fal.run", "/run"],
  ["https://rest.fal.ai", "/rest"],
  ["https://rest.alpha.fal.ai", "/rest"],
];

const realFetch = globalThis.fetch;
globalThis.fetch = (url, init) => {
  for (const [origin, prefix] of PREFIXES) {
    if (url === origin || url.startsWith(origin + "/") || url.startsWith(origin + "?")) {
      return realFetch(upstream + prefix + url.slice(origin.length), init);
    }
  }
  return Promise.reject(new Error("not a fal URL"));
};

const config = resolveProxyConfig({
  allowedUrlPatterns: [
    ...DEFAULT_ALLOWED_URL_PATTERNS,
    "rest.fal.ai/tokens/",
    "rest.fal.ai/storage/upload/initiate-multipart\\?storage_type=fal-cdn-v3",
  ],
  resolveFalAuth: async () => "Key bench-key",
});

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve(chunks.length ? Buffer.concat(chunks).toString() : undefined));
    req.on("error", reject);
  });
}

const server = http.createServer(async (req, res) => {
  if (!req.url.startsWith(DEFAULT_PROXY_ROUTE)) {
    res.writeHead(404).end();
    return;
  }
  try {
    await handleRequest(
      {
        id: "node-http",
        method: req.method,
        getHeaders: () => req.headers,
        getHeader: (name) => req.headers[name.toLowerCase()] ?? null,
        sendHeader: (name, value) => res.setHeader(name, value),
        getRequestBody: () => readBody(req),
        respondWith: (status, data) => {
          res.writeHead(status, { "content-type": "application/json" });
          res.end(JSON.stringify(data));
        },
        sendResponse: async (response) => {
          res.writeHead(response.status);
          if (response.body) {
            for await (const chunk of response.body) res.write(chunk);
          }
          res.end();
        },
      },
      config,
    );
  } catch (error) {
    if (!res.headersSent) res.writeHead(500);
    res.end();
  }
});

server.keepAliveTimeout = 30_000;
server.listen(Number(port), "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
