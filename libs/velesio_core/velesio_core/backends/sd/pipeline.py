"""Load a checkpoint into diffusers pipelines, offline, on the right device.

One checkpoint gives three pipelines that share its weights (no copy): text to image, image to
image, and inpainting. Nothing is ever fetched: folders load with ``local_files_only``, single
files with one of velesio's config folders (configs.py). On CUDA the weights are fp16; on a CPU
fp32, since CPU kernels for fp16 are slow or missing.

Noise is drawn on the CPU from a seeded generator whatever the device, so that a seed gives the
same image on a developer's laptop and on the GPU server (A1111's "CPU" noise source).

Not thread-safe, by design: a worker runs one image job at a time per pipeline (the ``sd`` queue
has one thread, see the worker), because diffusers pipelines keep per-call state on themselves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import invalid_request
from .checkpoints import Checkpoint
from .configs import ConfigFolders, model_type
from .quiet import quiet_hugging_face

log = logging.getLogger(__name__)

#: The pipeline classes velesio runs (SD 1.x and 2.x, and their inpainting variants).
_SUPPORTED_CLASSES = ("StableDiffusionPipeline", "StableDiffusionInpaintPipeline", "StableDiffusionImg2ImgPipeline")


@dataclass(frozen=True)
class Device:
    name: str
    dtype: Any

    @classmethod
    def choose(cls, preference: str) -> Device:
        """``auto``: CUDA in fp16 when torch sees a GPU, else the CPU in fp32."""
        import torch

        if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
            if not torch.cuda.is_available():
                raise RuntimeError("SD_DEVICE=cuda, but torch sees no CUDA device")
            return cls("cuda", torch.float16)
        return cls("cpu", torch.float32)


@dataclass
class LoadedPipeline:
    checkpoint: Checkpoint
    text2img: Any
    img2img: Any
    inpaint: Any
    #: The diffusers config folder the checkpoint was built from (its VAE config is reused for VAEs).
    config_dir: Path
    #: Whether the UNet takes a mask and a masked image (9 input channels).
    inpainting_model: bool
    device: Device
    own_vae: Any
    #: The checkpoint's own scheduler config, which every sampler's scheduler is made from.
    scheduler_config: Any = None
    vae_name: str = "Automatic"
    #: LoRA file stem -> the adapter name it was loaded under.
    adapters: dict[str, str] = field(default_factory=dict)
    active_adapters: tuple[tuple[str, float], ...] = ()
    tiling: bool = False
    schedulers: dict[tuple[str, str], Any] = field(default_factory=dict)

    @property
    def pipelines(self) -> tuple[Any, Any, Any]:
        return self.text2img, self.img2img, self.inpaint

    def release(self) -> None:
        """Drop the weights now (a checkpoint switch must not hold two models in GPU memory)."""
        for name in ("text2img", "img2img", "inpaint", "own_vae"):
            setattr(self, name, None)
        if self.device.name == "cuda":
            import torch

            torch.cuda.empty_cache()


def load_checkpoint(checkpoint: Checkpoint, configs: ConfigFolders, device: Device) -> LoadedPipeline:
    quiet_hugging_face()
    import diffusers

    if checkpoint.is_folder:
        config_dir = checkpoint.path
        class_name = _pipeline_class_name(config_dir, checkpoint.name)
        pipeline_class = getattr(diffusers, class_name)
        base = pipeline_class.from_pretrained(
            str(checkpoint.path),
            local_files_only=True,
            dtype=device.dtype,
            safety_checker=None,
            requires_safety_checker=False,
        )
    else:
        kind = model_type(checkpoint.path)
        config_dir = configs.for_type(kind, checkpoint.name)
        class_name = _pipeline_class_name(config_dir, checkpoint.name)
        pipeline_class = getattr(diffusers, class_name)
        base = pipeline_class.from_single_file(
            str(checkpoint.path), config=str(config_dir), local_files_only=True, dtype=device.dtype
        )
    base.to(device.name)
    components = {**base.components, "safety_checker": None, "feature_extractor": None}
    text2img = diffusers.StableDiffusionPipeline(**components, requires_safety_checker=False)
    img2img = diffusers.StableDiffusionImg2ImgPipeline(**components, requires_safety_checker=False)
    inpaint = diffusers.StableDiffusionInpaintPipeline(**components, requires_safety_checker=False)
    for pipeline in (text2img, img2img, inpaint):
        pipeline.set_progress_bar_config(disable=True)
    inpainting_model = base.unet.config.in_channels == 9
    log.info("loaded %s (%s) on %s", checkpoint.title, class_name, device.name)
    return LoadedPipeline(
        checkpoint, text2img, img2img, inpaint, config_dir, inpainting_model, device, base.vae, base.scheduler.config
    )


def load_vae(loaded: LoadedPipeline, path: Path | None, name: str) -> None:
    """Put the VAE at ``path`` (None: the checkpoint's own) into every pipeline of ``loaded``."""
    if path is None:
        vae = loaded.own_vae
    else:
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_single_file(
            str(path),
            config=str(loaded.config_dir),
            subfolder="vae",
            local_files_only=True,
            dtype=loaded.device.dtype,
        ).to(loaded.device.name)
    for pipeline in loaded.pipelines:
        pipeline.register_modules(vae=vae)
    loaded.vae_name = name
    loaded.tiling = False  # the new VAE's convolutions pad with zeros


def _pipeline_class_name(config_dir: Path, checkpoint_name: str) -> str:
    import json

    try:
        class_name: str = json.loads((config_dir / "model_index.json").read_text())["_class_name"]
    except (OSError, ValueError, KeyError):
        raise invalid_request(f"{checkpoint_name}: its model_index.json cannot be read") from None
    if class_name not in _SUPPORTED_CLASSES:
        raise invalid_request(
            f"{checkpoint_name} is a {class_name}; velesio runs Stable Diffusion 1.x/2.x pipelines "
            f"({', '.join(_SUPPORTED_CLASSES)})"
        )
    return class_name
