"""The Stable Diffusion backend: velesio's image jobs on a diffusers pipeline.

A job's payload is a validated AUTOMATIC1111 request (dialects/a1111/decode.py). The backend
makes the pipeline match what the job asks for first (its checkpoint, VAE, LoRAs and sampler),
then runs ``n_iter`` batches of ``batch_size`` images, reporting a ``progress`` event at every
denoising step and checking the job's Cancellation there:

- the client left, the job timed out, the worker stops: the step raises JobCancelled;
- A1111's *interrupt*: the remaining steps are skipped, the current latents decoded, and the
  job answers with the images done so far (what A1111 does);
- A1111's *skip*: the same for the current batch only; the next batch still runs.

Everything here runs on the one thread that owns the pipeline.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...cancellation import Cancellation, JobCancelled, Reason
from ...errors import ErrorKind, GatewayError, invalid_request
from ...events import Event, EventType
from ...jobs import Job, JobKind
from ...results import CheckpointEntry, ImageProgressData, ImageResult, ImageState, SdOptionsResult
from ...settings import Settings
from .checkpoints import Checkpoint, find_checkpoints, find_weights, resolve
from .configs import ConfigFolders
from .images import decode_image, encode_png
from .infotext import VERSION, infotext
from .pipeline import Device, LoadedPipeline, load_checkpoint, load_vae
from .prompts import LoraRequest, extract_loras
from .samplers import SamplerChoice, choose, make_scheduler
from .upscalers import LatentMode, hires_upscaler, resize_image, resize_latents

log = logging.getLogger(__name__)

Emit = Callable[[Event], None]
#: The VAE names A1111 uses for "the checkpoint's own".
OWN_VAE = ("Automatic", "None", "")
_SEED_LIMIT = 2**32
#: The steps diffusers' PNDM scheduler needs for its Runge-Kutta warm-up.
_PLMS_WARMUP_STEPS = 4


@dataclass
class SdStatus:
    """What a worker tells the API about its image pipeline (part of its registry card)."""

    checkpoints: list[CheckpointEntry]
    loras: list[str]
    vaes: list[str]
    sd_model_checkpoint: str | None
    sd_vae: str
    device: str

    def image_state(self) -> ImageState:
        """As the card carries it."""
        return {
            "checkpoints": self.checkpoints,
            "loras": self.loras,
            "vaes": self.vaes,
            "sd_model_checkpoint": self.sd_model_checkpoint,
            "sd_vae": self.sd_vae,
            "device": self.device,
        }


@dataclass
class _Progress:
    emit: Emit
    cancellation: Cancellation
    job_no: int = 0
    job_count: int = 1
    interrupted: bool = False
    skipped: bool = False
    started_at: float = field(default_factory=time.time)
    #: Denoising steps run, over every batch, and the seconds they took (for the speed metric).
    steps_run: int = 0
    diffusion_s: float = 0.0
    _batch_started: float = 0.0

    def batch_starts(self) -> None:
        self._batch_started = time.perf_counter()

    def on_step_end(self, pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        reason = self.cancellation.reason
        if reason is Reason.INTERRUPTED:
            self.interrupted = True
            pipeline._interrupt = True  # diffusers skips the remaining steps, then decodes
        elif reason is not None:
            raise JobCancelled(reason)
        elif self.cancellation.take_skip():
            self.skipped = True
            pipeline._interrupt = True
        self.steps_run += 1
        now = time.perf_counter()
        # From the batch's start (its prompt's encoding included) to its latest step's end.
        self.diffusion_s += now - self._batch_started
        self._batch_started = now
        steps = int(getattr(pipeline, "num_timesteps", 0) or 0)
        progress: ImageProgressData = {
            "step": step + 1,
            "steps": steps,
            "job_no": self.job_no,
            "job_count": self.job_count,
            "started_at": self.started_at,
        }
        self.emit(Event.of(EventType.PROGRESS, progress))
        return tensors


class SdBackend:
    def __init__(
        self,
        checkpoints_dir: Path,
        *,
        lora_dir: Path,
        vae_dir: Path,
        configs: ConfigFolders,
        device: Device,
        max_side: int,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._checkpoints_dir = checkpoints_dir
        self._lora_dir = lora_dir
        self._vae_dir = vae_dir
        self._configs = configs
        self._device = device
        self._max_side = max_side
        self._on_change = on_change
        self._loaded: LoadedPipeline | None = None
        #: What a job that asks for nothing runs on: the checkpoint and VAE of the last options job.
        self._base: tuple[str | None, str] = (None, "Automatic")
        self._checkpoints: list[Checkpoint] = []
        # Guards the pipeline for whoever else looks at it (status, close); jobs are serial anyway.
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, on_change: Callable[[], None] | None = None) -> SdBackend:
        return cls(
            settings.sd_checkpoints_dir,
            lora_dir=settings.sd_lora_dir,
            vae_dir=settings.sd_vae_dir,
            configs=ConfigFolders(settings.sd_configs_dir),
            device=Device.choose(settings.sd_device),
            max_side=settings.sd_max_side,
            on_change=on_change,
        )

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, wanted: str | None = None) -> None:
        """Load ``wanted`` (any A1111 name of a checkpoint), else the first checkpoint found."""
        checkpoints = self.rescan()
        if not checkpoints:
            raise invalid_request(f"there is no checkpoint in {self._checkpoints_dir}")
        self._switch(self._resolve(wanted) if wanted else checkpoints[0])
        self._base = (self.status().sd_model_checkpoint, "Automatic")

    def rescan(self) -> list[Checkpoint]:
        self._checkpoints = find_checkpoints(self._checkpoints_dir)
        return self._checkpoints

    def close(self) -> None:
        with self._lock:
            if self._loaded is not None:
                self._loaded.release()
                self._loaded = None

    def healthy(self) -> bool:
        """Whether a checkpoint is loaded and ready for jobs."""
        return self._loaded is not None

    def status(self) -> SdStatus:
        loaded = self._loaded
        return SdStatus(
            checkpoints=[checkpoint.a1111() for checkpoint in self._checkpoints],
            loras=sorted(find_weights(self._lora_dir)),
            vaes=sorted(path.name for path in find_weights(self._vae_dir).values()),
            sd_model_checkpoint=loaded.checkpoint.title if loaded else None,
            sd_vae=loaded.vae_name if loaded else "Automatic",
            device=self._device.name,
        )

    # -- jobs ------------------------------------------------------------------------------------

    def run(self, job: Job, emit: Emit, cancellation: Cancellation) -> ImageResult | SdOptionsResult:
        """Run an image job; return its result (the progress events go to ``emit`` as they happen)."""
        cancellation.check()
        payload = job.payload
        if job.kind is JobKind.SD_OPTIONS:
            self._apply_options(payload.get("sd_model_checkpoint"), payload.get("sd_vae"))
            status = self.status()
            self._base = (status.sd_model_checkpoint, status.sd_vae)
            options: SdOptionsResult = {"sd_model_checkpoint": status.sd_model_checkpoint, "sd_vae": status.sd_vae}
            return options
        # A request's override lasts for that request only (A1111 restores its settings after).
        base_checkpoint, base_vae = self._base
        self._apply_options(payload.get("sd_model_checkpoint") or base_checkpoint, payload.get("sd_vae") or base_vae)
        cancellation.check()
        if job.kind is JobKind.TXT2IMG:
            return self._generate(payload, emit, cancellation, init=None)
        if job.kind is JobKind.IMG2IMG:
            return self._generate(payload, emit, cancellation, init=self._init_images(payload))
        raise GatewayError(ErrorKind.NOT_SUPPORTED, f"the image backend cannot run {job.kind} jobs")

    def _apply_options(self, checkpoint_name: str | None, vae_name: str | None) -> None:
        loaded = self._loaded
        # Most jobs ask for what is loaded already: no lookup, no file system.
        if checkpoint_name and (loaded is None or checkpoint_name != loaded.checkpoint.title):
            wanted = self._resolve(checkpoint_name)
            if loaded is None or wanted.path != loaded.checkpoint.path:
                self._switch(wanted)
        if vae_name is not None:
            self._set_vae(vae_name)

    def _resolve(self, name: str) -> Checkpoint:
        checkpoint = _find(self._checkpoints, name) or _find(self.rescan(), name)
        if checkpoint is None:
            known = ", ".join(c.title for c in self._checkpoints) or "none"
            raise GatewayError(ErrorKind.NOT_FOUND, f"no checkpoint is called {name!r}; this worker has: {known}")
        return checkpoint

    def _switch(self, checkpoint: Checkpoint) -> None:
        previous = self._loaded
        vae_name = previous.vae_name if previous else "Automatic"
        # Free the old weights first: two SD models at once may not fit a GPU.
        with self._lock:
            self._loaded = None
            if previous is not None:
                previous.release()
        try:
            loaded = load_checkpoint(checkpoint, self._configs, self._device)
        except GatewayError:
            self._recover(previous)
            raise
        except Exception as error:  # a corrupt or foreign file: say which, and keep serving the old one
            log.exception("cannot load %s", checkpoint.title)
            self._recover(previous)
            raise invalid_request(
                f"{checkpoint.title} cannot be loaded as a Stable Diffusion checkpoint ({error.__class__.__name__})"
            ) from None
        with self._lock:
            self._loaded = loaded
        if vae_name not in OWN_VAE:
            try:
                self._set_vae(vae_name)
            except GatewayError:
                log.warning("VAE %s does not fit %s; using the checkpoint's own", vae_name, checkpoint.title)
        self._changed()

    def _recover(self, previous: LoadedPipeline | None) -> None:
        if previous is not None:
            loaded = load_checkpoint(previous.checkpoint, self._configs, self._device)
            with self._lock:
                self._loaded = loaded
            self._changed()

    def _set_vae(self, name: str) -> None:
        loaded = self._require_loaded()
        if name in OWN_VAE or name == loaded.vae_name:
            if name in OWN_VAE and loaded.vae_name not in OWN_VAE:
                load_vae(loaded, None, "Automatic")
                self._changed()
            return
        vaes = find_weights(self._vae_dir)
        path = vaes.get(name) or vaes.get(Path(name).stem)
        if path is None:
            known = ", ".join(sorted(p.name for p in vaes.values())) or "none"
            raise GatewayError(ErrorKind.NOT_FOUND, f"sd_vae: no VAE is called {name!r}; this worker has: {known}")
        try:
            load_vae(loaded, path, path.name)
        except (OSError, ValueError, RuntimeError) as error:
            raise invalid_request(
                f"sd_vae: {path.name} cannot be loaded as a VAE for this checkpoint ({error})"
            ) from None
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def _require_loaded(self) -> LoadedPipeline:
        if self._loaded is None:
            raise GatewayError(ErrorKind.UNAVAILABLE, "no checkpoint is loaded", retry_after_s=2)
        return self._loaded

    def _init_images(self, payload: dict[str, Any]) -> tuple[Any, Any | None]:
        from PIL import ImageFilter, ImageOps

        images = payload.get("init_images") or []
        if not images:
            raise GatewayError(ErrorKind.NOT_FOUND, "Init image not found")
        init = decode_image(images[0], field="init_images[0]", max_side=self._max_side).convert("RGB")
        size = (payload["width"], payload["height"])
        init = init.resize(size) if init.size != size else init
        mask = None
        if payload.get("mask"):
            mask = decode_image(payload["mask"], field="mask", max_side=self._max_side).convert("L")
            mask = mask.resize(size) if mask.size != size else mask
            if payload.get("inpainting_mask_invert"):
                mask = ImageOps.invert(mask)
            if payload.get("mask_blur"):
                mask = mask.filter(ImageFilter.GaussianBlur(payload["mask_blur"]))
        return init, mask

    def _generate(
        self, payload: dict[str, Any], emit: Emit, cancellation: Cancellation, *, init: tuple[Any, Any | None] | None
    ) -> ImageResult:
        loaded = self._require_loaded()
        choice = choose(payload.get("sampler_name"), payload.get("scheduler"))
        prompt, loras = extract_loras(payload.get("prompt", ""))
        self._apply_loras(loaded, loras)
        call = _pipeline_call(loaded, payload, prompt, init)
        call.pipeline.scheduler = _scheduler(loaded, choice, payload["steps"])
        hires = payload.get("hires")
        second_pass = None
        if hires is not None:
            call.arguments["output_type"] = "latent"
            second_pass = _HiresPass.of(loaded, hires, payload, prompt)
        _set_tiling(loaded, bool(payload.get("tiling")))

        seeds = _seeds(payload)
        watch = _Progress(emit, cancellation, job_count=payload["n_iter"])
        images = _run_batches(call, seeds, payload["batch_size"], payload["n_iter"], watch, second_pass)
        if cancellation.reason not in (None, Reason.INTERRUPTED):
            cancellation.check()
        if init is not None and init[1] is not None:
            images = _keep_unmasked(images, *init)
        return _result(payload, loaded, choice, images, seeds[: len(images)], call.denoising, hires, watch)

    def _apply_loras(self, loaded: LoadedPipeline, loras: list[LoraRequest]) -> None:
        wanted = tuple((lora.name, lora.weight) for lora in loras)
        if wanted == loaded.active_adapters:
            return
        pipeline = loaded.text2img
        if not loras:
            pipeline.disable_lora()
            loaded.active_adapters = ()
            return
        files = find_weights(self._lora_dir)
        for lora in loras:
            if lora.name in loaded.adapters:
                continue
            path = files.get(lora.name)
            if path is None:
                known = ", ".join(sorted(files)) or "none"
                raise invalid_request(f"prompt: no LoRA is called {lora.name!r}; this worker has: {known}")
            adapter = f"lora{len(loaded.adapters)}"
            try:
                pipeline.load_lora_weights(str(path), adapter_name=adapter)
            except (OSError, ValueError, KeyError, RuntimeError) as error:
                raise invalid_request(
                    f"prompt: {path.name} cannot be loaded as a LoRA for this checkpoint ({error})"
                ) from None
            loaded.adapters[lora.name] = adapter
        pipeline.enable_lora()
        pipeline.set_adapters([loaded.adapters[lora.name] for lora in loras], [lora.weight for lora in loras])
        loaded.active_adapters = wanted


def _scheduler(loaded: LoadedPipeline, choice: SamplerChoice, steps: int) -> Any:
    """The checkpoint's scheduler for ``choice``, made once and kept."""
    # diffusers' PLMS warms up with Runge-Kutta steps that need 4 steps or more: fewer run
    # PLMS alone (A1111's PLMS takes any step count).
    fewer = choice.sampler.scheduler_class == "PNDMScheduler" and steps < _PLMS_WARMUP_STEPS
    key = (choice.sampler.name, choice.schedule.name + (" no warm-up" if fewer else ""))
    if key not in loaded.schedulers:
        options = {"skip_prk_steps": True} if fewer else {}
        loaded.schedulers[key] = make_scheduler(choice, loaded.scheduler_config, **options)
    return loaded.schedulers[key]


