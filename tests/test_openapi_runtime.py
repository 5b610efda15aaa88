"""The local runtime answers any documented endpoint: each of fal's ten reference documents,
and a document written here by hand, with outputs of the documented shape; every kind of
constraint in a document is a 422 naming the field."""

import base64
import io
import json
import wave

import av
import pytest
import requests
from marshmallow import fields
from marshmallow import validate
from PIL import Image

from falweb.client import FalClient
from falweb.hosts import Hosts
from falweb.openapi import known_endpoint_ids
from falweb.openapi.documents import BUILTIN
from falweb.openapi.examples import example_input
from falweb.schemas import get_endpoint
from falweb.schemas.catalog import documented_endpoint
from falweb.schemas.fields import FileUrl
from falweb.schemas.fields import ImageSize
from falweb.schemas.fields import Text
from falweb.testing import serve_local_runtime
from tests.test_openapi_catalog import tiny_document

TEN = sorted(BUILTIN.endpoint_ids())


def png_data_uri(size=(64, 48)):
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 90)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def runnable_example(endpoint_id):
    """The document's example input; a file URL example (on fal's or a vendor's CDN, which
    this sandbox cannot reach) is replaced by an image sent inline."""
    example = example_input(documented_endpoint(endpoint_id))
    for name in list(example):
        if name.endswith("_url") and isinstance(example[name], str):
            example[name] = png_data_uri()
    # The smallest preset keeps the test quick; the documented default is tested elsewhere.
    if "image_size" in example or "image_size" in get_endpoint(endpoint_id).input_schema().fields:
        example["image_size"] = "square"
    return example


def fetch(url):
    if url.startswith("data:"):
        return base64.b64decode(url.split(",", 1)[1])
    answer = requests.get(url, timeout=10)
    assert answer.status_code == 200
    return answer.content


def check_media(output, endpoint_id):
    """The files in ``output`` are what they say, at the size asked for."""
    for image in output.get("images", []) + ([output["image"]] if "image" in output else []):
        picture = Image.open(io.BytesIO(fetch(image["url"])))
        assert picture.size == (image["width"], image["height"])
    if "video" in output:
        video = output["video"]
        assert video["content_type"] == "video/mp4"
        with av.open(io.BytesIO(fetch(video["url"]))) as container:
            stream = container.streams.video[0]
            frames = sum(1 for _ in container.decode(stream))
            assert frames >= 8 and stream.codec_context.name == "h264"
    if "audio" in output:
        with wave.open(io.BytesIO(fetch(output["audio"]["url"]))) as clip:
            assert clip.getnframes() > 0


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    instance = tmp_path_factory.mktemp("instance")
    (instance / "openapi").mkdir()
    (instance / "openapi" / "speech.json").write_text(json.dumps(tiny_document("acme/speech")))
    with serve_local_runtime({"TESTING": True, "FALWEB_LOCAL_STEP_DELAY": 0.0,
                              "FALWEB_LOCAL_WORKERS": 2, "FALWEB_INSTANCE_PATH": str(instance)}
                             ) as server:
        yield server


@pytest.fixture(scope="module")
def client(runtime):
    with FalClient(hosts=Hosts(runtime.url), poll_interval=0.02) as client:
        yield client


@pytest.mark.parametrize("endpoint_id", TEN)
def test_the_documents_example_input_completes_with_a_documented_output(client, endpoint_id):
    output = client.subscribe(endpoint_id, runnable_example(endpoint_id), timeout=60).data
    # The generated output schema accepts it, with every required property present.
    assert documented_endpoint(endpoint_id).output_schema().validate(output) == {}
    check_media(output, endpoint_id)
    if endpoint_id == "openrouter/router":
        assert "SYNTHETIC PREVIEW" in output["output"]
    if endpoint_id == "fal-ai/kling-video/v1/standard/text-to-video":
        assert set(output) == {"video"}


