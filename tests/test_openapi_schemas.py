"""Schemas generated from fal's real OpenAPI documents, and the hand-written ones held to them."""

import json
from pathlib import Path

import pytest
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import missing
from marshmallow import validate

from falweb.openapi import known_endpoint_ids
from falweb.openapi.endpoints import endpoint_from_document
from falweb.schemas import CATALOG
from falweb.schemas import fal_detail
from falweb.schemas import get_endpoint
from falweb.schemas import load_input
from falweb.schemas.catalog import documented_endpoint
from falweb.schemas.fields import ImageSize

REFERENCE = Path(__file__).resolve().parent.parent / "falweb" / "openapi" / "builtin"
DOCUMENTS = {json.loads(p.read_text())["info"]["x-fal-metadata"]["endpointId"]: json.loads(
    p.read_text()) for p in sorted(REFERENCE.glob("*.json"))}

# Where a hand-written schema deliberately differs from fal's document, and why. Anything
# else that differs (a default, a bound, an enum, a required flag) fails the test.
HOUSE_RULES = {
    # The seed's example sends this model; fal lists no default, falweb needs one to run it.
    ("fal-ai/realistic-vision", "model_name", "default"),
    # fal's older documents type seed as a plain integer; falweb accepts null everywhere (fal's
    # newer documents do) and bounds it to the 64-bit values fal's seeds are.
    *((eid, "seed", kind) for eid in CATALOG for kind in ("nullable", "range")),
    # The hand-written image sizes stop at 64..2048 px (fal: 1..14142): the preview and
    # diffusers engines run on the user's own machine.
    *((eid, "image_size", "sides") for eid in CATALOG),
    # At most 5 LoRAs / embeddings (fal-ai/lora: 1 embedding); fal sets no limit.
    *((eid, name, "rows") for eid in CATALOG for name in ("loras", "embeddings")),
    # fast-sdxl's request_id is fal's bookkeeping: accepted, never defaulted into an input.
    *((eid, "request_id", "default") for eid in CATALOG),
}
# Fields of the document the hand-written schema does not model: they are added to it as
# generated (falweb.schemas.documented), so fal's inputs are accepted; no local engine uses
# fal-ai/lora's ControlNet, IP-Adapter, IC-Light, tiling or custom timesteps.
NOT_MODELLED = {
    "fal-ai/realistic-vision": {"guidance_rescale"},
    "fal-ai/fast-sdxl": set(),
    "fal-ai/flux/dev": set(),
    "fal-ai/fast-lcm-diffusion": set(),
    "fal-ai/lora": {
        "controlnets", "controlnet_guess_mode", "ip_adapter", "image_encoder_path",
        "image_encoder_subfolder", "image_encoder_weight_name", "ic_light_model_url",
        "ic_light_model_background_image_url", "ic_light_image_url", "timesteps", "sigmas",
        "tile_width", "tile_height", "tile_stride_width", "tile_stride_height", "eta",
        "debug_latents", "debug_per_pass_latents"},
}


def _default(field):
    value = field.load_default
    return value() if callable(value) else value


def _facts(field):
    """What a schema promises about one field, by kind of constraint."""
    facts = {"default": _default(field), "required": field.required,
             "nullable": field.allow_none, "kind": _kind(field)}
    for validator in field.validators:
        if isinstance(validator, validate.Range):
            facts["range"] = (validator.min, validator.max, validator.min_inclusive,
                              validator.max_inclusive)
        elif isinstance(validator, validate.OneOf):
            facts["enum"] = tuple(validator.choices)
        elif isinstance(validator, validate.Length) and isinstance(field, fields.List):
            facts["rows"] = (validator.min, validator.max)
    if isinstance(field, ImageSize):
        facts["sides"] = (field.min_side, field.max_side, field.multiple_of)
    return facts


def _kind(field):
    for kind, types in (("boolean", fields.Boolean), ("integer", fields.Integer),
                        ("number", fields.Float), ("list", fields.List),
                        ("image_size", ImageSize), ("string", fields.String)):
        if isinstance(field, types):
            return kind
    return type(field).__name__


def _row_fields(field):
    inner = getattr(field, "inner", None)
    return inner.schema.fields if isinstance(inner, fields.Nested) else None


