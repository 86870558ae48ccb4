"""Stable Diffusion models for tests, made here and saved to disk the way real ones are found.

Every file is loaded by velesio exactly as a downloaded one would be: the checkpoint through
diffusers' single-file loader (original layout, one .safetensors) or as a diffusers folder, the
VAE as an original-layout single file, and the LoRA in the layout diffusers' training scripts
write (PEFT names), which ``load_lora_weights`` reads like any LoRA.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

from velesio_core.tiny_pipeline import (
    MODEL_NAME,
    build_tiny_pipeline,
    ldm_vae_state_dict,
    write_tiny_checkpoint,
    write_tiny_pipeline,
)

CHECKPOINT_FILE = "tiny-ldm.safetensors"
LORA_NAME = "tiny-style"
VAE_FILE = "tiny-vae.safetensors"


@dataclass(frozen=True)
class SdModels:
    models_dir: Path
    configs_dir: Path

    @property
    def checkpoints(self) -> Path:
        return self.models_dir / "image" / "models" / "Stable-diffusion"

    def env(self) -> dict[str, str]:
        return {"MODELS_DIR": str(self.models_dir), "SD_CONFIGS_DIR": str(self.configs_dir), "RUN_SD": "true"}


def write_sd_models(root: Path) -> SdModels:
    """A models folder in A1111's layout: the tiny pipeline as a single file and as a diffusers
    folder (another seed, so the two make different pictures), a LoRA and a VAE."""
    models = SdModels(root / "models", root / "configs")
    write_tiny_checkpoint(models.checkpoints / CHECKPOINT_FILE, models.configs_dir)
    write_tiny_pipeline(models.checkpoints / MODEL_NAME, seed=99)
    write_tiny_lora(models.models_dir / "image" / "models" / "Lora", LORA_NAME)
    write_tiny_vae(models.models_dir / "image" / "models" / "VAE" / VAE_FILE)
    return models


def write_tiny_lora(folder: Path, name: str) -> Path:
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipeline = build_tiny_pipeline()
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    pipeline.unet.add_adapter(config)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for parameter_name, parameter in pipeline.unet.named_parameters():
            if "lora_" in parameter_name:  # PEFT starts B at zero: a LoRA that changes nothing
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipeline.unet))
    folder.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(str(folder), unet_lora_layers=layers, weight_name=f"{name}.safetensors")
    return folder / f"{name}.safetensors"


def write_tiny_vae(path: Path) -> Path:
    from safetensors.torch import save_file

    vae = build_tiny_pipeline(seed=5).vae
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: value.contiguous() for key, value in ldm_vae_state_dict(vae).items()}, str(path))
    return path


def png_of(b64: str):
    """A base64 PNG from an answer, opened (and so checked) with Pillow."""
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(b64, validate=True)))
    assert image.format == "PNG"
    image.load()
    return image


def b64_png(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()
