"""falweb.schemas: fal's endpoint schemas, the catalog, error shapes and the form path."""

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from marshmallow import ValidationError
from marshmallow import missing

from falweb.schemas import CATALOG
from falweb.schemas import IMAGE_SIZE_PRESETS
from falweb.schemas import Endpoint
from falweb.schemas import describe_fields
from falweb.schemas import dump_input
from falweb.schemas import fal_detail
from falweb.schemas import form_errors
from falweb.schemas import get_endpoint
from falweb.schemas import load_input
from falweb.schemas import resolve_image_size
from falweb.schemas.common import REALISTIC_VISION_NEGATIVE_PROMPT

SEED_DOCS = Path("/work/shared/reference/fal-docs-seed.txt")

# The seed's example input for fal-ai/realistic-vision (section "5. Schema"), verbatim.
SEED_EXAMPLE = {
    "model_name": "SG161222/Realistic_Vision_V6.0_B1_noVAE",
    "prompt": (
        "A hyperdetailed photograph of a Cat dressed as a mafia boss holding a fish walking "
        "down a Japanese fish market with an angry face, 8k resolution, best quality, "
        "beautiful photograph, dynamic lighting,"
    ),
    "negative_prompt": REALISTIC_VISION_NEGATIVE_PROMPT,
    "image_size": {"height": 1024, "width": 1024},
    "num_inference_steps": 35,
    "guidance_scale": 5,
    "loras": [],
    "embeddings": [],
    "num_images": 1,
    "enable_safety_checker": True,
    "format": "jpeg",
    "safety_checker_version": "v1",
}

# What each endpoint needs beyond a prompt.
REQUIRED_EXTRAS = {
    "fal-ai/fast-sdxl/image-to-image": {"image_url": "https://example.com/cat.png"},
    "fal-ai/lora": {"model_name": "stabilityai/stable-diffusion-xl-base-1.0"},
}


def minimal(endpoint_id, **extra):
    return {"prompt": "a cat", **REQUIRED_EXTRAS.get(endpoint_id, {}), **extra}


def errors_of(endpoint_id, data, **kwargs):
    with pytest.raises(ValidationError) as info:
        load_input(endpoint_id, data, **kwargs)
    return info.value.messages


# --- the seed's realistic-vision schema ------------------------------------------------------


def test_seed_example_matches_the_seed_file():
    text = SEED_DOCS.read_text() if SEED_DOCS.exists() else None
    if text is None:
        pytest.skip("seed docs not available")
    block = re.search(r'\{\s*"model_name": "SG161222.*?\n\}', text, re.S).group(0)
    assert json.loads(block) == SEED_EXAMPLE


def test_seed_example_loads_unchanged_and_dumps_back_equal():
    loaded = load_input("fal-ai/realistic-vision", SEED_EXAMPLE)
    assert {key: loaded[key] for key in SEED_EXAMPLE} == SEED_EXAMPLE
    assert dump_input("fal-ai/realistic-vision", loaded) == loaded


def test_realistic_vision_defaults_equal_the_seed():
    loaded = load_input("fal-ai/realistic-vision", {"prompt": "a cat"})
    assert loaded == {
        "model_name": "SG161222/Realistic_Vision_V6.0_B1_noVAE",
        "prompt": "a cat",
        "negative_prompt": REALISTIC_VISION_NEGATIVE_PROMPT,
        "image_size": {"height": 1024, "width": 1024},
        "num_inference_steps": 35,
        "guidance_scale": 5,
        "loras": [],
        "embeddings": [],
        "expand_prompt": False,
        "num_images": 1,
        "enable_safety_checker": True,
        "sync_mode": False,
        "format": "jpeg",
        "safety_checker_version": "v1",
        # fal's document has it (falweb's engines do not use it): see schemas/documented.py.
        "guidance_rescale": 0,
    }
    assert "seed" not in loaded


def test_realistic_vision_negative_prompt_is_the_seed_text():
    text = SEED_DOCS.read_text() if SEED_DOCS.exists() else None
    if text is None:
        pytest.skip("seed docs not available")
    assert f'Default value: "{REALISTIC_VISION_NEGATIVE_PROMPT}"' in text


def test_nested_defaults_lora_scale_and_embedding_tokens():
    loaded = load_input(
        "fal-ai/realistic-vision",
        {"prompt": "p", "loras": [{"path": "a.safetensors"}], "embeddings": [{"path": "e"}]},
    )
    assert loaded["loras"] == [{"path": "a.safetensors", "scale": 1.0}]
    assert loaded["embeddings"] == [{"path": "e", "tokens": ["<s0>", "<s1>"]}]


