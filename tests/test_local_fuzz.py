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
