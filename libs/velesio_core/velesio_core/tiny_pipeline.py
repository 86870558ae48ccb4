"""A tiny Stable Diffusion pipeline, built from configs with random weights.

velesio uses it as the embedded image default (``make up`` with no checkpoint configured) and in
tests. Every part is the real thing at toy size: a UNet with cross-attention (32/64 channels), a
VAE that downsamples by 8 like SD's, a 2-layer CLIP text encoder, CLIP's real tokenizer and a
DDIM scheduler. It makes a 64x64 image in 4 steps in a few tens of milliseconds on a CPU, so the
gateway's own cost dominates what tests and benchmarks measure. The pictures are noise.

Two on-disk forms, loaded through exactly the paths real checkpoints take:

- :func:`write_tiny_pipeline`: a diffusers folder (``model_index.json`` and one folder per part);
- :func:`write_tiny_checkpoint`: one ``.safetensors`` file in the original (LDM) layout that
  A1111 checkpoints use, plus the config folder single-file loading needs (see
  backends/sd/configs.py), written where ``SD_CONFIGS_DIR`` points.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

MODEL_NAME = "velesio-tiny-sd"
_SEED = 1234


def build_tiny_pipeline(seed: int = _SEED) -> Any:
    """The pipeline, in memory (deterministic for a given seed)."""
    from .backends.sd.quiet import quiet_hugging_face

    quiet_hugging_face()
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from .backends.sd.configs import clip_vocabulary, write_clip_vocabulary

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16, 16, 16),
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        sample_size=64,
    )
    vocab, _ = clip_vocabulary()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            projection_dim=32,
            bos_token_id=0,
            eos_token_id=2,
            pad_token_id=1,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        write_clip_vocabulary(Path(folder))
        tokenizer = CLIPTokenizer(
            str(Path(folder) / "vocab.json"), str(Path(folder) / "merges.txt"), model_max_length=77
        )
    return StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def write_tiny_pipeline(folder: str | Path, *, seed: int = _SEED) -> Path:
    """Save the tiny pipeline as a diffusers folder (atomically) and return its path."""
    folder = Path(folder)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    build_tiny_pipeline(seed).save_pretrained(str(partial), safe_serialization=True)
    if folder.exists():
        shutil.rmtree(folder)
    partial.replace(folder)
    return folder


def write_tiny_checkpoint(path: str | Path, configs_root: str | Path, *, seed: int = _SEED) -> Path:
    """Save the tiny pipeline as one A1111-style ``.safetensors`` file, and its config folder as
    ``<configs_root>/v1/`` (the type diffusers infers for it)."""
    from safetensors.torch import save_file

    path, configs_root = Path(path), Path(configs_root)
    pipeline = build_tiny_pipeline(seed)
    state = to_ldm_state_dict(pipeline)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file({key: tensor.contiguous() for key, tensor in state.items()}, str(partial))
    partial.replace(path)

    config = configs_root / "v1"
    shutil.rmtree(config, ignore_errors=True)
    pipeline.save_config(str(config))
    for name in ("unet", "vae", "scheduler"):
        getattr(pipeline, name).save_config(str(config / name))
    pipeline.text_encoder.config.save_pretrained(str(config / "text_encoder"))
    tokenizer = config / "tokenizer"
    tokenizer.mkdir(parents=True, exist_ok=True)
    (tokenizer / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": 77,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "do_lower_case": True,
            }
        )
    )
    return path


# -- the original (LDM) layout --------------------------------------------------------------------
# Single-file checkpoints keep the names of the CompVis code that trained SD; diffusers renames
# them on load. These functions name the parts of a diffusers pipeline the original way, so the
# tiny model can be saved as one file and then loaded the way every real checkpoint is.

_UNET = "model.diffusion_model."
_VAE = "first_stage_model."
_TEXT = "cond_stage_model.transformer.text_model."
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def to_ldm_state_dict(pipeline: Any) -> dict[str, Any]:
    state: dict[str, Any] = {}
    state |= {_UNET + key: value for key, value in ldm_unet_state_dict(pipeline.unet).items()}
    state |= {_VAE + key: value for key, value in ldm_vae_state_dict(pipeline.vae).items()}
    for key, value in pipeline.text_encoder.state_dict().items():
        state[_TEXT + key.removeprefix("text_model.")] = value
    return state


def _renamed(tensors: dict[str, Any], source: str, target: str, parts: dict[str, str] | None = None) -> dict[str, Any]:
    """The tensors under ``source.`` renamed to ``target.``, part names mapped by ``parts``."""
    renamed = {}
    for key, value in tensors.items():
        if not key.startswith(source + "."):
            continue
        rest = key[len(source) + 1 :]
        for old, new in (parts or {}).items():
            if rest.startswith(old + "."):
                rest = new + rest[len(old) :]
                break
        renamed[f"{target}.{rest}"] = value
    return renamed


def ldm_unet_state_dict(unet: Any) -> dict[str, Any]:
    tensors = unet.state_dict()
    config = unet.config
    layers = config.layers_per_block
    blocks = len(config.block_out_channels)
    out = _renamed(tensors, "time_embedding", "time_embed", {"linear_1": "0", "linear_2": "2"})
    out |= _renamed(tensors, "conv_in", "input_blocks.0.0")
    for i in range(blocks):
        for j in range(layers):
            index = 1 + i * (layers + 1) + j
            out |= _renamed(tensors, f"down_blocks.{i}.resnets.{j}", f"input_blocks.{index}.0", _UNET_RESNET)
            out |= _renamed(tensors, f"down_blocks.{i}.attentions.{j}", f"input_blocks.{index}.1")
        if i < blocks - 1:
            index = 1 + i * (layers + 1) + layers
            out |= _renamed(tensors, f"down_blocks.{i}.downsamplers.0.conv", f"input_blocks.{index}.0.op")
    out |= _renamed(tensors, "mid_block.resnets.0", "middle_block.0", _UNET_RESNET)
    out |= _renamed(tensors, "mid_block.attentions.0", "middle_block.1")
    out |= _renamed(tensors, "mid_block.resnets.1", "middle_block.2", _UNET_RESNET)
    for i in range(blocks):
        has_attention = f"up_blocks.{i}.attentions.0.proj_in.weight" in tensors
        for j in range(layers + 1):
            index = i * (layers + 1) + j
            out |= _renamed(tensors, f"up_blocks.{i}.resnets.{j}", f"output_blocks.{index}.0", _UNET_RESNET)
            out |= _renamed(tensors, f"up_blocks.{i}.attentions.{j}", f"output_blocks.{index}.1")
        if i < blocks - 1:
            index = i * (layers + 1) + layers
            slot = 2 if has_attention else 1
            out |= _renamed(tensors, f"up_blocks.{i}.upsamplers.0.conv", f"output_blocks.{index}.{slot}.conv")
    out |= _renamed(tensors, "conv_norm_out", "out.0")
    out |= _renamed(tensors, "conv_out", "out.2")
    return out


def ldm_vae_state_dict(vae: Any) -> dict[str, Any]:
    tensors = vae.state_dict()
    blocks = len(vae.config.block_out_channels)
    out: dict[str, Any] = {}
    for name in ("quant_conv", "post_quant_conv"):
        out |= _renamed(tensors, name, name)
    for side in ("encoder", "decoder"):
        for name in ("conv_in", "conv_out"):
            out |= _renamed(tensors, f"{side}.{name}", f"{side}.{name}")
        out |= _renamed(tensors, f"{side}.conv_norm_out", f"{side}.norm_out")
        out |= _renamed(tensors, f"{side}.mid_block.resnets.0", f"{side}.mid.block_1", _VAE_RESNET)
        out |= _renamed(tensors, f"{side}.mid_block.resnets.1", f"{side}.mid.block_2", _VAE_RESNET)
        attention = _renamed(tensors, f"{side}.mid_block.attentions.0", f"{side}.mid.attn_1", _VAE_ATTENTION)
        # The original attention projections are 1x1 convolutions, diffusers' are linear layers.
        out |= {key: value[:, :, None, None] if value.ndim == 2 else value for key, value in attention.items()}
        for i in range(blocks):
            # The decoder's up blocks run in the opposite order of the original's numbering.
            target = f"{side}.down.{i}" if side == "encoder" else f"{side}.up.{blocks - 1 - i}"
            source = f"{side}.down_blocks.{i}" if side == "encoder" else f"{side}.up_blocks.{i}"
            for j in range(vae.config.layers_per_block + 1):
                out |= _renamed(tensors, f"{source}.resnets.{j}", f"{target}.block.{j}", _VAE_RESNET)
            sampler = "downsample" if side == "encoder" else "upsample"
            out |= _renamed(tensors, f"{source}.{sampler}rs.0.conv", f"{target}.{sampler}.conv")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write velesio's tiny Stable Diffusion pipeline.")
    parser.add_argument("path", type=Path, help="a folder (diffusers layout), or a .safetensors file")
    parser.add_argument("--configs", type=Path, help="for a .safetensors file: where its config folder goes")
    args = parser.parse_args(argv)
    if args.path.suffix == ".safetensors":
        print(write_tiny_checkpoint(args.path, args.configs or args.path.parent / "configs"))
    else:
        print(write_tiny_pipeline(args.path))


if __name__ == "__main__":
    main()
