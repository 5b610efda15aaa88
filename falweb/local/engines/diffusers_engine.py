"""The diffusers engine: real Stable Diffusion weights, where they are installed.

Optional: it needs ``pip install 'falweb[diffusers]'`` (torch, diffusers, transformers, ...)
and a Stable Diffusion 1.x/2.x pipeline on disk, named by ``FALWEB_LOCAL_MODEL``: a folder
written by ``save_pretrained`` or a Hugging Face repo id already in the local HF cache. It
never downloads anything (``local_files_only``, ``HF_HUB_OFFLINE``).

One ``StableDiffusionPipeline`` serves every endpoint of the catalog: realistic-vision,
fast-sdxl, fast-sdxl/image-to-image (an img2img pipeline sharing its components), lora,
fast-lcm-diffusion and flux/dev. fast-sdxl and flux/dev therefore run the configured SD
model, not SDXL or FLUX, and each endpoint's ``model_name`` is ignored. There is no safety
checker: ``has_nsfw_concepts`` is always false.

Pipeline calls are serialized (one lock); the model loads once, on first use. Each step
reports through ``ctx.progress``, whose exceptions (cancel, runtime stopping) abort the
pipeline at once. LoRAs and textual-inversion embeddings must be local ``.safetensors``
files or folders (no URLs, no pickles) inside the weights folders (``weights_dirs``:
FALWEB_LOCAL_WEIGHTS_DIRS, see :mod:`~falweb.local.engines.weights`); any other path is a
422 naming the field. They are unloaded after each request.
"""

import importlib.util
import math
import os
import threading
import time

from PIL import ImageOps

from falweb.local.engines import InvalidInput
from falweb.local.engines.outputs import common_inputs
from falweb.local.engines.outputs import fal_output
from falweb.local.engines.outputs import image_output
from falweb.local.engines.weights import weights_file

#: torch's generators take signed 64-bit seeds; fal's seeds are uint64.
TORCH_SEED_MODULUS = 2**63
#: Seconds between "still waiting" log lines (they also renew the job's lease).
WAIT_LOG_SECONDS = 10.0
REQUIRED_MODULES = ("torch", "diffusers", "transformers", "safetensors")