def test_defaults_are_not_shared_between_loads():
    first = load_input("fal-ai/realistic-vision", {"prompt": "p"})
    first["image_size"]["width"] = 9
    first["loras"].append("x")
    second = load_input("fal-ai/realistic-vision", {"prompt": "p"})
    assert second["image_size"] == {"height": 1024, "width": 1024}
    assert second["loras"] == []


# --- the catalog ------------------------------------------------------------------------------


def test_catalog_order_and_flags():
    assert list(CATALOG) == [
        "fal-ai/realistic-vision",
        "fal-ai/fast-sdxl",
        "fal-ai/fast-sdxl/image-to-image",
        "fal-ai/flux/dev",
        "fal-ai/lora",
        "fal-ai/fast-lcm-diffusion",
    ]
    assert [e.endpoint_id for e in CATALOG.values() if e.realtime] == ["fal-ai/fast-lcm-diffusion"]
    assert CATALOG["fal-ai/fast-sdxl/image-to-image"].file_fields == ("image_url",)
    assert CATALOG["fal-ai/flux/dev"].format_field == "output_format"
    assert CATALOG["fal-ai/lora"].format_field == "image_format"
    assert CATALOG["fal-ai/fast-sdxl"].format_field == "format"
    for endpoint in CATALOG.values():
        assert endpoint.format_field in endpoint.input_schema().fields


@pytest.mark.parametrize("endpoint_id", list(CATALOG))
def test_each_endpoint_fills_defaults_from_a_minimal_input(endpoint_id):
    endpoint = CATALOG[endpoint_id]
    loaded = load_input(endpoint_id, minimal(endpoint_id))
    assert loaded["prompt"] == "a cat"
    for name, field in endpoint.input_schema().fields.items():
        if field.load_default is not missing:
            assert name in loaded, name
    assert loaded["num_images"] == 1
    assert loaded[endpoint.format_field] in ("jpeg", "png")
    assert resolve_image_size(loaded["image_size"])


@pytest.mark.parametrize(
    ("endpoint_id", "expected"),
    [
        ("fal-ai/fast-sdxl", {"image_size": "square_hd", "num_inference_steps": 25,
                              "guidance_scale": 7.5, "negative_prompt": "", "format": "jpeg"}),
        ("fal-ai/flux/dev", {"image_size": "landscape_4_3", "num_inference_steps": 28,
                             "guidance_scale": 3.5, "output_format": "jpeg",
                             "acceleration": "none"}),
        ("fal-ai/lora", {"image_size": "square_hd", "num_inference_steps": 30,
                         "guidance_scale": 7.5, "image_format": "png",
                         "enable_safety_checker": False}),
        ("fal-ai/fast-lcm-diffusion", {"num_inference_steps": 6, "guidance_scale": 1.5,
                                       "sync_mode": True, "image_size": "square_hd"}),
        ("fal-ai/fast-sdxl/image-to-image", {"strength": 0.95}),
    ],
)
def test_endpoint_defaults_follow_fal(endpoint_id, expected):
    loaded = load_input(endpoint_id, minimal(endpoint_id))
    assert {key: loaded[key] for key in expected} == expected


def test_flux_has_no_negative_prompt():
    messages = errors_of("fal-ai/flux/dev", {"prompt": "p", "negative_prompt": "x"})
    assert messages == {"negative_prompt": ["Unknown field."]}


@pytest.mark.parametrize(
    "alias", ["110602490/lora", "110602490-lora", "/fal-ai/lora/", "fal-ai/lora"]
)
def test_get_endpoint_accepts_aliases(alias):
    assert get_endpoint(alias) is CATALOG["fal-ai/lora"]


def test_get_endpoint_unknown_is_none():
    assert get_endpoint("fal-ai/nope") is None
    assert get_endpoint(None) is None


def test_load_input_by_alias_and_unknown_endpoint():
    assert load_input("110602490-lora", minimal("fal-ai/lora"))["image_format"] == "png"
    with pytest.raises(KeyError):
        load_input("fal-ai/nope", {"prompt": "p"})