def _compare(endpoint_id, name, hand, generated, path=""):
    differences = []
    hand_facts, doc_facts = _facts(hand), _facts(generated)
    for kind in sorted(set(hand_facts) | set(doc_facts)):
        if hand_facts.get(kind) != doc_facts.get(kind) \
                and (endpoint_id, name, kind) not in HOUSE_RULES:
            differences.append(f"{endpoint_id} {path}{name} {kind}: hand-written "
                               f"{hand_facts.get(kind)!r}, document {doc_facts.get(kind)!r}")
    hand_rows, doc_rows = _row_fields(hand), _row_fields(generated)
    if hand_rows is not None and doc_rows is not None:
        for sub, sub_field in doc_rows.items():
            if sub not in hand_rows:
                if sub != "force":  # LoraWeight.force (fal: "merge even if incompatible")
                    differences.append(f"{endpoint_id} {name}.{sub}: not modelled")
                continue
            for line in _compare(endpoint_id, sub, hand_rows[sub], sub_field, f"{name}."):
                if "path kind" not in line:  # a LoRA path is a text field either way
                    differences.append(line)
    return differences


@pytest.mark.parametrize("endpoint_id", sorted(NOT_MODELLED))
def test_hand_written_schema_equals_the_document(endpoint_id):
    schema_class = CATALOG[endpoint_id].input_schema
    hand = schema_class().fields
    generated = documented_endpoint(endpoint_id).input_schema().fields
    modelled = getattr(schema_class, "modelled_fields", tuple(hand))
    assert set(generated) - set(modelled) == NOT_MODELLED[endpoint_id]
    assert set(hand) == set(generated), "the served schema takes exactly the document's fields"
    differences = []
    for name, field in hand.items():
        differences += _compare(endpoint_id, name, field, generated[name])
    assert differences == []


def test_house_rules_are_only_ever_tighter():
    # Every document bound is wider than or equal to the house rule that replaces it.
    for endpoint_id in NOT_MODELLED:
        hand = CATALOG[endpoint_id].input_schema().fields
        generated = documented_endpoint(endpoint_id).input_schema().fields
        low, high, _ = _facts(hand["image_size"])["sides"]
        doc_low, doc_high, _ = _facts(generated["image_size"])["sides"]
        assert doc_low <= low and high <= doc_high


def test_the_seed_example_validates_the_same_both_ways():
    from tests.test_schemas import SEED_EXAMPLE

    hand = load_input("fal-ai/realistic-vision", SEED_EXAMPLE)
    generated = documented_endpoint("fal-ai/realistic-vision").input_schema().load(SEED_EXAMPLE)
    # The document adds guidance_rescale's default and request_id (fal's bookkeeping).
    assert {k: v for k, v in generated.items() if k in hand} == hand


def test_realistic_vision_image_size_default_is_the_documented_object():
    schema = documented_endpoint("fal-ai/realistic-vision").input_schema()
    assert schema.load({"prompt": "p"})["image_size"] == {"height": 1024, "width": 1024}
    assert load_input("fal-ai/realistic-vision", {"prompt": "p"})["image_size"] == {
        "height": 1024, "width": 1024}


@pytest.mark.parametrize("endpoint_id", sorted(DOCUMENTS))
def test_every_document_loads_and_names_its_fields_in_fal_order(endpoint_id):
    endpoint = endpoint_from_document(DOCUMENTS[endpoint_id])
    document_input = next(v for k, v in DOCUMENTS[endpoint_id]["components"]["schemas"].items()
                          if k.endswith("Input") and "x-fal-order-properties" in v
                          and set(v.get("required", [])) & set(v["properties"]))
    assert list(endpoint.input_schema().fields) == document_input["x-fal-order-properties"]
    assert endpoint_id in known_endpoint_ids()
    assert get_endpoint(endpoint_id) is not None


def _load(endpoint_id, data):
    return endpoint_from_document(DOCUMENTS[endpoint_id]).input_schema().load(data)


def _detail(endpoint_id, data):
    with pytest.raises(ValidationError) as info:
        _load(endpoint_id, data)
    return fal_detail(info.value.messages)