def at_least_one_step(strength: float, steps: int) -> float:
    """The img2img strength diffusers runs: ``strength``, or where ``steps * strength`` rounds down
    to no step at all, the strength of one step. A1111 runs one step at the lowest noise there
    (its k-diffusion img2img keeps the schedule's last sigma), diffusers would fail."""
    if int(steps * strength) >= 1:
        return strength
    return min(1.0, 1.0 / steps + 1e-6)


def _prompts(pipeline: Any, prompt: str, negative: str, clip_skip: int) -> dict[str, Any]:
    """The prompt arguments of a diffusers call. With CLIP skip (A1111's CLIP_stop_at_last_layers
    above 1) the embeddings are made here: diffusers' own ``clip_skip`` reaches into
    ``text_encoder.text_model``, which transformers 5 no longer has."""
    if clip_skip <= 1:
        return {"prompt": prompt, "negative_prompt": negative or None}
    return {
        "prompt_embeds": _clip_embeddings(pipeline, prompt, clip_skip),
        "negative_prompt_embeds": _clip_embeddings(pipeline, negative, clip_skip),
    }


def _clip_embeddings(pipeline: Any, text: str, clip_skip: int) -> Any:
    """CLIP's hidden state ``clip_skip`` layers from the end, through the final layer norm, as
    A1111 computes it (1: the last layer's output)."""
    import torch

    encoder = pipeline.text_encoder
    tokens = pipeline.tokenizer(
        text, padding="max_length", max_length=pipeline.tokenizer.model_max_length, truncation=True, return_tensors="pt"
    )
    with torch.no_grad():
        output = encoder(tokens.input_ids.to(encoder.device), output_hidden_states=True)
        layers = len(output.hidden_states) - 1
        hidden = output.hidden_states[-min(clip_skip, layers)]
        norm = getattr(encoder, "text_model", encoder).final_layer_norm
        return norm(hidden).to(dtype=encoder.dtype)


