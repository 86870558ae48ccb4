"""AUTOMATIC1111's sampler and schedule names, and the diffusers scheduler each one means.

A1111 (v1.9+) takes a sampler (``sampler_name``) and a noise schedule (``scheduler``) apart;
older clients, the Unity one among them, send both in one name (``"DPM++ 2M Karras"``), which A1111
splits on a suffix naming a schedule. Both forms are taken here. Where A1111 silently falls back
to its default sampler on an unknown name, velesio answers 400 with the valid names: a typo that
quietly changes every texture is worse than an error.

The mapping follows diffusers' own table of A1111 equivalents. Two samplers have no diffusers
counterpart (``DPM fast``, ``DPM adaptive``, which k-diffusion computes its own way): they run
on the closest one, DPM-Solver single-step, and /sdapi/v1/samplers says so in their options.
``Restart`` has none at all and is not offered.

Pure data and lookups: the API validates names with it without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...errors import invalid_request

#: Schedules a scheduler class can take as a sigma option, and as a timestep spacing.
_SIGMAS = frozenset({"karras", "exponential", "beta"})


@dataclass(frozen=True)
class Schedule:
    name: str
    label: str
    aliases: tuple[str, ...] = ()
    default_rho: float = -1.0
    need_inner_model: bool = False
    #: The diffusers scheduler options that make this schedule.
    options: dict[str, Any] = field(default_factory=dict)

    def a1111(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "aliases": list(self.aliases) or None,
            "default_rho": self.default_rho,
            "need_inner_model": self.need_inner_model,
        }


SCHEDULES: tuple[Schedule, ...] = (
    Schedule("automatic", "Automatic"),
    Schedule("uniform", "Uniform", need_inner_model=True, options={"timestep_spacing": "linspace"}),
    Schedule("karras", "Karras", default_rho=7.0, options={"use_karras_sigmas": True}),
    Schedule("exponential", "Exponential", options={"use_exponential_sigmas": True}),
    Schedule(
        "sgm_uniform", "SGM Uniform", ("SGMUniform",), need_inner_model=True, options={"timestep_spacing": "trailing"}
    ),
    Schedule("simple", "Simple", need_inner_model=True, options={"timestep_spacing": "trailing"}),
    Schedule("normal", "Normal", need_inner_model=True, options={"timestep_spacing": "linspace"}),
    Schedule("ddim", "DDIM", need_inner_model=True, options={"timestep_spacing": "leading"}),
    Schedule("beta", "Beta", need_inner_model=True, options={"use_beta_sigmas": True}),
)
AUTOMATIC = SCHEDULES[0]


@dataclass(frozen=True)
class Sampler:
    name: str
    #: The diffusers scheduler class, and its options.
    scheduler_class: str
    aliases: tuple[str, ...] = ()
    scheduler_options: dict[str, Any] = field(default_factory=dict)
    #: The schedule A1111 uses for "Automatic".
    default_schedule: str | None = None
    #: Whether the class takes sigma schedules (Karras, Exponential, Beta), not only a spacing.
    takes_sigmas: bool = True
    approximation: bool = False

    def a1111(self) -> dict[str, Any]:
        options: dict[str, Any] = {"diffusers": self.scheduler_class, **self.scheduler_options}
        if self.default_schedule:
            options["scheduler"] = self.default_schedule
        if self.approximation:
            options["approximation"] = True
        return {"name": self.name, "aliases": list(self.aliases), "options": options}

    def takes(self, schedule: Schedule) -> bool:
        if schedule is AUTOMATIC:
            return True
        sigma = any(key.removeprefix("use_").removesuffix("_sigmas") in _SIGMAS for key in schedule.options)
        return self.takes_sigmas or not sigma


_SDE = {"algorithm_type": "sde-dpmsolver++"}
SAMPLERS: tuple[Sampler, ...] = (
    Sampler("DPM++ 2M", "DPMSolverMultistepScheduler", ("k_dpmpp_2m",), default_schedule="karras"),
    Sampler("DPM++ SDE", "DPMSolverSinglestepScheduler", ("k_dpmpp_sde",), default_schedule="karras"),
    Sampler("DPM++ 2M SDE", "DPMSolverMultistepScheduler", ("k_dpmpp_2m_sde",), _SDE, "exponential"),
    Sampler(
        "DPM++ 2M SDE Heun",
        "DPMSolverMultistepScheduler",
        ("k_dpmpp_2m_sde_heun",),
        {**_SDE, "solver_type": "heun"},
        "exponential",
    ),
    Sampler(
        "DPM++ 2S a", "DPMSolverSinglestepScheduler", ("k_dpmpp_2s_a",), default_schedule="karras", approximation=True
    ),
    Sampler(
        "DPM++ 3M SDE", "DPMSolverMultistepScheduler", ("k_dpmpp_3m_sde",), {**_SDE, "solver_order": 3}, "exponential"
    ),
    Sampler("Euler a", "EulerAncestralDiscreteScheduler", ("k_euler_a", "k_euler_ancestral"), takes_sigmas=False),
    Sampler("Euler", "EulerDiscreteScheduler", ("k_euler",)),
    Sampler("LMS", "LMSDiscreteScheduler", ("k_lms",)),
    Sampler("Heun", "HeunDiscreteScheduler", ("k_heun",)),
    Sampler("DPM2", "KDPM2DiscreteScheduler", ("k_dpm_2",), default_schedule="karras"),
    Sampler("DPM2 a", "KDPM2AncestralDiscreteScheduler", ("k_dpm_2_a",), default_schedule="karras"),
    Sampler("DPM fast", "DPMSolverSinglestepScheduler", ("k_dpm_fast",), approximation=True),
    Sampler("DPM adaptive", "DPMSolverSinglestepScheduler", ("k_dpm_ad",), approximation=True),
    Sampler("DDIM", "DDIMScheduler", takes_sigmas=False),
    Sampler("PLMS", "PNDMScheduler", takes_sigmas=False),
    Sampler("UniPC", "UniPCMultistepScheduler"),
    Sampler("LCM", "LCMScheduler", takes_sigmas=False),
)
#: What A1111's API runs when a request names no sampler (its ``sampler_index`` default).
DEFAULT_SAMPLER = "Euler"

_SAMPLERS_BY_NAME = {key.lower(): s for s in SAMPLERS for key in (s.name, *s.aliases)}
_SCHEDULES_BY_NAME = {key.lower(): s for s in SCHEDULES for key in (s.name, s.label, *s.aliases)}


@dataclass(frozen=True)
class SamplerChoice:
    sampler: Sampler
    schedule: Schedule

    @property
    def schedule_label(self) -> str:
        return self.schedule.label

    def effective_schedule(self) -> Schedule:
        """The schedule that runs: "Automatic" means the sampler's own default."""
        if self.schedule is AUTOMATIC and self.sampler.default_schedule:
            return _SCHEDULES_BY_NAME[self.sampler.default_schedule]
        return self.schedule

    def scheduler_options(self) -> dict[str, Any]:
        return {**self.sampler.scheduler_options, **self.effective_schedule().options}


