"""Random JSON into the local runtime never gets a 500: bad input is a 422 naming why."""

import json

import pytest
import requests
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from falweb.schemas import CATALOG

FIELDS = sorted({name for endpoint in CATALOG.values()
                 for name in endpoint.input_schema().fields} | {"", "unknown"})

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=False), st.text(max_size=30),
                    st.sampled_from(["square", "png", "jpeg", "v1", "data:,x", "custom"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(FIELDS + ["width", "height", "path",
                                                                  "scale"]), inner, max_size=4),
                      max_leaves=8)
inputs = st.dictionaries(st.sampled_from(FIELDS), values, max_size=6)
bodies = st.one_of(inputs.map(json.dumps), values.map(json.dumps),
                   st.binary(max_size=40).map(lambda b: b.decode("latin-1")))


@pytest.mark.slow
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint_id=st.sampled_from(list(CATALOG) + ["fal-ai/nope", "110602490-lora"]),
       body=bodies, path=st.sampled_from(["queue", "run"]))
def test_random_bodies_never_500(shared_runtime, endpoint_id, body, path):
    answer = requests.post(f"{shared_runtime.url}/{path}/{endpoint_id}", data=body.encode(),
                           headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code in (200, 404, 422), answer.text[:500]
    assert answer.headers["content-type"] == "application/json"
    if answer.status_code == 422:
        for item in answer.json()["detail"]:
            assert item["loc"][0] in ("body", "query", "header") and item["msg"]


# -- hostile JSON at every route ----------------------------------------------------------
# Parsers and encoders break on what schemas never see: nesting past the recursion limit,
# lone surrogates (valid JSON escapes, not Unicode), numbers past int/float limits.

BODY_FIELDS = sorted(set(FIELDS) | {"content_type", "file_name", "allowed_apps",
                                    "token_expiration", "parts", "partNumber", "etag"})
HUGE_NUMBERS = ["1e999", "-1e999", "NaN", "Infinity", "-Infinity", "1e-999", "9" * 5000,
                "-" + "9" * 4000, "1" + "0" * 400, "0." + "0" * 500 + "1",
                "123456789012345678901234567890.5", str(2**64), str(-(2**63) - 1)]
surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
# json.dumps escapes a lone surrogate as \udXXX: valid JSON text, not valid Unicode.
surrogate_strings = st.text(alphabet=surrogates | st.characters(max_codepoint=0x2FF),
                            min_size=1, max_size=8).map(json.dumps)


def _nest(depth, shape, inner="1"):
    opener, closer = {"list": ("[", "]"), "dict": ('{"a":', "}")}[shape]
    return opener * depth + inner + closer * depth


deep = st.builds(_nest, st.sampled_from([33, 200, 999, 1001, 5000, 100_000]),
                 st.sampled_from(["list", "dict"]))
hostile_values = st.one_of(deep, surrogate_strings, st.sampled_from(HUGE_NUMBERS))


@st.composite
def hostile_bodies(draw):
    """JSON text with a hostile value as the body, as a field, in a list or as a key."""
    value = draw(hostile_values)
    field = json.dumps(draw(st.sampled_from(BODY_FIELDS)))
    shape = draw(st.sampled_from(["bare", "field", "list", "key", "lora", "parts"]))
    if shape == "bare":
        return value
    if shape == "field":
        return '{"prompt": "x", ' + field + ": " + value + "}"
    if shape == "list":
        return "[" + value + ", " + value + "]"
    if shape == "key":
        return "{" + draw(surrogate_strings) + ": " + value + "}"
    if shape == "lora":
        return '{"prompt": "x", "loras": [{"path": ' + value + ', "scale": ' + value + "}]}"
    return '{"parts": [{"partNumber": ' + value + ', "etag": ' + value + "}]}"


@pytest.fixture(scope="module")
def route_calls(shared_runtime):
    """(method, path, headers) for every route of the runtime, with real ids in the paths:
    a finished request, an upload, a file, a multipart upload, a CDN token."""
    import re

    base = shared_runtime.url
    job = requests.post(f"{base}/queue/fal-ai/fast-sdxl", timeout=10,
                        json={"prompt": "x", "num_inference_steps": 1, "image_size": "square"})
    cdn = requests.post(f"{base}/rest/storage/auth/token", timeout=10).json()["token"]
    auth = {"Authorization": f"Bearer {cdn}"}
    multipart = requests.post(f"{base}/cdn/files/upload/multipart", headers=auth,
                              timeout=10).json()
    file_id, name = multipart["access_url"].rsplit("/", 2)[-2:]
    upload = requests.post(f"{base}/rest/storage/upload/initiate", json={}, timeout=10).json()
    samples = {"endpoint_id": "fal-ai/fast-sdxl", "base": "fal-ai/fast-sdxl",
               "request_id": job.json()["request_id"], "upload_id": multipart["uploadId"],
               "file_id": file_id, "name": name, "part_number": "1", "filename": "x.css"}
    calls = []
    for rule in shared_runtime.app.url_map.iter_rules():
        path = rule.rule
        for argument in rule.arguments:
            value = samples[argument]
            if rule.endpoint == "cdn.upload":
                value = upload["upload_url"].rsplit("/", 1)[1]
            path = re.sub(rf"<(?:\w+:)?{argument}>", value, path)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            calls.append((method, path, auth if path.startswith("/cdn/files") else {}))
    assert len(calls) >= 20
    return calls


def _call(base, method, path, headers, body):
    params = {"prompt": body} if method == "GET" and len(body) < 8000 else None
    return requests.request(method, base + path, data=body.encode(), params=params,
                            headers={"Content-Type": "application/json", **headers},
                            timeout=30)


def _assert_not_500(answer, caplog, what):
    assert answer.status_code < 500, (what, answer.status_code, answer.text[:300])
    crashes = [r.getMessage() for r in caplog.records if r.exc_info]
    assert not crashes, (what, crashes)


SWEEP = [_nest(100_000, "list"), '{"prompt": ' + _nest(2000, "dict") + "}",
         '{"prompt": "\\ud800"}', '{"\\udc00": "x"}',
         '{"prompt": "x", "image_size": {"width": "\\udfff", "height": 1e999}}',
         '{"prompt": "x", "seed": ' + "9" * 5000 + "}", '{"prompt": "x", "num_images": 1e999}',
         '{"prompt": "x", "num_inference_steps": 1' + "0" * 400 + "}",
         '{"content_type": "a/\\ud800", "file_name": "\\udfff"}',
         '{"allowed_apps": ["fast-sdxl"], "token_expiration": ' + "9" * 1000 + "}",
         '{"parts": [{"partNumber": 1e999, "etag": "x"}]}',
         '{"parts": [{"partNumber": -1e999, "etag": "\\ud800"}]}',
         '{"parts": [{"partNumber": NaN, "etag": "x"}]}']


def test_every_route_takes_hostile_json_without_a_500(shared_runtime, route_calls, caplog):
    for method, path, headers in route_calls:
        for body in SWEEP:
            answer = _call(shared_runtime.url, method, path, headers, body)
            _assert_not_500(answer, caplog, (method, path, body[:80]))


@pytest.mark.slow
@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), body=hostile_bodies())
def test_random_hostile_json_never_500(shared_runtime, route_calls, caplog, data, body):
    method, path, headers = data.draw(st.sampled_from(route_calls), label="route")
    answer = _call(shared_runtime.url, method, path, headers, body)
    _assert_not_500(answer, caplog, (method, path, body[:80]))