def test_requested_image_size_and_count_are_honoured(client):
    output = client.subscribe("fal-ai/flux/schnell", {
        "prompt": "p", "image_size": {"width": 96, "height": 160}, "num_images": 2}).data
    assert [(i["width"], i["height"]) for i in output["images"]] == [(96, 160)] * 2
    assert output["has_nsfw_concepts"] == [False, False]


def test_a_document_written_by_hand_works_end_to_end(client, runtime):
    assert "acme/speech" in known_endpoint_ids()
    output = client.subscribe("acme/speech", {"text": "hello there"}).data
    assert output["audio"]["content_type"] == "audio/wav"
    check_media(output, "acme/speech")
    answer = requests.post(f"{runtime.url}/run/acme/speech", json={"speed": 9}, timeout=10)
    assert answer.status_code == 422
    locs = {tuple(item["loc"]) for item in answer.json()["detail"]}
    assert locs == {("body", "text"), ("body", "speed")}


def violations(endpoint):
    """(field, input, kind) for every kind of constraint the endpoint's input has."""
    schema = endpoint.input_schema()
    base = {name: value for name, value in runnable_example(endpoint.endpoint_id).items()}
    for name, field in schema.fields.items():
        if field.metadata.get("hidden"):
            continue
        if field.required:
            yield name, {k: v for k, v in base.items() if k != name}, "required"
        for validator in field.validators:
            if isinstance(validator, validate.OneOf):
                yield name, base | {name: "no-such-choice"}, "enum"
            if isinstance(validator, validate.Range):
                if validator.max is not None:
                    yield name, base | {name: validator.max + 1}, "maximum"
                if validator.min is not None:
                    yield name, base | {name: validator.min - 1}, "minimum"
        if isinstance(field, Text) and field.max_length and field.max_length < 10_000:
            yield name, base | {name: "x" * (field.max_length + 1)}, "maxLength"
        if isinstance(field, ImageSize):
            yield name, base | {name: {"width": 0, "height": 64}}, "exclusiveMinimum"
        if isinstance(field, FileUrl):
            yield name, base | {name: "ftp://example.com/x.png"}, "file URL"
        if isinstance(field, (fields.Integer, fields.Float)):
            yield name, base | {name: "many"}, "type"
        if isinstance(field, fields.Boolean):
            yield name, base | {name: "yes"}, "type"
        if isinstance(field, fields.List):
            yield name, base | {name: "not a list"}, "type"
        if isinstance(field, fields.Nested):
            yield name, base | {name: 5}, "type"


@pytest.mark.parametrize("endpoint_id", TEN)
def test_each_kind_of_constraint_is_a_422_naming_the_field(runtime, endpoint_id):
    endpoint = get_endpoint(endpoint_id)
    kinds = set()
    with requests.Session() as session:
        for name, data, kind in violations(endpoint):
            answer = session.post(f"{runtime.url}/run/{endpoint_id}", json=data, timeout=10)
            assert answer.status_code == 422, (name, kind, answer.text)
            detail = answer.json()["detail"]
            assert any(item["loc"][:2] == ["body", name] for item in detail), (kind, detail)
            kinds.add(kind)
    assert {"required"} <= kinds


def test_an_image_only_engine_does_not_answer_a_video_endpoint(local_config):
    # A stand-in for the diffusers engine (which needs torch): a real engine, images only.
    class ImagesOnly:
        name = "diffusers"
        synthetic = False

    with serve_local_runtime(local_config) as server:
        server.runtime.engine = ImagesOnly()
        video = requests.post(f"{server.url}/queue/fal-ai/kling-video/v1/standard/text-to-video",
                              json={"prompt": "p"}, timeout=10)
        assert video.status_code == 404
        assert "not served by the diffusers engine" in video.json()["detail"]
        assert server.runtime.serves(get_endpoint("fal-ai/flux/schnell"))
        assert server.runtime.serves(get_endpoint("fal-ai/fast-sdxl"))