def _decode_latents(pipeline: Any, latents: Any) -> list[Any]:
    import torch

    with torch.no_grad():
        decoded = pipeline.vae.decode(latents / pipeline.vae.config.scaling_factor, return_dict=False)[0]
    return list(pipeline.image_processor.postprocess(decoded, output_type="pil"))


@dataclass
class _HiresPass:
    """Hires. fix's second pass on a batch's first-pass latents: upscale them (a latent mode)
    or their images (Lanczos, Nearest, None), then img2img at the hires. size."""

    loaded: LoadedPipeline
    hires: dict[str, Any]
    scheduler: Any
    prompts: dict[str, Any]
    cfg_scale: float

    @classmethod
    def of(cls, loaded: LoadedPipeline, hires: dict[str, Any], payload: dict[str, Any], prompt: str) -> _HiresPass:
        if loaded.inpainting_model:
            raise invalid_request(
                f"hires. fix runs its second pass as img2img, which {loaded.checkpoint.title} "
                "(an inpainting checkpoint) cannot do; use another checkpoint or leave enable_hr off"
            )
        # The sampler is looked up before the first pass runs: an unknown one fails the job at once.
        scheduler = _scheduler(loaded, choose(hires["sampler_name"], hires["scheduler"]), hires["steps"])
        second_prompt = hires["prompt"] if hires["prompt"] is not None else prompt
        negative = payload.get("negative_prompt", "")
        second_negative = hires["negative_prompt"] if hires["negative_prompt"] is not None else negative
        clip_skip = payload.get("clip_skip") or 1
        prompts = _prompts(loaded.text2img, second_prompt, second_negative, clip_skip)
        return cls(loaded, hires, scheduler, prompts, payload["cfg_scale"])

    def __call__(self, latents: Any, generators: list[Any], watch: _Progress) -> list[Any]:
        if watch.interrupted:  # A1111 answers an interrupted first pass as it is
            return _decode_latents(self.loaded.text2img, latents)
        size = (self.hires["width"], self.hires["height"])
        upscaler = hires_upscaler(self.hires["upscaler"])
        if isinstance(upscaler, LatentMode):
            start: Any = resize_latents(latents, size, upscaler)
        else:
            images = _decode_latents(self.loaded.text2img, latents)
            start = [resize_image(image, size, upscaler) for image in images]
        pipeline = self.loaded.img2img
        pipeline.scheduler = self.scheduler
        output = pipeline(
            **self.prompts,
            image=start,
            strength=at_least_one_step(self.hires["denoising_strength"], self.hires["steps"]),
            num_inference_steps=self.hires["steps"],
            num_images_per_prompt=len(generators),
            guidance_scale=self.cfg_scale,
            generator=generators,
            callback_on_step_end=watch.on_step_end,
        )
        return list(output.images)


