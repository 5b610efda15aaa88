// One request with fal's official JavaScript client (1.x) through a proxy URL, to any
// endpoint; prints {requestId, data} (or {error, status, body}) as JSON on stdout, for
// tests/test_openapi_proxy_js.py to check against the endpoint's OpenAPI document.
//
//   node any_endpoint.mjs <proxy url> <endpoint id> '<input as JSON>'

const [proxyUrl, endpointId, inputJson] = process.argv.slice(2);

try {
  const { createFalClient } = await import("@fal-ai/client");
  const fal = createFalClient({ proxyUrl: { url: proxyUrl, when: "always" } });
  const result = await fal.subscribe(endpointId, {
    input: JSON.parse(inputJson),
    logs: true,
    pollInterval: 50,
  });
  console.log(JSON.stringify({ requestId: result.requestId, data: result.data }));
} catch (error) {
  console.log(JSON.stringify({ error: String(error?.message ?? error), status: error?.status,
                               body: error?.body }));
}