@pytest.mark.parametrize(("endpoint_id", "data", "loc", "words"), [
    # required
    ("fal-ai/flux/dev", {}, ["body", "prompt"], "field required"),
    # enum
    ("fal-ai/flux/dev", {"prompt": "p", "output_format": "gif"}, ["body", "output_format"],
     "Must be one of: jpeg, png."),
    # exclusiveMinimum 0 inside a $ref'd ImageSize inside anyOf
    ("fal-ai/flux/dev", {"prompt": "p", "image_size": {"width": 0, "height": 64}},
     ["body", "image_size", "width"], "between 1 and 14142"),
    # maximum
    ("fal-ai/flux/schnell", {"prompt": "p", "num_inference_steps": 13},
     ["body", "num_inference_steps"], "less than or equal to 12"),
    # wrong type
    ("fal-ai/flux/dev", {"prompt": "p", "guidance_scale": "high"}, ["body", "guidance_scale"],
     "value is not a valid float"),
    # nullable anyOf: null fine, a string not
    ("fal-ai/flux/dev", {"prompt": "p", "seed": "x"}, ["body", "seed"],
     "value is not a valid integer"),
    # maxLength
    ("fal-ai/kling-video/v1/standard/text-to-video", {"prompt": "p" * 2501}, ["body", "prompt"],
     "Longer than 2500 characters."),
    # allOf-wrapped nested object: its own required field, and its range
    ("fal-ai/kling-video/v1/standard/text-to-video",
     {"prompt": "p", "advanced_camera_control": {"movement_type": "pan"}},
     ["body", "advanced_camera_control", "movement_value"], "field required"),
    ("fal-ai/kling-video/v1/standard/text-to-video",
     {"prompt": "p", "advanced_camera_control": {"movement_type": "pan", "movement_value": 11}},
     ["body", "advanced_camera_control", "movement_value"], "less than or equal to 10"),
    # array of objects, two levels deep
    ("fal-ai/lora", {"prompt": "p", "model_name": "m", "controlnets": [{"path": "c"}]},
     ["body", "controlnets", 0, "image_url"], "field required"),
    ("fal-ai/fast-sdxl", {"prompt": "p", "loras": [{"path": "a", "scale": 2}]},
     ["body", "loras", 0, "scale"], "less than or equal to 1"),
    # anyOf string | string[]: a number is neither
    ("fal-ai/lora", {"prompt": "p", "model_name": "m",
                     "ip_adapter": [{"ip_adapter_image_url": 5, "path": "x"}]},
     ["body", "ip_adapter", 0, "ip_adapter_image_url"], "Must be one of: string, array."),
    # a file URL field
    ("bria/fibo-edit/restyle", {"image_url": "ftp://x/y.png", "style": "3D Render"},
     ["body", "image_url"], "Must be an http(s) URL or a data: URI."),
    # unknown field (additionalProperties absent on a model: refused, as the hand-written do)
    ("openrouter/router", {"prompt": "p", "model": "m", "colour": 1}, ["body", "colour"],
     "extra fields not permitted"),
    # minimum on a plain number
    ("openrouter/router", {"prompt": "p", "model": "m", "max_tokens": 0}, ["body", "max_tokens"],
     "greater than or equal to 1"),
])
def test_invalid_input_names_the_field(endpoint_id, data, loc, words):
    detail = _detail(endpoint_id, data)
    assert any(item["loc"] == loc and words in item["msg"] for item in detail), detail


def test_generated_defaults_nullable_unions_and_nested_defaults():
    loaded = _load("fal-ai/lora", {"prompt": "p", "model_name": "m", "seed": 1})
    assert loaded["sigmas"] == {"method": "default", "array": []}
    loaded["sigmas"]["array"].append(1)
    assert _load("fal-ai/lora", {"prompt": "p", "model_name": "m"})["sigmas"]["array"] == []
    assert _load("fal-ai/flux/dev", {"prompt": "p", "seed": None})["seed"] is None
    both = _load("fal-ai/lora", {"prompt": "p", "model_name": "m", "ip_adapter": [
        {"ip_adapter_image_url": ["https://a.example/1.png"], "path": "x"}]})
    assert both["ip_adapter"][0]["ip_adapter_image_url"] == ["https://a.example/1.png"]
    assert _load("fal-ai/kling-video/v1/standard/text-to-video", {"prompt": "p"})[
        "duration"] == "5"
    assert _load("fal-ai/flux/dev", {"prompt": "p"})["image_size"] == "landscape_4_3"


def test_additional_properties_true_keeps_unknown_keys_in_outputs():
    endpoint = endpoint_from_document(DOCUMENTS["bria/fibo-edit/restyle"])
    output = endpoint.output_schema().load({
        "image": {"url": "https://x/y.png", "width": None}, "images": [],
        "structured_instruction": {"anything": {"goes": 1}}, "extra": True})
    assert output["structured_instruction"] == {"anything": {"goes": 1}}
    assert output["extra"] is True


def test_unknown_endpoint_is_none():
    assert get_endpoint("nobody/nothing") is None
    assert _detail("fal-ai/flux/dev", {"prompt": "p", "sync_mode": "yes"})[0]["type"] == \
        "type_error.bool"
    assert missing is not None
