"""The built-in ComfyUI workflow that runs a job's typed txt2img/img2img parameters.

The graph is the one ComfyUI's own default shows: checkpoint loader → (LoRA
loaders) → two text encoders → empty latent (or a loaded, VAE-encoded init
image) → KSampler → VAE decode → save. Names the user typed the A1111 way
("DPM++ 2M Karras", "Euler a") are translated to ComfyUI's sampler/scheduler ids.
"""

from __future__ import annotations

import re
from typing import Any

from coordinator.errors import BackendRejected
from stablequeue.v1 import queue_pb2

# A1111 / Forge sampler labels → ComfyUI KSampler `sampler_name` ids.
SAMPLERS = {
    "euler": "euler",
    "euler a": "euler_ancestral",
    "heun": "heun",
    "dpm2": "dpm_2",
    "dpm2 a": "dpm_2_ancestral",
    "lms": "lms",
    "dpm fast": "dpm_fast",
    "dpm adaptive": "dpm_adaptive",
    "dpm++ 2s a": "dpmpp_2s_ancestral",
    "dpm++ sde": "dpmpp_sde",
    "dpm++ 2m": "dpmpp_2m",
    "dpm++ 2m sde": "dpmpp_2m_sde",
    "dpm++ 3m sde": "dpmpp_3m_sde",
    "ddim": "ddim",
    "unipc": "uni_pc",
    "lcm": "lcm",
    "ipndm": "ipndm",
}
# A1111 "Schedule type" labels → ComfyUI scheduler ids (others: lower-cased, spaces → _).
SCHEDULERS = {"automatic": "normal", "uniform": "normal", "ddim": "ddim_uniform"}
# Old A1111 sampler labels carry the scheduler as a suffix ("DPM++ 2M Karras").
SCHEDULE_SUFFIXES = ("karras", "exponential", "sgm uniform")
NAME_SPLIT = re.compile(r"[\\/]")

DEFAULTS = {"steps": 20, "cfg": 7.0, "width": 512, "height": 512}


def sampler_and_scheduler(sampler: str, scheduler: str) -> tuple[str, str]:
    """ComfyUI (sampler_name, scheduler) for A1111-style or ComfyUI-style names."""
    label = sampler.strip().lower()
    schedule = scheduler.strip().lower()
    for suffix in SCHEDULE_SUFFIXES:
        if label.endswith(" " + suffix):
            label = label.removesuffix(" " + suffix)
            schedule = schedule or suffix
    comfy_sampler = SAMPLERS.get(label, label.replace(" ", "_")) if label else "euler"
    comfy_schedule = SCHEDULERS.get(schedule, schedule.replace(" ", "_")) if schedule else "normal"
    return comfy_sampler, comfy_schedule


def find_file(listed: list[str], wanted: str) -> str | None:
    """The entry of a ComfyUI folder listing (`GET /models/{folder}`) that `wanted` names.

    Entries are paths relative to the model folder, with the server's own
    separators; they are matched as they are, by full name, file name or stem.
    """
    want = wanted.strip().lower()
    for entry in listed:
        base = NAME_SPLIT.split(entry)[-1]
        names = {entry, base, base.rsplit(".", 1)[0], entry.rsplit(".", 1)[0]}
        if want in {n.lower() for n in names}:
            return entry
    return None


def build(
    params: queue_pb2.GenerationParams,
    checkpoint: str,
    loras: list[tuple[str, float]],
    seed: int,
    init_image: str = "",
) -> dict[str, Any]:
    """The API-format prompt for one parameter job.

    Args:
        params: the job's parameters.
        checkpoint: the checkpoint's name as the server lists it.
        loras: (file name as listed, weight) pairs.
        seed: the seed to use (never -1: ComfyUI wants a concrete one).
        init_image: for img2img, the uploaded image's name in ComfyUI's input folder.

    Raises:
        BackendRejected: parameters ComfyUI's default workflow cannot express.
    """
    if params.iterations > 1:
        raise BackendRejected(
            "ComfyUI runs one batch per job: use batch_size, or submit several jobs "
            "(sq submit --count N)"
        )
    sampler, scheduler = sampler_and_scheduler(params.sampler, params.scheduler)
    graph: dict[str, Any] = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}}
    }
    model, clip = ["4", 0], ["4", 1]
    for i, (name, weight) in enumerate(loras):
        node = str(20 + i)
        graph[node] = {
            "class_type": "LoraLoader",
            "inputs": {"model": model, "clip": clip, "lora_name": name,
                       "strength_model": weight, "strength_clip": weight},
        }  # fmt: skip
        model, clip = [node, 0], [node, 1]
    graph["6"] = {"class_type": "CLIPTextEncode", "inputs": {"text": params.prompt, "clip": clip}}
    graph["7"] = {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": params.negative_prompt, "clip": clip},
    }
    denoise = 1.0
    batch = params.batch_size or 1
    if init_image:
        graph["10"] = {"class_type": "LoadImage", "inputs": {"image": init_image}}
        graph["11"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
        latent = ["11", 0]
        if batch > 1:
            graph["12"] = {
                "class_type": "RepeatLatentBatch",
                "inputs": {"samples": latent, "amount": batch},
            }
            latent = ["12", 0]
        denoise = params.denoising_strength or 0.75
    else:
        graph["5"] = {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": params.width or DEFAULTS["width"],
                       "height": params.height or DEFAULTS["height"], "batch_size": batch},
        }  # fmt: skip
        latent = ["5", 0]
    graph["3"] = {
        "class_type": "KSampler",
        "inputs": {
            "seed": seed, "steps": params.steps or DEFAULTS["steps"],
            "cfg": params.cfg_scale or DEFAULTS["cfg"], "sampler_name": sampler,
            "scheduler": scheduler, "denoise": denoise, "model": model,
            "positive": ["6", 0], "negative": ["7", 0], "latent_image": latent,
        },
    }  # fmt: skip
    graph["8"] = {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}}
    graph["9"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["8", 0], "filename_prefix": "StableQueue"},
    }
    return graph
