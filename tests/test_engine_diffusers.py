"""The diffusers engine, through the real local runtime, on a tiny random SD model (CPU).

Needs the optional extra (``make test-diffusers``); skipped when torch/diffusers are absent.
The model is built here from component configs under a fixed torch seed (about 6 MB, no
download), saved with ``save_pretrained`` and loaded by the engine like any local model.
"""

import base64
import io
import json

import pytest
import requests

MISSING = "the diffusers extra is not installed (make test-diffusers installs it)"
for _module in ("torch", "diffusers", "transformers", "safetensors", "peft"):
    pytest.importorskip(_module, reason=MISSING)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from falweb.testing import serve_local_runtime  # noqa: E402
from falweb.testing import wait_until  # noqa: E402
from tests.local_helpers import wait_status  # noqa: E402

# Library warnings of these pinned versions (see the reference notes), nothing broader:
# numpy 2's __array__ copy-keyword DeprecationWarning raised inside diffusers' schedulers,
# and diffusers' FutureWarning when it fixes up a scheduler config (DDIM's clip_sample).
pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"
                               ":DeprecationWarning:diffusers"),
    pytest.mark.filterwarnings("ignore:The configuration file of this scheduler"
                               ":FutureWarning:diffusers"),
    pytest.mark.slow,
]

PROMPT = "a photo of a cat riding a horse"
SMALL = {"image_size": {"width": 64, "height": 64}, "num_inference_steps": 2, "format": "png"}
WORDS = ("a photo of an astronaut riding horse on mars portrait cat dog city night red blue "
         "painting landscape sky light face").split()


def _tokenizer_files(folder):
    """A CLIP-style byte-level BPE vocabulary in which each of WORDS is one token."""
    folder.mkdir(parents=True, exist_ok=True)
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    symbols = [chr(b) for b in printable] + [chr(256 + i) for i in range(256 - len(printable))]
    vocab = symbols + [s + "</w>" for s in symbols]
    merges = []
    for word in WORDS:
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            pair = f"{parts[0]} {parts[1]}"
            if pair not in merges:
                merges.append(pair)
                vocab.append(parts[0] + parts[1])
            parts = [parts[0] + parts[1], *parts[2:]]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    return folder


def _tiny_pipeline(work):
    from diffusers import AutoencoderKL
    from diffusers import DPMSolverMultistepScheduler
    from diffusers import StableDiffusionPipeline
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig
    from transformers import CLIPTextModel
    from transformers import CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=32, block_out_channels=(32, 64), layers_per_block=1,
        cross_attention_dim=32, attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    vae = AutoencoderKL(
        block_out_channels=(32, 64), layers_per_block=1, latent_channels=4, sample_size=64,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    tokenizer = CLIPTokenizer.from_pretrained(str(_tokenizer_files(work / "tokenizer")))
    n = len(tokenizer)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=n, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, bos_token_id=n - 2,
        eos_token_id=n - 1, pad_token_id=n - 1))
    scheduler = DPMSolverMultistepScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        algorithm_type="dpmsolver++", use_karras_sigmas=True, steps_offset=1,
        timestep_spacing="leading")
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def _lora_file(pipe, folder):
    """A random LoRA on the UNet's attention projections, saved in diffusers' format."""
    from diffusers import StableDiffusionPipeline
    from diffusers import UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(1)
    unet = UNet2DConditionModel.from_config(pipe.unet.config)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4,
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if "lora_" in name:  # lora_B starts at zero: no effect until randomised
                parameter.normal_(0, 0.5)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionPipeline.save_lora_weights(str(folder), unet_lora_layers=layers,
                                              safe_serialization=True)
    return folder / "pytorch_lora_weights.safetensors"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """(model folder, LoRA file, embedding file) of a tiny random SD 1.x model."""
    from safetensors.torch import save_file

    work = tmp_path_factory.mktemp("tiny-sd")
    pipe = _tiny_pipeline(work)
    pipe.save_pretrained(str(work / "model"))
    lora = _lora_file(pipe, work / "lora")
    embedding = work / "learned_embeds.safetensors"
    save_file({"<cat-toy>": torch.randn(32, generator=torch.Generator().manual_seed(2))},
              str(embedding))
    return work / "model", lora, embedding


@pytest.fixture(scope="module")
def runtime(tiny_model, tmp_path_factory):
    with serve_local_runtime({
        "TESTING": True, "FALWEB_LOCAL_WORKERS": 2,
        "FALWEB_INSTANCE_PATH": str(tmp_path_factory.mktemp("runtime")),
        "FALWEB_LOCAL_ENGINE": "diffusers", "FALWEB_LOCAL_MODEL": str(tiny_model[0]),
        # The LoRA and the embedding live beside the model: the weights folder.
        "FALWEB_LOCAL_WEIGHTS_DIRS": [str(tiny_model[0].parent)],
    }) as server:
        server.engine = server.runtime.engine
        yield server