#: fal-ai/lora's scheduler names → (diffusers scheduler class, config overrides).
SCHEDULERS = {
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler",
                        {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler",
                            {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler A": ("EulerAncestralDiscreteScheduler", {}),
    "Euler (trailing timesteps)": ("EulerDiscreteScheduler", {"timestep_spacing": "trailing"}),
    "LCM": ("LCMScheduler", {}),
    "LCM (trailing timesteps)": ("LCMScheduler", {"timestep_spacing": "trailing"}),
    "DDIM": ("DDIMScheduler", {}),
    "TCD": ("TCDScheduler", {}),
}


def _round8(value):
    return max(8, (int(value) + 4) // 8 * 8)  # the nearest multiple of 8, halves up


def _model_source(model):
    """Check that ``model`` is on disk without loading anything heavy; a clear error if not."""
    if not model:
        raise ValueError("the diffusers engine needs FALWEB_LOCAL_MODEL: a folder written by "
                         "save_pretrained, or a Hugging Face repo id in the local HF cache")
    if os.path.isdir(model):
        if not os.path.isfile(os.path.join(model, "model_index.json")):
            raise ValueError(f"FALWEB_LOCAL_MODEL={model!r} is a folder without "
                             "model_index.json (not a diffusers pipeline)")
        return os.path.abspath(model)
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(model, "model_index.json")
    except Exception:  # not a valid repo id
        cached = None
    if not isinstance(cached, str):
        raise ValueError(f"FALWEB_LOCAL_MODEL={model!r} is neither a local pipeline folder "
                         "nor a repo id in the local Hugging Face cache (nothing is downloaded)")
    return model


class DiffusersEngine:
    name = "diffusers"
    synthetic = False

    def __init__(self, model="", device="", step_delay=0.0, weights_dirs=()):
        missing = [m for m in REQUIRED_MODULES if importlib.util.find_spec(m) is None]
        if missing:
            raise RuntimeError(f"the diffusers engine needs {', '.join(missing)}: "
                               "pip install 'falweb[diffusers]'")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        self.model = _model_source(model)
        self.device = device
        self.step_delay = float(step_delay)
        self.weights_dirs = list(weights_dirs)
        self._lock = threading.Lock()
        self._pipe = None
        self._torch = None

    # -- loading --------------------------------------------------------------------------

    def _load(self, ctx):
        """The text-to-image pipeline, loaded on first use (call with the lock held)."""
        if self._pipe is not None:
            return self._pipe
        import diffusers
        import torch
        import transformers
        from diffusers import StableDiffusionPipeline

        # A server logs lines; tqdm bars on stderr (loading, steps) only clutter its output.
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        options = {"local_files_only": True, "safety_checker": None,
                   "feature_extractor": None, "requires_safety_checker": False}
        if device.startswith("cuda"):
            options["dtype"] = torch.float16
        ctx.log(f"Loading {self.model} on {device}")
        started = time.perf_counter()
        try:
            pipe = StableDiffusionPipeline.from_pretrained(self.model, **options)
        except OSError as exc:
            raise RuntimeError(f"FALWEB_LOCAL_MODEL={self.model!r} could not be loaded: "
                               f"{exc}") from exc
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        ctx.log(f"Model loaded in {time.perf_counter() - started:.1f}s")
        self.device, self._torch, self._pipe = device, torch, pipe
        return pipe

    def _acquire(self, ctx):
        waited = time.monotonic()
        if self._lock.acquire(blocking=False):
            return
        ctx.log("Waiting for the pipeline: another request is running")
        while not self._lock.acquire(timeout=WAIT_LOG_SECONDS):
            ctx.log(f"Still waiting for the pipeline ({time.monotonic() - waited:.0f}s)")

    # -- running --------------------------------------------------------------------------

    def run(self, input, ctx):
        self._acquire(ctx)
        try:
            pipe = self._load(ctx)
            return self._run(pipe, input, ctx)
        except InvalidInput as exc:
            ctx.log(f"{exc.field}: {exc.message}", "ERROR")
            raise
        except (ValueError, RuntimeError, OSError) as exc:
            # The job's error names only the exception's type: say what went wrong here.
            ctx.log(f"{type(exc).__name__}: {exc}", "ERROR")
            raise
        finally:
            self._lock.release()

    def _run(self, base, input, ctx):
        torch = self._torch
        endpoint = ctx.endpoint
        prompt, size, steps, count, seed, fmt = common_inputs(input, endpoint)
        width, height = (_round8(side) for side in size)

        pipe = self._pipeline_for(base, input, ctx)
        kwargs = {"prompt": prompt, "width": width, "height": height,
                  "num_images_per_prompt": count}
        if input.get("negative_prompt"):
            kwargs["negative_prompt"] = input["negative_prompt"]
        if input.get("guidance_scale") is not None:
            kwargs["guidance_scale"] = float(input["guidance_scale"])
        if input.get("guidance_rescale"):
            kwargs["guidance_rescale"] = float(input["guidance_rescale"])
        if input.get("clip_skip"):
            if hasattr(pipe.text_encoder, "text_model"):
                kwargs["clip_skip"] = int(input["clip_skip"])
            else:  # diffusers 0.42 reaches for text_model, gone from transformers 5's CLIP
                ctx.log("clip_skip ignored: this diffusers/transformers pair cannot apply it",
                        "WARN")
        init = ctx.image("image_url")
        if init is not None:
            kwargs["image"] = ImageOps.fit(init.convert("RGB"), (width, height))
            strength = float(input.get("strength", 0.95))
            if strength <= 0:
                raise ValueError("strength: must be above 0 for image-to-image")
            kwargs["strength"] = strength
            # diffusers runs int(steps * strength) steps; at least one must remain.
            steps = max(steps, math.ceil(1 / strength))
        kwargs["num_inference_steps"] = steps
        device = "cuda" if self.device.startswith("cuda") else "cpu"
        kwargs["generator"] = [
            torch.Generator(device=device).manual_seed((seed + i) % TORCH_SEED_MODULUS)
            for i in range(count)
        ]

        def on_step_end(pipeline, step, timestep, tensors):
            if self.step_delay:
                time.sleep(self.step_delay)
            # Raises Cancelled (or the runtime's Interrupted): the pipeline stops right here.
            ctx.progress(step + 1, pipeline.num_timesteps)
            return tensors

        ctx.log(f"diffusers: {endpoint.endpoint_id} on {self.model} ({width}x{height}, "
                f"{count} image(s), {steps} steps, seed {seed})")
        adapters, tokens = [], []
        try:
            adapters = self._load_loras(pipe, input.get("loras") or [], ctx)
            tokens = self._load_embeddings(pipe, input.get("embeddings") or [], ctx)
            started = time.perf_counter()
            with torch.inference_mode():
                result = pipe(callback_on_step_end=on_step_end, **kwargs)
        finally:  # the shared pipeline goes back to its base weights and vocabulary
            if adapters:
                pipe.unload_lora_weights()
            if tokens:
                pipe.unload_textual_inversion()
        inference = time.perf_counter() - started

        images = [image_output(ctx, image, fmt, f"image-{index}", input.get("sync_mode"))
                  for index, image in enumerate(result.images)]
        # No safety checker runs, so nothing is flagged.
        return fal_output(endpoint, images=images, inference=inference, seed=seed,
                          nsfw=[False] * len(images), prompt=prompt)

    def _pipeline_for(self, base, input, ctx):
        """The pipeline for this request: img2img or text-to-image, with its scheduler."""
        components = dict(base.components)
        scheduler = input.get("scheduler")
        if scheduler in SCHEDULERS:
            import diffusers

            class_name, overrides = SCHEDULERS[scheduler]
            scheduler_class = getattr(diffusers, class_name)
            components["scheduler"] = scheduler_class.from_config(
                base.scheduler.config, **overrides)
        if "image_url" in ctx.files:
            from diffusers import StableDiffusionImg2ImgPipeline

            pipe = StableDiffusionImg2ImgPipeline(**components, requires_safety_checker=False)
        elif components["scheduler"] is not base.scheduler:
            pipe = type(base)(**components, requires_safety_checker=False)
        else:
            return base
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _load_loras(self, pipe, loras, ctx):
        names, scales = [], []
        for index, lora in enumerate(loras):
            field = f"loras[{index}].path"
            path = weights_file(lora["path"], field, self.weights_dirs,
                                "pytorch_lora_weights.safetensors")
            name = f"lora{index}"
            try:
                pipe.load_lora_weights(os.path.dirname(path), weight_name=os.path.basename(path),
                                       adapter_name=name, local_files_only=True)
            except Exception as exc:
                if names:
                    pipe.unload_lora_weights()
                raise ValueError(f"{field}: could not load {path!r}: {exc}") from exc
            names.append(name)
            scales.append(float(lora.get("scale", 1.0)))
            ctx.log(f"LoRA {os.path.basename(path)} loaded (scale {scales[-1]})")
        if names:
            pipe.set_adapters(names, adapter_weights=scales)
        return names

    def _load_embeddings(self, pipe, embeddings, ctx):
        from safetensors.torch import load_file

        added = []
        try:
            for index, embedding in enumerate(embeddings):
                field = f"embeddings[{index}].path"
                path = weights_file(embedding["path"], field, self.weights_dirs,
                                    "learned_embeds.safetensors")
                tokens = list(embedding.get("tokens") or ["<s0>", "<s1>"])
                vectors = self._embedding_vectors(load_file(path), field)
                if len(tokens) not in (1, vectors.shape[0]):
                    raise ValueError(f"{field}: {vectors.shape[0]} vector(s) in the file but "
                                     f"{len(tokens)} tokens given")
                token = tokens[0] if len(tokens) == 1 else tokens
                try:
                    pipe.load_textual_inversion(vectors, token=token, tokenizer=pipe.tokenizer,
                                                text_encoder=pipe.text_encoder)
                except Exception as exc:
                    raise ValueError(f"{field}: could not load {path!r}: {exc}") from exc
                added.extend(tokens)
                ctx.log(f"Embedding {os.path.basename(path)} loaded as {' '.join(tokens)}")
        except Exception:
            if added:
                pipe.unload_textual_inversion()
            raise
        return added

    @staticmethod
    def _embedding_vectors(state, field):
        """The [n, dim] vectors of an SD 1.x/2.x textual-inversion file, whatever its layout."""
        for key in ("clip_l", "emb_params"):  # pivotal tuning; A1111 safetensors
            if key in state:
                vectors = state[key]
                break
        else:
            if len(state) != 1:
                raise ValueError(f"{field}: unknown embedding layout (keys {sorted(state)})")
            vectors = next(iter(state.values()))  # diffusers: {"<token>": [dim]}
        return vectors.reshape(1, -1) if vectors.dim() == 1 else vectors