def test_image_size_presets_and_resolution():
    assert IMAGE_SIZE_PRESETS["portrait_16_9"] == (576, 1024)
    assert resolve_image_size("landscape_4_3") == (1024, 768)
    assert resolve_image_size({"width": 640, "height": 480}) == (640, 480)


def test_endpoint_is_frozen():
    with pytest.raises(AttributeError):
        CATALOG["fal-ai/fast-sdxl"].title = "x"
    assert isinstance(CATALOG["fal-ai/fast-sdxl"], Endpoint)


def test_outputs_load_and_dump():
    out = CATALOG["fal-ai/fast-sdxl"].output_schema()
    big_seed = 2**64 - 5
    loaded = out.load(
        {
            "images": [{"url": "https://v3.fal.media/x.jpg", "width": 8, "height": 8}],
            "timings": {"inference": 0.5},
            "seed": big_seed,
            "has_nsfw_concepts": [False],
            "prompt": "p",
        }
    )
    assert loaded["images"][0]["content_type"] == "image/jpeg"
    assert out.dump(loaded)["seed"] == big_seed
    lora_out = CATALOG["fal-ai/lora"].output_schema()
    assert "timings" not in lora_out.fields and "prompt" not in lora_out.fields


# --- validation errors and their shapes -----------------------------------------------------


def test_missing_prompt_is_fal_field_required():
    messages = errors_of("fal-ai/realistic-vision", {})
    assert fal_detail(messages) == [
        {"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"}
    ]


def test_blank_prompt_refused_with_reason():
    messages = errors_of("fal-ai/fast-sdxl", {"prompt": "   "})
    assert messages == {"prompt": ["The prompt must not be empty."]}


def test_bad_enum_names_the_choices():
    detail = fal_detail(errors_of("fal-ai/realistic-vision", {"prompt": "p", "format": "gif"}))
    assert detail == [
        {"loc": ["body", "format"], "msg": "Must be one of: jpeg, png.", "type": "value_error"}
    ]


def test_nested_image_size_errors_keep_their_path():
    messages = errors_of(
        "fal-ai/fast-sdxl", {"prompt": "p", "image_size": {"width": 32, "height": "x"}}
    )
    detail = fal_detail(messages)
    assert {"loc": ["body", "image_size", "width"], "msg": "Must be between 64 and 2048 pixels.",
            "type": "value_error"} in detail
    assert {"loc": ["body", "image_size", "height"], "msg": "value is not a valid integer",
            "type": "type_error.integer"} in detail
    assert form_errors(messages) == {
        "image_size.width": ["Must be between 64 and 2048 pixels."],
        "image_size.height": ["Not a valid integer."],
    }


def test_unknown_image_size_preset():
    messages = errors_of("fal-ai/fast-sdxl", {"prompt": "p", "image_size": "huge"})
    assert messages["image_size"][0].startswith("Must be one of: square_hd, square,")


def test_lora_sizes_must_be_multiples_of_8():
    messages = errors_of(
        "fal-ai/lora", minimal("fal-ai/lora", image_size={"width": 1001, "height": 1024})
    )
    assert messages == {"image_size": {"width": ["Must be a multiple of 8 pixels."]}}


def test_loras_row_error_has_an_integer_index():
    messages = errors_of("fal-ai/fast-sdxl", {"prompt": "p", "loras": [{"scale": 0.5}]})
    assert fal_detail(messages) == [
        {"loc": ["body", "loras", 0, "path"], "msg": "field required",
         "type": "value_error.missing"}
    ]
    assert form_errors(messages) == {"loras.0.path": ["This field is required."]}


def test_too_many_loras():
    rows = [{"path": f"l{i}"} for i in range(6)]
    messages = errors_of("fal-ai/fast-sdxl", {"prompt": "p", "loras": rows})
    assert messages == {"loras": ["At most 5 LoRA weights are allowed."]}


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("num_inference_steps", "35", "type_error.integer"),
        ("num_inference_steps", 35.5, "type_error.integer"),
        ("guidance_scale", "5", "type_error.float"),
        ("enable_safety_checker", "true", "type_error.bool"),
        ("sync_mode", 1, "type_error.bool"),
        ("seed", True, "type_error.integer"),
        ("prompt", 5, "type_error.str"),
        ("loras", {}, "type_error.list"),
    ],
)
def test_api_path_is_strict_about_types(field, value, kind):
    detail = fal_detail(errors_of("fal-ai/realistic-vision", {"prompt": "p", field: value}))
    assert [(item["loc"], item["type"]) for item in detail] == [(["body", field], kind)]