def submit(base, endpoint_id, input):
    answer = requests.post(f"{base}/queue/{endpoint_id}", json=input, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def generate(base, endpoint_id, input, timeout=30):
    """(status with logs, result) of a queued request that completes."""
    job = submit(base, endpoint_id, input)
    status = wait_status(job["status_url"], timeout=timeout)
    answer = requests.get(job["response_url"], timeout=10)
    return status, answer


def image_of(entry):
    url = entry["url"]
    if url.startswith("data:"):
        data = base64.b64decode(url.split(",", 1)[1])
    else:
        data = requests.get(url, timeout=10).content
    return Image.open(io.BytesIO(data))


def pixels(base, endpoint_id, input):
    status, answer = generate(base, endpoint_id, input)
    assert answer.status_code == 200, (answer.text, status.get("logs"))
    return np.asarray(image_of(answer.json()["images"][0]).convert("RGB")).astype(np.int16)


def close(a, b):
    # Same seed, same machine: identical up to a rare off-by-one in a pixel value (torch's
    # CPU kernels may round differently across thread counts).
    return a.shape == b.shape and np.abs(a - b).max() <= 2


def test_healthz_reports_a_real_engine(runtime):
    state = requests.get(f"{runtime.url}/healthz", timeout=10).json()
    assert (state["engine"], state["synthetic"]) == ("diffusers", False)


def test_queue_completes_with_real_images_and_a_log_line_per_step(runtime):
    status, answer = generate(runtime.url, "fal-ai/fast-sdxl",
                              {"prompt": PROMPT, "seed": 3, "num_images": 2, **SMALL})
    assert answer.status_code == 200, status["logs"]
    messages = [line["message"] for line in status["logs"]]
    assert messages.count("Step 1/2") == 1 and messages.count("Step 2/2") == 1
    result = answer.json()
    assert result["seed"] == 3 and result["has_nsfw_concepts"] == [False, False]
    assert result["timings"]["inference"] > 0
    assert len(result["images"]) == 2
    first, second = (image_of(entry) for entry in result["images"])
    assert (first.format, first.size) == ("PNG", (64, 64))
    assert result["images"][0]["content_type"] == "image/png"
    assert np.asarray(first).std() > 1  # not a blank picture
    assert first.tobytes() != second.tobytes()  # seed + 1 for the second image

    # JPEG, sync mode (a data URI), another endpoint, a size rounded to a multiple of 8
    status, answer = generate(runtime.url, "fal-ai/realistic-vision", {
        "prompt": PROMPT, "num_inference_steps": 2, "sync_mode": True,
        "image_size": {"width": 100, "height": 66}})
    result = answer.json()
    assert result["images"][0]["url"].startswith("data:image/jpeg;base64,")
    picture = image_of(result["images"][0])
    assert (picture.format, picture.size) == ("JPEG", (104, 64))
    assert 0 <= result["seed"] < 2**64  # drawn at random, reported


def test_same_seed_same_image_other_seed_other_image(runtime):
    input = {"prompt": PROMPT, "seed": 2**64 - 5, **SMALL}  # a uint64 seed above torch's range
    first = pixels(runtime.url, "fal-ai/fast-sdxl", input)
    again = pixels(runtime.url, "fal-ai/fast-sdxl", input)
    other = pixels(runtime.url, "fal-ai/fast-sdxl", input | {"seed": 7})
    assert close(first, again)
    assert np.abs(first - other).mean() > 5


def test_cancel_stops_the_pipeline_between_steps(runtime):
    runtime.engine.step_delay = 0.2
    try:
        job = submit(runtime.url, "fal-ai/fast-sdxl",
                     {"prompt": PROMPT, **SMALL, "num_inference_steps": 40})
        deadline_status = wait_status(job["status_url"], "IN_PROGRESS")
        assert deadline_status["status"] == "IN_PROGRESS"

        def stepped():
            logs = requests.get(job["status_url"], params={"logs": 1}, timeout=10).json()["logs"]
            return any(line["message"].startswith("Step ") for line in logs)

        wait_until(stepped, timeout=30, message="a first pipeline step to run")
        answer = requests.put(job["cancel_url"], timeout=10)
        assert answer.status_code == 202
        stopped = wait_status(job["status_url"], timeout=15)
    finally:
        runtime.engine.step_delay = 0.0
    assert stopped["error_type"] == "request_cancelled"
    steps = [line for line in stopped["logs"] if line["message"].startswith("Step ")]
    assert 1 <= len(steps) < 40


def test_image_to_image_uses_the_input_image(runtime):
    def data_uri(colour):
        buffer = io.BytesIO()
        Image.new("RGB", (80, 80), colour).save(buffer, "PNG")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()

    input = {"prompt": PROMPT, "seed": 11, "strength": 0.5, **SMALL}
    red = pixels(runtime.url, "fal-ai/fast-sdxl/image-to-image",
                 input | {"image_url": data_uri("red")})
    red_again = pixels(runtime.url, "fal-ai/fast-sdxl/image-to-image",
                       input | {"image_url": data_uri("red")})
    blue = pixels(runtime.url, "fal-ai/fast-sdxl/image-to-image",
                  input | {"image_url": data_uri("blue")})
    assert red.shape == (64, 64, 3)
    assert close(red, red_again)
    assert np.abs(red - blue).mean() > 5


def test_lora_changes_the_output_and_is_unloaded_after(runtime, tiny_model):
    _, lora, _ = tiny_model
    input = {"prompt": PROMPT, "seed": 5, "model_name": "any", **SMALL}
    del input["format"]
    input["image_format"] = "png"
    base = pixels(runtime.url, "fal-ai/lora", input)
    with_lora = pixels(runtime.url, "fal-ai/lora",
                       input | {"loras": [{"path": str(lora), "scale": 1.0}]})
    with_folder = pixels(runtime.url, "fal-ai/lora",
                         input | {"loras": [{"path": str(lora.parent), "scale": 1.0}]})
    after = pixels(runtime.url, "fal-ai/lora", input)
    assert np.abs(base - with_lora).mean() > 5
    assert close(with_lora, with_folder)
    assert close(base, after)
    # a request that fails after its LoRA loaded leaves the base weights behind too
    missing = str(lora.parent.parent / "nonexistent.safetensors")
    status, answer = generate(runtime.url, "fal-ai/lora", input | {
        "loras": [{"path": str(lora)}], "embeddings": [{"path": missing}]})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "embeddings[0].path"]
    assert any("embeddings[0].path" in line["message"] for line in status["logs"])
    assert close(base, pixels(runtime.url, "fal-ai/lora", input))