def _find(checkpoints: list[Checkpoint], name: str) -> Checkpoint | None:
    entry = resolve([checkpoint.a1111() for checkpoint in checkpoints], name)
    return next((checkpoint for checkpoint in checkpoints if entry and checkpoint.title == entry["title"]), None)


@dataclass
class _PipelineCall:
    """Which of a checkpoint's pipelines a job runs on, and with what arguments."""

    pipeline: Any
    arguments: dict[str, Any]
    #: The denoising strength that applied (None for a new image), as A1111 reports it.
    denoising: float | None


def _pipeline_call(
    loaded: LoadedPipeline, payload: dict[str, Any], prompt: str, init: tuple[Any, Any | None] | None
) -> _PipelineCall:
    from PIL import Image

    width, height = payload["width"], payload["height"]
    clip_skip = payload.get("clip_skip") or 1
    arguments: dict[str, Any] = {
        "num_inference_steps": payload["steps"],
        "guidance_scale": payload["cfg_scale"],
        "num_images_per_prompt": payload["batch_size"],
        **_prompts(loaded.text2img, prompt, payload.get("negative_prompt", ""), clip_skip),
    }
    if payload.get("eta") is not None:
        arguments["eta"] = payload["eta"]
    if init is not None:
        image, mask = init
        pipeline = loaded.inpaint if mask is not None or loaded.inpainting_model else loaded.img2img
        denoising = payload["denoising_strength"]
        arguments |= {"image": image, "strength": at_least_one_step(denoising, payload["steps"])}
        if pipeline is loaded.inpaint:
            arguments |= {
                "mask_image": mask if mask is not None else Image.new("L", image.size, 255),
                "width": width,
                "height": height,
            }
        return _PipelineCall(pipeline, arguments, denoising)
    if loaded.inpainting_model:
        # An inpainting checkpoint makes a new image from a fully masked one, as A1111 does.
        arguments |= {
            "image": Image.new("RGB", (width, height), (127, 127, 127)),
            "width": width,
            "height": height,
            "mask_image": Image.new("L", (width, height), 255),
            "strength": 1.0,
        }
        return _PipelineCall(loaded.inpaint, arguments, None)
    return _PipelineCall(loaded.text2img, arguments | {"width": width, "height": height}, None)