@pytest.mark.parametrize(
    ("field", "value"),
    [("num_inference_steps", 0), ("num_inference_steps", 151), ("guidance_scale", 20.5),
     ("num_images", 9), ("seed", -1), ("seed", 2**64)],
)
def test_out_of_range_values_refused(field, value):
    assert field in errors_of("fal-ai/fast-sdxl", {"prompt": "p", field: value})


def test_seed_accepts_values_above_2_63_and_null():
    assert load_input("fal-ai/fast-sdxl", {"prompt": "p", "seed": 2**63 + 1})["seed"] == 2**63 + 1
    assert load_input("fal-ai/fast-sdxl", {"prompt": "p", "seed": None})["seed"] is None


def test_flux_ranges_are_tighter():
    messages = errors_of("fal-ai/flux/dev", {"prompt": "p", "num_images": 5,
                                             "num_inference_steps": 51})
    assert set(messages) == {"num_images", "num_inference_steps"}


@pytest.mark.parametrize(
    "url",
    ["https://example.com/a.png", "http://127.0.0.1:8000/local/cdn/x", "data:image/png;base64,AA"],
)
def test_image_url_accepts_http_and_data_uris(url):
    assert load_input("fal-ai/fast-sdxl/image-to-image", {"prompt": "p", "image_url": url})


@pytest.mark.parametrize("url", ["ftp://x/y", "file:///etc/passwd", "example.com/a.png",
                                 "data:nocomma", "http://[::1"])
def test_image_url_refuses_other_schemes_clearly(url):
    messages = errors_of("fal-ai/fast-sdxl/image-to-image", {"prompt": "p", "image_url": url})
    assert messages == {"image_url": ["Must be an http(s) URL or a data: URI."]}


def test_unknown_field_refused_for_api_and_ignored_for_forms():
    data = minimal("fal-ai/fast-sdxl", csrf_token="t", submit="Go")
    detail = fal_detail(errors_of("fal-ai/fast-sdxl", data))
    assert {"loc": ["body", "csrf_token"], "msg": "extra fields not permitted",
            "type": "value_error.extra"} in detail
    loaded = load_input("fal-ai/fast-sdxl", data, form=True)
    assert "csrf_token" not in loaded and "submit" not in loaded