def test_embeddings_load_for_one_request_at_a_time(runtime, tiny_model):
    _, _, embedding = tiny_model
    input = {"prompt": "a photo of <cat-toy>", "seed": 5, **SMALL,
             "embeddings": [{"path": str(embedding), "tokens": ["<cat-toy>"]}]}
    first = pixels(runtime.url, "fal-ai/fast-sdxl", input)
    # a second request loads the same token again: it was unloaded after the first
    again = pixels(runtime.url, "fal-ai/fast-sdxl", input)
    assert close(first, again)


def test_remote_missing_or_outside_lora_fails_the_request_naming_the_field(runtime, tiny_model):
    outside = tiny_model[1]  # a real LoRA, but reached through ".."
    for path in ("https://example.com/lora.safetensors", "/nonexistent/lora.safetensors",
                 "missing.safetensors", f"lora/../../{outside.parent.parent.name}/lora",
                 "/etc/hostname"):
        status, answer = generate(runtime.url, "fal-ai/fast-sdxl",
                                  {"prompt": PROMPT, **SMALL, "loras": [{"path": path}]})
        assert answer.status_code == 422, path
        assert status["error_type"] == "validation_error"
        assert answer.json()["detail"][0]["loc"] == ["body", "loras[0].path"]
        assert any("loras[0].path" in line["message"] for line in status["logs"])


def test_scheduler_and_clip_skip_of_the_lora_endpoint(runtime):
    input = {"prompt": PROMPT, "seed": 5, "model_name": "any", "clip_skip": 1,
             "image_size": {"width": 64, "height": 64}, "num_inference_steps": 2}
    for scheduler in ("Euler A", "DDIM", "DPM++ 2M SDE Karras"):
        status, answer = generate(runtime.url, "fal-ai/lora", input | {"scheduler": scheduler})
        assert answer.status_code == 200, (scheduler, status["logs"])
        assert answer.json()["images"][0]["content_type"] == "image/png"  # image_format


def test_a_missing_model_is_a_clear_error(tmp_path):
    from falweb.local import create_local_app

    config = {"TESTING": True, "FALWEB_INSTANCE_PATH": str(tmp_path),
              "FALWEB_LOCAL_ENGINE": "diffusers"}
    for model in ("", str(tmp_path / "nowhere"), "nobody/not-a-cached-model"):
        with pytest.raises(ValueError, match="FALWEB_LOCAL_MODEL"):
            create_local_app(config | {"FALWEB_LOCAL_MODEL": model})