def choose(sampler_name: str | None, schedule_name: str | None = None) -> SamplerChoice:
    """Resolve A1111's ``sampler_name`` (legacy "X Karras" names included) and ``scheduler``.

    Raises a 400 GatewayError naming the valid choices for anything unknown.
    """
    name = (sampler_name or DEFAULT_SAMPLER).strip()
    schedule = AUTOMATIC
    if schedule_name and schedule_name.strip():
        schedule = _SCHEDULES_BY_NAME.get(schedule_name.strip().lower())  # type: ignore[assignment]
        if schedule is None:
            valid = ", ".join(s.label for s in SCHEDULES)
            raise invalid_request(f"scheduler: {schedule_name!r} is not a schedule velesio knows; use one of: {valid}")
    if name.lower() not in _SAMPLERS_BY_NAME:
        # A legacy name: a suffix naming a schedule is the schedule, as in A1111.
        for candidate in SCHEDULES:
            for suffix in (candidate.label, candidate.name, *candidate.aliases):
                if name.lower().endswith(" " + suffix.lower()):
                    name, schedule = name[: -len(suffix) - 1].rstrip(), candidate
                    break
            else:
                continue
            break
    sampler = _SAMPLERS_BY_NAME.get(name.lower())
    if sampler is None:
        valid = ", ".join(s.name for s in SAMPLERS)
        raise invalid_request(
            f"sampler_name: {sampler_name!r} is not a sampler velesio knows; use one of: {valid} "
            "(optionally followed by a schedule, e.g. 'DPM++ 2M Karras')"
        )
    if schedule is not AUTOMATIC and sampler.default_schedule == schedule.name:
        schedule = AUTOMATIC  # A1111 reports a sampler's own default schedule as "Automatic"
    if not sampler.takes(schedule):
        takes = ", ".join(s.label for s in SCHEDULES if sampler.takes(s))
        raise invalid_request(
            f"the {sampler.name} sampler cannot use the {schedule.label} schedule; use one of: {takes}"
        )
    return SamplerChoice(sampler, schedule)


def make_scheduler(choice: SamplerChoice, base_config: Any, **extra: Any) -> Any:
    """A diffusers scheduler for ``choice``, from the checkpoint's own scheduler config."""
    import diffusers

    scheduler_class = getattr(diffusers, choice.sampler.scheduler_class)
    return scheduler_class.from_config(base_config, **choice.scheduler_options(), **extra)
