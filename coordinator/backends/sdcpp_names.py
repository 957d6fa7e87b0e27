"""stable-diffusion.cpp's own sampler and scheduler names, and the A1111/Forge names
translated to them the way sd.cpp's own `/sdapi` layer does (PROTOCOLS.md §12).

sd-server silently runs its default for a name it does not know and sd-cli exits
with its usage text, so a name is translated here or refused, never passed on.
"""

from __future__ import annotations

# `sample_method` / `--sampling-method` values (master-827).
SAMPLE_METHODS = (
    "euler", "euler_a", "heun", "dpm2", "dpm++2s_a", "dpm++2m", "dpm++2mv2", "ipndm",
    "ipndm_v", "lcm", "ddim_trailing", "tcd", "res_multistep", "res_2s", "er_sde",
    "euler_cfg_pp", "euler_a_cfg_pp", "euler_ge", "dpm++2m_sde", "dpm++2m_sde_bt", "lms",
)  # fmt: skip
# `scheduler` / `--scheduler` values.
SCHEDULERS = (
    "discrete", "karras", "exponential", "ays", "gits", "sgm_uniform", "simple",
    "smoothstep", "kl_optimal", "lcm", "bong_tangent", "ltx2", "logit_normal", "flux2",
    "flux", "beta",
)  # fmt: skip

# A1111/Forge sampler labels (lower-cased) and k-diffusion ids → sd.cpp names, as its
# /sdapi layer maps them; plus the A1111 labels that name an sd.cpp sampler directly.
A1111_SAMPLERS = {
    "euler a": "euler_a", "k_euler_a": "euler_a", "euler": "euler", "k_euler": "euler",
    "heun": "heun", "k_heun": "heun", "dpm2": "dpm2", "k_dpm_2": "dpm2", "lcm": "lcm",
    "ddim": "ddim_trailing", "dpm++ 2m": "dpm++2m", "k_dpmpp_2m": "dpm++2m",
    "dpm++ 2m sde": "dpm++2m_sde", "k_dpmpp_2m_sde": "dpm++2m_sde",
    "dpm++ 2m sde gpu": "dpm++2m_sde_bt", "k_dpmpp_2m_sde_gpu": "dpm++2m_sde_bt",
    "res multistep": "res_multistep", "k_res_multistep": "res_multistep",
    "res 2s": "res_2s", "k_res_2s": "res_2s", "dpm++ 2s a": "dpm++2s_a", "lms": "lms",
    "ipndm": "ipndm", "ipndm_v": "ipndm_v", "tcd": "tcd", "er sde": "er_sde",
    "euler cfg++": "euler_cfg_pp", "euler a cfg++": "euler_a_cfg_pp",
}  # fmt: skip
# A1111/Forge "Schedule type" labels → sd.cpp schedulers ("" = sd.cpp's own default).
A1111_SCHEDULERS = {
    "automatic": "", "uniform": "discrete", "normal": "discrete", "karras": "karras",
    "exponential": "exponential", "sgm uniform": "sgm_uniform", "simple": "simple",
    "align your steps": "ays", "align your steps 11": "ays", "align your steps 32": "ays",
    "align your steps gits": "gits", "kl optimal": "kl_optimal", "beta": "beta",
}  # fmt: skip
# Old A1111 sampler labels carry the schedule ("DPM++ 2M Karras").
SCHEDULE_SUFFIXES = ("karras", "exponential", "sgm uniform")


class UnknownName(ValueError):
    """A sampler or scheduler sd.cpp does not have; the message lists the valid ones."""


def split_label(sampler: str, scheduler: str) -> tuple[str, str]:
    """("DPM++ 2M Karras", "") → ("DPM++ 2M", "karras"): the schedule a label carries."""
    label, schedule = sampler.strip(), scheduler.strip()
    for suffix in SCHEDULE_SUFFIXES:
        if label.lower().endswith(" " + suffix):
            return label[: -len(suffix) - 1], schedule or suffix
    return label, schedule


def _name(value: str, what: str, own: tuple[str, ...], a1111: dict[str, str], hint: str) -> str:
    """sd.cpp's `what` for `value`: its own name, or an A1111 label ("_" read as " ");
    "" keeps its default.

    Raises:
        UnknownName: sd.cpp has no such `what`.
    """
    label = value.strip().lower()
    if not label or label in own:
        return label
    for key in (label, label.replace("_", " ")):
        if key in a1111:
            return a1111[key]
    raise UnknownName(
        f"stable-diffusion.cpp has no {what} {value!r}; it has {', '.join(own)} ({hint})"
    )


def sample_method(sampler: str) -> str:
    """sd.cpp's name for `sampler` (its own, or an A1111 label); "" keeps its default."""
    hint = "or the A1111 names of these, e.g. 'Euler a', 'DPM++ 2M'"
    return _name(sampler, "sampler", SAMPLE_METHODS, A1111_SAMPLERS, hint)


def scheduler_name(scheduler: str) -> str:
    """sd.cpp's name for `scheduler` (its own, or an A1111 label); "" keeps its default."""
    hint = "or 'Automatic', 'Karras', 'Align Your Steps', ..."
    return _name(scheduler, "scheduler", SCHEDULERS, A1111_SCHEDULERS, hint)


def translate(sampler: str, scheduler: str) -> tuple[str, str]:
    """(sample_method, scheduler) for sd.cpp, "" where its default applies.

    Raises:
        UnknownName: naming the field sd.cpp does not know.
    """
    label, schedule = split_label(sampler, scheduler)
    return sample_method(label), scheduler_name(schedule)
