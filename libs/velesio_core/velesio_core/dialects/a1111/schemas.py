"""Request schemas of AUTOMATIC1111's API (v1.9/1.10 ``modules/api/models.py``).

Types as A1111's pydantic takes them: it generates its models from the processing classes with
every field ``Optional`` and coerces in lax mode, so ``inpainting_mask_invert: false``, ``"20"``
steps and ``null`` anywhere are accepted; a null here means A1111's default. Bounds protect the
server (sizes, batch counts); unknown fields are kept: A1111 ignores what it does not know, and
clients send a lot of it (the Unity client sends every field of its C# class, webuiapi sends
script arguments). What velesio cannot do (scripts, a refiner, an upscaler it lacks) is a 400
naming what is available, rather than a picture that silently differs from what was asked.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ...backends.sd.samplers import choose
from ...backends.sd.upscalers import extras_upscaler, hires_upscaler

#: A1111's sliders go to 2048 per side; velesio's own limit is SD_MAX_SIDE (checked per request).
#: A side that is not a multiple of 8 is rounded down to one, as A1111's latent size rounds it.
Side = Annotated[int, Field(ge=64, le=8192)]
Seed = Annotated[int, Field(ge=-1, lt=2**63)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_the_default(cls, data: Any) -> Any:
        """A1111's fields are all Optional: a null is taken, and means the field's default."""
        if isinstance(data, dict):
            return {
                key: value
                for key, value in data.items()
                if value is not None or key not in cls.model_fields or cls.model_fields[key].default is None
            }
        return data


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
    hr_scale: Annotated[float, Field(ge=1, le=8)] = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: Annotated[int, Field(ge=0, le=150)] = 0
    hr_resize_x: Annotated[int, Field(ge=0, le=8192)] = 0
    hr_resize_y: Annotated[int, Field(ge=0, le=8192)] = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    firstphase_width: int = 0
    firstphase_height: int = 0
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

    @field_validator("hr_upscaler")
    @classmethod
    def _known_upscaler(cls, name: str | None) -> str | None:
        if name:
            hires_upscaler(name)  # unknown: a 400 listing the ones velesio has
        return name

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
        if self.hr_sampler_name or self.hr_scheduler:
            choose(self.hr_sampler_name or self.sampler_name or self.sampler_index, self.hr_scheduler or self.scheduler)
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
    inpainting_mask_invert: Annotated[int, Field(ge=0, le=1)] = 0  # A1111 sends 0/1; pydantic takes false/true
    initial_noise_multiplier: float | None = None
    include_init_images: bool = False


class OptionsRequest(_Request):
    """POST /sdapi/v1/options: any of A1111's settings, kept and echoed back as A1111 keeps them;
    velesio acts on the checkpoint, the VAE and CLIP skip."""

    sd_model_checkpoint: str | None = None
    sd_vae: str | None = None
    CLIP_stop_at_last_layers: Annotated[int, Field(ge=1, le=12)] | None = None


class ExtrasSingleImageRequest(_Request):
    """POST /sdapi/v1/extra-single-image (A1111's ``ExtrasSingleImageRequest``)."""

    image: str = ""
    resize_mode: Annotated[int, Field(ge=0, le=1)] = 0
    show_extras_results: bool = True
    gfpgan_visibility: Annotated[float, Field(ge=0, le=1)] = 0
    codeformer_visibility: Annotated[float, Field(ge=0, le=1)] = 0
    codeformer_weight: Annotated[float, Field(ge=0, le=1)] = 0
    upscaling_resize: Annotated[float, Field(ge=1, le=8)] = 2
    upscaling_resize_w: Annotated[int, Field(ge=1, le=8192)] = 512
    upscaling_resize_h: Annotated[int, Field(ge=1, le=8192)] = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: Annotated[float, Field(ge=0, le=1)] = 0
    upscale_first: bool = False

    @model_validator(mode="after")
    def _known_upscalers(self) -> ExtrasSingleImageRequest:
        extras_upscaler(self.upscaler_1, field="upscaler_1")
        extras_upscaler(self.upscaler_2, field="upscaler_2")
        if self.gfpgan_visibility or self.codeformer_visibility:
            raise ValueError("face restoration is not available in velesio (GET /sdapi/v1/face-restorers is empty)")
        return self


class ExtrasImage(BaseModel):
    data: str
    name: str = ""


class ExtrasBatchImagesRequest(ExtrasSingleImageRequest):
    """POST /sdapi/v1/extra-batch-images: the same, for ``imageList``."""

    imageList: list[ExtrasImage] = Field(default_factory=list)


class PngInfoRequest(_Request):
    image: str = ""
