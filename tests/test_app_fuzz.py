"""Every route of the app, fuzzed: hostile paths, queries, headers and bodies never get a 500
or a traceback in the log (the runtime's own routes are fuzzed in test_local_fuzz.py)."""

import json
import logging
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from falweb import history

# Values that broke something once, somewhere: deep nesting, lone surrogates, huge numbers,
# long digit runs, odd Unicode digits, control characters, path tricks.
# ("%ED%A0%80" is a lone surrogate's bytes: what a URL or form can carry of one.)
NASTY_TEXT = ["", "0", "-1", "9" * 400, "99999999999999999999999", "²", "%ED%A0%80", "\x00",
              "../../etc/passwd", "%2e%2e%2f", "//evil.example", "javascript:alert(1)",
              "<script>x</script>", "a" * 5000, "fal-ai/fast-sdxl", "null", "true"]
NASTY_JSON = ["[" * 100_000 + "]" * 100_000, '{"a":' * 5000 + "1" + "}" * 5000,
              '{"prompt": "\\ud800"}', '{"prompt": 1e999}', '{"status": "OK", "payload": []}',
              '{"prompt": "x", "seed": 123456789012345678901234567890}', "not json", "{}"]


def routes(app):
    found = []
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((rule, method))
    return found


def build_path(rule, values):
    """The rule's path with ``values`` in its variables, percent-encoded as a browser would
    send them (a ``?`` in a value is part of the path, not a query)."""
    path = rule.rule
    for argument in rule.arguments:
        converter = rule._converters[argument].__class__.__name__
        value = "0" if converter == "IntegerConverter" else values.pop(0) if values else "x"
        placeholder = (f"<{'int:' if converter == 'IntegerConverter' else ''}"
                       f"{'path:' if converter == 'PathConverter' else ''}{argument}>")
        safe = "/%" if converter == "PathConverter" else "%"
        path = path.replace(placeholder, quote(value, safe=safe))
    return path


@pytest.fixture
def fuzz_app(app):
    with app.app_context():
        history.add("known", "fal-ai/fast-sdxl", {"prompt": "p"}, backend="local",
                    status="COMPLETED", owner="local")
        history.update("known", status="COMPLETED",
                       result={"images": [{"url": "javascript:alert(1)"}]})
    return app


def test_every_route_survives_the_classic_payloads(fuzz_app, caplog):
    client = fuzz_app.test_client()
    for rule, method in routes(fuzz_app):
        for text in NASTY_TEXT:
            path = build_path(rule, [text, text])
            for body in (None, *NASTY_JSON[:3], NASTY_JSON[3], NASTY_JSON[6]):
                response = client.open(
                    path, method=method, query_string={"page": text, "from": text},
                    data=body, headers={"Content-Type": "application/json",
                                        "HX-Request": "true",
                                        "X-Fal-Webhook-Timestamp": text,
                                        "x-fal-target-url": "https://fal.run/" + text})
                assert response.status_code < 500, (method, path, body and body[:40])
            form = {"prompt": text, "seed": text, "image_size": text, "loras-0-path": text,
                    "loras-0-scale": text, "page": text, "csrf_token": text}
            response = client.open(path, method=method, data=form)
            assert response.status_code < 500, (method, path, "form")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], \
        [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_requests_to_every_route_never_500(fuzz_app, caplog, data):
    client = fuzz_app.test_client()
    rule, method = data.draw(st.sampled_from(routes(fuzz_app)))
    text = st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=40))
    path = build_path(rule, [data.draw(text).replace("\x00", ""), data.draw(text)])
    body = data.draw(st.one_of(
        st.none(), st.sampled_from(NASTY_JSON),
        st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                               st.text(max_size=20)),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                     max_leaves=20).map(json.dumps)))
    headers = data.draw(st.dictionaries(
        st.sampled_from(["Content-Type", "HX-Request", "Authorization", "Origin",
                         "X-Fal-Webhook-Timestamp", "X-Fal-Webhook-Signature",
                         "X-Fal-Webhook-Request-Id", "X-Fal-Webhook-User-Id",
                         "x-fal-target-url", "Accept", "Content-Length"]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
        max_size=5))
    headers.pop("Content-Length", None)  # the test client sets the real one
    response = client.open(path, method=method, data=body, headers=headers,
                           query_string={"page": data.draw(text)})
    assert response.status_code < 500, (method, path)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors
