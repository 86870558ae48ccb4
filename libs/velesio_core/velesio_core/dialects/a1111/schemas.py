"""Request schemas of AUTOMATIC1111's API (v1.9/1.10 ``modules/api/models.py``).

Strict on types and bounds, permissive on unknown fields: A1111 ignores what it does not know,
and clients send a lot of it (the Unity client sends every field of its C# class, webuiapi
sends script arguments). Defaults are A1111's. What velesio cannot do (hires. fix, scripts)
is a 400 that says so, rather than a picture that silently differs from what was asked.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ...backends.sd.samplers import choose

#: A1111's sliders go to 2048 per side; velesio's own limit is SD_MAX_SIDE (checked per request).
Side = Annotated[int, Field(ge=64, le=8192, multiple_of=8)]
Seed = Annotated[int, Field(ge=-1, lt=2**63)]


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class Txt2ImgRequest(_Request):
    """POST /sdapi/v1/txt2img."""

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] | None = None
    seed: Seed = Field(-1, description="-1: random; the seed used is in the answer's info")
    subseed: Seed = -1
    subseed_strength: Annotated[float, Field(ge=0, le=1)] = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str | None = Field(None, description="A1111's name, e.g. 'Euler a' or 'DPM++ 2M Karras'")
    sampler_index: str | None = Field("Euler", description="Used only when sampler_name is empty (A1111's API)")
    scheduler: str | None = Field(None, description="'Automatic', 'Karras', 'Exponential', ... (A1111 v1.9+)")
    batch_size: Annotated[int, Field(ge=1, le=16)] = 1
    n_iter: Annotated[int, Field(ge=1, le=100)] = 1
    steps: Annotated[int, Field(ge=1, le=150)] = 50
    cfg_scale: Annotated[float, Field(ge=0, le=50)] = 7.0
    width: Side = 512
    height: Side = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: Annotated[float, Field(ge=0, le=1)] | None = None
    denoising_strength: Annotated[float, Field(ge=0, le=1)] | None = None
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    enable_hr: bool = False
    script_name: str | None = None
    script_args: list[Any] | None = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    force_task_id: str | None = None
    infotext: str | None = None

    @field_validator("script_name")
    @classmethod
    def _no_scripts(cls, name: str | None) -> str | None:
        if name:
            raise ValueError(f"scripts are not supported by velesio ({name!r}); leave script_name empty")
        return name

    @field_validator("enable_hr")
    @classmethod
    def _no_hires_fix(cls, enabled: bool) -> bool:
        if enabled:
            raise ValueError("hires. fix is not supported by velesio; ask for the final width and height instead")
        return enabled

    @field_validator("refiner_checkpoint")
    @classmethod
    def _no_refiner(cls, name: str | None) -> str | None:
        if name and name.lower() not in ("none", ""):
            raise ValueError("a refiner is not supported by velesio (it runs SD 1.x/2.x checkpoints)")
        return name

    @field_validator("alwayson_scripts")
    @classmethod
    def _no_alwayson(cls, scripts: dict[str, Any]) -> dict[str, Any]:
        if scripts:
            raise ValueError(f"always-on scripts are not supported by velesio ({', '.join(scripts)})")
        return scripts

    @model_validator(mode="after")
    def _known_sampler(self) -> Txt2ImgRequest:
        choose(self.sampler_name or self.sampler_index, self.scheduler)  # unknown: a 400 listing the valid ones
        return self


class Img2ImgRequest(Txt2ImgRequest):
    """POST /sdapi/v1/img2img: txt2img's fields, the input image, and inpainting's mask."""

    init_images: list[str] | None = None
    resize_mode: Annotated[int, Field(ge=0, le=3)] = 0
    denoising_strength: Annotated[float, Field(ge=0, le=1)] = 0.75
    image_cfg_scale: float | None = None
    mask: str | None = None
    mask_blur_x: Annotated[int, Field(ge=0, le=64)] = 4
    mask_blur_y: Annotated[int, Field(ge=0, le=64)] = 4
    mask_blur: Annotated[int, Field(ge=0, le=64)] | None = None
    inpainting_fill: Annotated[int, Field(ge=0, le=3)] = 0
    inpaint_full_res: bool | int = True
    inpaint_full_res_padding: Annotated[int, Field(ge=0)] = 0
    inpainting_mask_invert: Annotated[int, Field(ge=0, le=1)] = 0
    initial_noise_multiplier: float | None = None
    include_init_images: bool = False


class OptionsRequest(_Request):
    """POST /sdapi/v1/options: any of A1111's settings; velesio acts on the checkpoint and the VAE."""

    sd_model_checkpoint: str | None = None
    sd_vae: str | None = None
    CLIP_stop_at_last_layers: Annotated[int, Field(ge=1, le=12)] | None = None
