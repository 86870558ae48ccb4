"""The Stable Diffusion figure: a whole txt2img through velesio (client → API → Redis → worker →
pipeline → PNG → client) against the same checkpoint's warm pipeline called directly in this
process, side by side, request by request."""

from __future__ import annotations

import time
from pathlib import Path

import requests

from bench.llm import paired
from bench.report import Section, percentile

#: (what, request): the tiny model at its own size, where velesio's overhead is all there is to see,
#: and at SD 1.x's size (512x512, 20 steps), where a generation takes long enough to be a job.
WORKLOADS = [
    ("64x64, 4 steps", {"width": 64, "height": 64, "steps": 4}),
    ("512x512, 20 steps", {"width": 512, "height": 512, "steps": 20}),
]
TARGET_RATIO = 1.05


def txt2img_ratio(section: Section, api_url: str, auth: tuple[str, str], checkpoint: Path, configs: Path,
                  samples: int) -> float:  # fmt: skip
    import torch
    from diffusers import EulerAncestralDiscreteScheduler

    from velesio_core.backends.sd.checkpoints import Checkpoint
    from velesio_core.backends.sd.configs import ConfigFolders
    from velesio_core.backends.sd.pipeline import Device, load_checkpoint

    loaded = load_checkpoint(
        Checkpoint(checkpoint, checkpoint.name, None), ConfigFolders(configs), Device.choose("cpu")
    )
    pipeline = loaded.text2img
    pipeline.scheduler = EulerAncestralDiscreteScheduler.from_config(loaded.scheduler_config)
    session = requests.Session()
    session.auth = auth
    headline = 0.0
    for label, size in WORKLOADS:
        body = {"prompt": "a mossy stone wall", "sampler_name": "Euler a", "cfg_scale": 7, "seed": 1, **size}

        def direct(body=body) -> float:
            started = time.perf_counter()
            generator = [torch.Generator("cpu").manual_seed(body["seed"])]
            pipeline(body["prompt"], num_inference_steps=body["steps"], width=body["width"], height=body["height"],
                     guidance_scale=body["cfg_scale"], generator=generator)  # fmt: skip
            return time.perf_counter() - started

        def gateway(body=body) -> float:
            started = time.perf_counter()
            response = session.post(api_url + "/sdapi/v1/txt2img", json=body, timeout=600)
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"txt2img: {response.status_code} {response.text[:200]}")
            return elapsed

        rounds = samples if size["steps"] <= 4 else max(5, samples // 5)
        # Three rounds warm both sides: torch's kernels, the worker's scheduler cache.
        directs, gateways = paired(direct, gateway, rounds, warmup=3)
        d50, g50 = percentile(directs, 0.5), percentile(gateways, 0.5)
        ratio = g50 / d50
        section.add(f"txt2img {label}, direct p50 / through velesio p50 ({rounds} each)",
                    f"{d50 * 1000:.1f} ms / {g50 * 1000:.1f} ms")  # fmt: skip
        added = f"(added: {(g50 - d50) * 1000:.1f} ms)"
        if label == WORKLOADS[-1][0]:
            section.add(f"**ratio**, {label} {added}", f"{ratio:.3f}", f"≤ {TARGET_RATIO}", ratio <= TARGET_RATIO)
        else:
            section.add(f"ratio, {label} {added}", f"{ratio:.3f}")
        headline = ratio
    openai_images(section, session, api_url, pipeline, samples)
    loaded.release()
    return headline


def openai_images(section: Section, session: requests.Session, api_url: str, pipeline, samples: int) -> None:
    """The same small picture through OpenAI's /v1/images/generations (quality low: 15 steps)."""
    import torch

    body = {"prompt": "a mossy stone wall", "size": "64x64", "quality": "low", "response_format": "b64_json"}

    def direct() -> float:
        started = time.perf_counter()
        pipeline(body["prompt"], num_inference_steps=15, width=64, height=64, guidance_scale=7.0,
                 generator=[torch.Generator("cpu").manual_seed(1)])  # fmt: skip
        return time.perf_counter() - started

    def gateway() -> float:
        started = time.perf_counter()
        response = session.post(api_url + "/v1/images/generations", json=body, timeout=600)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"/v1/images/generations: {response.status_code} {response.text[:200]}")
        return elapsed

    directs, gateways = paired(direct, gateway, samples, warmup=3)
    d50, g50 = percentile(directs, 0.5), percentile(gateways, 0.5)
    section.add(f"/v1/images/generations 64x64, 15 steps, direct p50 / through velesio p50 ({samples} each)",
                f"{d50 * 1000:.1f} ms / {g50 * 1000:.1f} ms (added: {(g50 - d50) * 1000:.1f} ms)")  # fmt: skip