def _seeds(payload: dict[str, Any]) -> list[int]:
    """One seed per image, consecutive from the request's (-1: a random one), as A1111 does."""
    seed = payload["seed"] if payload["seed"] != -1 else random.randrange(_SEED_LIMIT)
    return [(seed + index) % _SEED_LIMIT for index in range(payload["batch_size"] * payload["n_iter"])]


def _run_batches(
    call: _PipelineCall,
    seeds: list[int],
    batch_size: int,
    n_iter: int,
    watch: _Progress,
    second_pass: _HiresPass | None = None,
) -> list[Any]:
    """Run ``n_iter`` batches, until the last or an interrupt; a skip ends only its own batch.
    With ``second_pass``, each batch's output is its first pass's latents, finished there."""
    import torch

    images: list[Any] = []
    for iteration in range(n_iter):
        if watch.interrupted:
            break
        watch.job_no = iteration
        batch_seeds = seeds[iteration * batch_size : (iteration + 1) * batch_size]
        generators = [torch.Generator("cpu").manual_seed(s) for s in batch_seeds]
        skipped_before = watch.skipped
        watch.skipped = False
        watch.batch_starts()
        output = call.pipeline(**call.arguments, generator=generators, callback_on_step_end=watch.on_step_end)
        images += output.images if second_pass is None else second_pass(output.images, generators, watch)
        watch.skipped = skipped_before or watch.skipped
    return images