def test_non_object_body():
    messages = errors_of("fal-ai/fast-sdxl", ["prompt"])
    assert fal_detail(messages) == [
        {"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}
    ]
    assert form_errors(messages) == {"_schema": ["Invalid input type."]}


# --- the form path ---------------------------------------------------------------------------


def test_form_strings_become_numbers_and_booleans():
    loaded = load_input(
        "fal-ai/realistic-vision",
        {"prompt": "p", "num_inference_steps": " 20 ", "guidance_scale": "6.5",
         "num_images": "2", "seed": "18446744073709551615", "expand_prompt": "on",
         "sync_mode": "true", "enable_safety_checker": "1"},
        form=True,
    )
    assert (loaded["num_inference_steps"], loaded["guidance_scale"], loaded["num_images"]) == (
        20, 6.5, 2)
    assert loaded["seed"] == 2**64 - 1
    assert loaded["expand_prompt"] is loaded["sync_mode"] is loaded["enable_safety_checker"] is True


def test_form_absent_checkbox_is_false():
    loaded = load_input("fal-ai/realistic-vision", {"prompt": "p"}, form=True)
    assert loaded["enable_safety_checker"] is False
    assert loaded["expand_prompt"] is False


def test_form_blank_optional_fields_use_defaults():
    loaded = load_input(
        "fal-ai/fast-sdxl",
        {"prompt": "p", "seed": "", "num_inference_steps": "", "format": "", "image_size": ""},
        form=True,
    )
    assert "seed" not in loaded
    assert loaded["num_inference_steps"] == 25
    assert loaded["format"] == "jpeg"
    assert loaded["image_size"] == "square_hd"


def test_form_blank_negative_prompt_is_kept_blank():
    loaded = load_input("fal-ai/realistic-vision", {"prompt": "p", "negative_prompt": ""},
                        form=True)
    assert loaded["negative_prompt"] == ""


def test_form_blank_prompt_is_required():
    assert form_errors(errors_of("fal-ai/fast-sdxl", {"prompt": ""}, form=True)) == {
        "prompt": ["This field is required."]
    }


def test_form_bad_number_reported_beside_field():
    messages = errors_of("fal-ai/fast-sdxl", {"prompt": "p", "num_images": "two"}, form=True)
    assert form_errors(messages) == {"num_images": ["Not a valid integer."]}


def test_form_custom_image_size():
    loaded = load_input(
        "fal-ai/fast-sdxl",
        {"prompt": "p", "image_size": "custom", "image_size_width": "768",
         "image_size_height": "1024"},
        form=True,
    )
    assert loaded["image_size"] == {"width": 768, "height": 1024}


def test_form_preset_ignores_custom_boxes():
    loaded = load_input(
        "fal-ai/fast-sdxl",
        {"prompt": "p", "image_size": "square", "image_size_width": "7"},
        form=True,
    )
    assert loaded["image_size"] == "square"


def test_form_custom_size_errors_are_keyed_by_side():
    messages = errors_of(
        "fal-ai/lora",
        {**minimal("fal-ai/lora"), "image_size": "custom", "image_size_width": "1001",
         "image_size_height": "abc"},
        form=True,
    )
    assert form_errors(messages) == {
        "image_size.width": ["Must be a multiple of 8 pixels."],
        "image_size.height": ["Not a valid integer."],
    }


def test_form_indexed_loras_and_embeddings():
    loaded = load_input(
        "fal-ai/fast-sdxl",
        {"prompt": "p",
         "loras-2-path": "b.safetensors", "loras-2-scale": "0.5",
         "loras-0-path": "a.safetensors", "loras-0-scale": "",
         "loras-1-path": "", "loras-1-scale": "",  # unused template row
         "loras-0-junk": "x",
         "embeddings-0-path": "emb", "embeddings-0-tokens": "<a>, <b>"},
        form=True,
    )
    assert loaded["loras"] == [
        {"path": "a.safetensors", "scale": 1.0},
        {"path": "b.safetensors", "scale": 0.5},
    ]
    assert loaded["embeddings"] == [{"path": "emb", "tokens": ["<a>", "<b>"]}]


def test_form_row_with_a_scale_and_no_path_is_flagged_not_dropped():
    messages = errors_of(
        "fal-ai/fast-sdxl",
        {"prompt": "p", "loras-0-path": "a.safetensors", "loras-1-path": "",
         "loras-1-scale": "0.7", "loras-2-path": "", "loras-2-scale": ""},
        form=True,
    )
    assert form_errors(messages) == {"loras.1.path": ["This field is required."]}


def test_form_indexed_lora_error_path():
    messages = errors_of(
        "fal-ai/fast-sdxl",
        {"prompt": "p", "loras-0-path": "a", "loras-0-scale": "much"},
        form=True,
    )
    assert form_errors(messages) == {"loras.0.scale": ["Not a valid number."]}


def test_form_accepts_lists_of_dicts_and_json_text():
    rows = [{"path": "a", "scale": "0.25"}]
    loaded = load_input("fal-ai/fast-sdxl", {"prompt": "p", "loras": rows}, form=True)
    assert loaded["loras"] == [{"path": "a", "scale": 0.25}]
    loaded = load_input("fal-ai/fast-sdxl", {"prompt": "p", "loras": json.dumps(rows)},
                        form=True)
    assert loaded["loras"] == [{"path": "a", "scale": 0.25}]


def test_form_accepts_a_werkzeug_multidict():
    from werkzeug.datastructures import MultiDict

    data = MultiDict([("prompt", "p"), ("sync_mode", "false"), ("sync_mode", "on")])
    assert load_input("fal-ai/fast-sdxl", data, form=True)["sync_mode"] is True


# --- describe_fields ------------------------------------------------------------------------


def test_describe_fields_for_realistic_vision():
    infos = {info.name: info for info in describe_fields(CATALOG["fal-ai/realistic-vision"])}
    assert list(infos)[:4] == ["prompt", "negative_prompt", "image_size", "num_images"]
    assert infos["prompt"].kind == "textarea" and infos["prompt"].required
    assert not infos["prompt"].advanced
    assert infos["format"].kind == "select" and infos["format"].choices == ("jpeg", "png")
    assert infos["format"].description == "The format of the generated image."
    steps = infos["num_inference_steps"]
    assert (steps.kind, steps.default, steps.min, steps.max, steps.step) == (
        "integer", 35, 1, 70, 1)
    assert steps.advanced
    assert infos["guidance_scale"].kind == "number"
    assert infos["enable_safety_checker"].kind == "boolean"
    assert infos["enable_safety_checker"].default is True
    size = infos["image_size"]
    assert size.kind == "image_size" and size.default == {"height": 1024, "width": 1024}
    assert size.choices == tuple(IMAGE_SIZE_PRESETS)
    assert [(s.name, s.min, s.max) for s in size.subfields] == [
        ("width", 64, 2048), ("height", 64, 2048)]
    loras = infos["loras"]
    assert loras.kind == "list" and loras.max == 5
    assert [s.name for s in loras.subfields] == ["path", "scale"]
    assert loras.subfields[0].required
    tokens = infos["embeddings"].subfields[1]
    assert tokens.multiple and tokens.default == ["<s0>", "<s1>"]
    assert infos["seed"].default is None and not infos["seed"].required


def test_describe_fields_file_and_hidden():
    infos = {i.name: i for i in describe_fields(CATALOG["fal-ai/fast-sdxl/image-to-image"])}
    assert infos["image_url"].kind == "file" and not infos["image_url"].advanced
    assert not infos["strength"].advanced and infos["strength"].max == 1
    assert "request_id" not in infos


def test_describe_fields_lora_size_step_and_required_model():
    infos = {info.name: info for info in describe_fields(CATALOG["fal-ai/lora"])}
    assert [s.step for s in infos["image_size"].subfields] == [8, 8]
    assert infos["model_name"].required and not infos["model_name"].advanced
    assert infos["model_name"].example


@pytest.mark.parametrize("endpoint_id", list(CATALOG))
def test_describe_fields_covers_every_visible_field(endpoint_id):
    endpoint = CATALOG[endpoint_id]
    infos = describe_fields(endpoint)
    kinds = {"text", "textarea", "integer", "number", "boolean", "select", "image_size", "list",
             "group", "file", "files", "json"}
    assert {info.kind for info in infos} <= kinds
    assert infos[0].name in ("prompt", "model_name")
    names = {info.name for info in infos}
    assert names == {n for n, f in endpoint.input_schema().fields.items()
                     if not f.metadata.get("hidden")}
    assert all(info.description for info in infos)


# --- fuzzing: only ValidationError, and the error translators never fail ----------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def field_names(endpoint_id):
    schema = CATALOG[endpoint_id].input_schema()
    return sorted(schema.fields) + ["image_size_width", "image_size_height", "loras-0-path",
                                    "loras-0-scale", "embeddings-1-tokens", "loras-x-path"]


def api_inputs(endpoint_id):
    keys = st.sampled_from(field_names(endpoint_id)) | st.text(max_size=8)
    extras = st.dictionaries(keys, json_values, max_size=8)
    # Half start from a valid input, so the fuzz reaches past "prompt: field required".
    return extras | json_values | extras.map(lambda extra: {**minimal(endpoint_id), **extra})


def form_inputs(endpoint_id):
    keys = st.sampled_from(field_names(endpoint_id)) | st.text(max_size=8)
    values = st.sampled_from(["", " ", "on", "custom", "square", "1", "-1", "1e999", "nan",
                              "64", "[]", '[{"path": 1}]', "https://x/y"]) | st.text(max_size=12)
    extras = st.dictionaries(keys, values, max_size=10)
    return extras | extras.map(lambda extra: {**minimal(endpoint_id), **extra})


def check_never_raises_other_errors(endpoint_id, data, form):
    try:
        loaded = load_input(endpoint_id, data, form=form)
    except ValidationError as err:
        assert fal_detail(err.messages)
        assert form_errors(err.messages)
    else:
        assert loaded["prompt"].strip()
        dump_input(endpoint_id, loaded)


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("endpoint_id", list(CATALOG))
@FUZZ
@given(data=st.data())
def test_fuzz_api_inputs_only_raise_validation_error(endpoint_id, data):
    check_never_raises_other_errors(endpoint_id, data.draw(api_inputs(endpoint_id)), False)


@pytest.mark.parametrize("endpoint_id", list(CATALOG))
@FUZZ
@given(data=st.data())
def test_fuzz_form_inputs_only_raise_validation_error(endpoint_id, data):
    check_never_raises_other_errors(endpoint_id, data.draw(form_inputs(endpoint_id)), True)


@FUZZ
@given(messages=json_values)
def test_fuzz_error_translators_accept_any_message_shape(messages):
    fal_detail(messages)
    form_errors(messages)
