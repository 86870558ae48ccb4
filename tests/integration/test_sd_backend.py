"""The image backend in one process, on the tiny pipeline loaded from disk: its loading paths,
the CLIP tokenizer velesio ships, progress and cancellation at each step, and device choice."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from diffusers import EulerDiscreteScheduler

from tests.support.sd import CHECKPOINT_FILE, png_of
from velesio_core.backends.sd.backend import SdBackend
from velesio_core.backends.sd.configs import ConfigFolders, write_clip_vocabulary
from velesio_core.backends.sd.pipeline import Device
from velesio_core.cancellation import Cancellation, JobCancelled, Reason
from velesio_core.events import EventType
from velesio_core.jobs import IMAGE_MODEL, Job, JobKind
from velesio_core.tiny_pipeline import MODEL_NAME, build_tiny_pipeline, to_ldm_state_dict

BODY = {"prompt": "a door", "negative_prompt": "", "seed": 11, "sampler_name": "Euler", "scheduler": "Automatic",
        "batch_size": 1, "n_iter": 1, "steps": 4, "cfg_scale": 7.0, "width": 64, "height": 64, "tiling": False,
        "eta": None, "denoising_strength": None, "clip_skip": 1}  # fmt: skip


@pytest.fixture(scope="module")
def backend(sd_models):
    running = SdBackend(
        sd_models.checkpoints,
        lora_dir=sd_models.models_dir / "image" / "models" / "Lora",
        vae_dir=sd_models.models_dir / "image" / "models" / "VAE",
        configs=ConfigFolders(sd_models.configs_dir),
        device=Device.choose("cpu"),
        max_side=2048,
    )
    running.start(CHECKPOINT_FILE)
    yield running
    running.close()


def job(**changes) -> Job:
    return Job.create(JobKind.TXT2IMG, {**BODY, **changes}, model=IMAGE_MODEL, deadline_s=60, timeout_s=60)


def switch(checkpoint: str) -> Job:
    return Job.create(
        JobKind.SD_OPTIONS, {"sd_model_checkpoint": checkpoint}, model=IMAGE_MODEL, deadline_s=9, timeout_s=60
    )


def test_clip_vocabulary_gives_clips_own_token_ids(tmp_path):
    from transformers import CLIPTokenizer

    write_clip_vocabulary(tmp_path)
    tokenizer = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    # The ids OpenAI's CLIP gives "a photo of a cat" (start, a, photo, of, a, cat, end).
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(tokenizer) == 49408


def test_the_original_layout_round_trips_through_diffusers_own_converters():
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    pipeline = build_tiny_pipeline()
    original = to_ldm_state_dict(pipeline)
    unet = convert_ldm_unet_checkpoint(original, dict(pipeline.unet.config))
    assert unet.keys() == pipeline.unet.state_dict().keys()
    assert all(torch.equal(unet[k], v) for k, v in pipeline.unet.state_dict().items())
    vae = convert_ldm_vae_checkpoint(original, dict(pipeline.vae.config))
    assert vae.keys() == pipeline.vae.state_dict().keys()
    assert all(torch.equal(vae[k].reshape(v.shape), v) for k, v in pipeline.vae.state_dict().items())


def test_the_single_file_loads_to_what_was_saved(backend, sd_models):
    """Loaded through diffusers' single-file path, the checkpoint makes the very image the
    in-memory pipeline it was saved from makes."""
    result = backend.run(job(), lambda event: None, Cancellation())
    saved = build_tiny_pipeline()
    saved.set_progress_bar_config(disable=True)
    config = EulerDiscreteScheduler.load_config(str(sd_models.configs_dir / "v1" / "scheduler"))
    saved.scheduler = EulerDiscreteScheduler.from_config(config)
    expected = saved("a door", num_inference_steps=4, width=64, height=64, guidance_scale=7.0,
                     generator=[torch.Generator().manual_seed(11)], output_type="np").images[0]  # fmt: skip
    got = np.asarray(png_of(result["images"][0]), dtype=np.float32) / 255
    assert np.abs(got - expected).max() <= 1 / 255 + 1e-6


def test_every_step_reports_progress_and_a_checkpoint_switch_is_its_own_job(backend):
    events = []
    backend.run(job(steps=5), events.append, Cancellation())
    progress = [event.value() for event in events if event.type is EventType.PROGRESS]
    assert [p["step"] for p in progress] == [1, 2, 3, 4, 5] and {p["steps"] for p in progress} == {5}
    switched = backend.run(switch(MODEL_NAME), events.append, Cancellation())
    assert switched["sd_model_checkpoint"] == MODEL_NAME and backend.status().sd_model_checkpoint == MODEL_NAME
    assert backend.run(job(), events.append, Cancellation())["sd_model_name"] == MODEL_NAME
    backend.run(switch("tiny-ldm"), events.append, Cancellation())


def test_a_cancelled_job_stops_at_the_next_step(backend):
    cancellation = Cancellation()
    steps = []

    def emit(event):
        steps.append(event)
        if len(steps) == 2:
            threading.Thread(target=cancellation.cancel, args=(Reason.CLIENT_LEFT,)).start()
            threading.Event().wait(0.05)

    with pytest.raises(JobCancelled):
        backend.run(job(steps=30), emit, cancellation)
    assert len(steps) < 30


def test_an_interrupt_answers_with_the_images_done_so_far(backend):
    cancellation = Cancellation()

    def emit(event):
        if event.value()["job_no"] == 1 and event.value()["step"] == 1:
            cancellation.cancel(Reason.INTERRUPTED)

    result = backend.run(job(n_iter=4), emit, cancellation)
    assert result["interrupted"] and result["seeds"] == [11, 12]


def test_cuda_is_chosen_when_torch_sees_it_in_fp16(monkeypatch):
    """No GPU here: torch.cuda.is_available is faked, only to check what velesio would pick."""
    assert Device.choose("auto") == Device("cpu", torch.float32)
    with pytest.raises(RuntimeError, match="SD_DEVICE=cuda"):
        Device.choose("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert Device.choose("auto") == Device("cuda", torch.float16)
    assert Device.choose("cpu") == Device("cpu", torch.float32)


def test_a_ckpt_file_loads_like_its_safetensors_twin(sd_models, tmp_path):
    """Older checkpoints are pickled .ckpt files with a ``state_dict``; the same weights, the same picture."""
    from safetensors.torch import load_file

    from velesio_core.backends.sd.checkpoints import find_checkpoints
    from velesio_core.backends.sd.pipeline import load_checkpoint

    state = load_file(str(sd_models.checkpoints / CHECKPOINT_FILE))
    torch.save({"state_dict": state}, tmp_path / "old.ckpt")
    [checkpoint] = find_checkpoints(tmp_path)
    assert checkpoint.title.startswith("old.ckpt [")
    loaded = load_checkpoint(checkpoint, ConfigFolders(sd_models.configs_dir), Device.choose("cpu"))
    twin = load_checkpoint(find_checkpoints(sd_models.checkpoints)[0], ConfigFolders(sd_models.configs_dir),
                           Device.choose("cpu"))  # fmt: skip
    images = [
        pipeline.text2img(
            "a door",
            num_inference_steps=2,
            width=64,
            height=64,
            output_type="np",
            generator=torch.Generator().manual_seed(1),
        ).images[0]
        for pipeline in (loaded, twin)
    ]
    assert np.array_equal(images[0], images[1])


def test_a_corrupt_checkpoint_is_a_400_and_the_loaded_one_stays(sd_models, tmp_path):
    import shutil

    from velesio_core.errors import GatewayError

    shutil.copy(sd_models.checkpoints / CHECKPOINT_FILE, tmp_path / CHECKPOINT_FILE)
    (tmp_path / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    configs = ConfigFolders(sd_models.configs_dir)
    backend = SdBackend(tmp_path, lora_dir=tmp_path / "Lora", vae_dir=tmp_path / "VAE", configs=configs,
                        device=Device.choose("cpu"), max_side=512)  # fmt: skip
    backend.start(CHECKPOINT_FILE)
    with pytest.raises(GatewayError) as failure:
        backend.run(switch("broken"), lambda event: None, Cancellation())
    assert failure.value.status == 400 and "broken.safetensors" in failure.value.message
    assert backend.status().sd_model_checkpoint.startswith(CHECKPOINT_FILE)
    assert backend.run(job(), lambda event: None, Cancellation())["sd_model_name"] == "tiny-ldm"
    backend.close()