def _keep_unmasked(images: list[Any], original: Any, mask: Any) -> list[Any]:
    """A1111 puts the original back wherever the mask is black: only the masked part changes."""
    from PIL import Image

    return [Image.composite(image, original, mask) for image in images]


def _result(
    payload: dict[str, Any],
    loaded: LoadedPipeline,
    choice: SamplerChoice,
    images: list[Any],
    seeds: list[int],
    denoising: float | None,
    hires: dict[str, Any] | None,
    watch: _Progress,
) -> ImageResult:
    """The job's result: the images as PNGs with A1111's infotext, and what they were made with."""
    clip_skip = payload.get("clip_skip") or 1
    vae_name = loaded.vae_name if loaded.vae_name not in OWN_VAE else None
    parameters = {
        "Steps": payload["steps"],
        "Sampler": choice.sampler.name,
        "Schedule type": choice.schedule_label,
        "CFG scale": payload["cfg_scale"],
        "Seed": None,
        "Size": f"{payload['width']}x{payload['height']}",
        "Model hash": loaded.checkpoint.short_hash,
        "Model": loaded.checkpoint.model_name,
        "VAE": vae_name,
        "Denoising strength": denoising,
        "Clip skip": clip_skip if clip_skip > 1 else None,
        **_hires_parameters(hires),
        "Version": VERSION,
    }
    if hires is not None:  # A1111 reports the second pass's strength
        denoising = hires["denoising_strength"]
        parameters["Denoising strength"] = denoising
    prompt, negative = payload.get("prompt", ""), payload.get("negative_prompt", "")
    texts = [infotext(prompt, negative, {**parameters, "Seed": seed}) for seed in seeds]
    return {
        "images": [encode_png(image, text) for image, text in zip(images, texts, strict=True)],
        "seeds": seeds,
        "infotexts": texts,
        "sampler_name": choice.sampler.name,
        "scheduler": choice.schedule_label,
        "denoising_strength": denoising,
        "sd_model_name": loaded.checkpoint.model_name,
        "sd_model_hash": loaded.checkpoint.short_hash,
        "sd_vae_name": vae_name,
        "clip_skip": clip_skip,
        "extra_generation_params": _hires_parameters(hires),
        "is_using_inpainting_conditioning": loaded.inpainting_model,
        "interrupted": watch.interrupted,
        "skipped": watch.skipped,
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(watch.started_at)),
        "version": VERSION,
        "timings": {"steps": watch.steps_run, "diffusion_ms": round(watch.diffusion_s * 1000, 3)},
    }


def _hires_parameters(hires: dict[str, Any] | None) -> dict[str, Any]:
    """The infotext fields A1111 writes for hires. fix."""
    if hires is None:
        return {}
    return {
        "Hires resize": f"{hires['width']}x{hires['height']}",
        "Hires steps": hires["steps"],
        "Hires upscaler": hires["upscaler"],
        "Hires sampler": hires["sampler_name"],
    }


def _set_tiling(loaded: LoadedPipeline, tiling: bool) -> None:
    """A1111's ``tiling``: convolutions wrap around the edges, so the image tiles seamlessly
    (the Unity client's Text2Material asks for it, for textures)."""
    if loaded.tiling == tiling:
        return
    import torch

    for model in (loaded.text2img.unet, loaded.text2img.vae):
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.padding_mode = "circular" if tiling else "zeros"
    loaded.tiling = tiling
