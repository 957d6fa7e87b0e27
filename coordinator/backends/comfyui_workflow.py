"""The built-in ComfyUI workflow that runs a job's typed txt2img/img2img parameters.

The graph is the one ComfyUI's own default shows: checkpoint loader → (LoRA
loaders) → two text encoders → empty latent (or a loaded, VAE-encoded init
image) → KSampler → VAE decode → save. Names the user typed the A1111 way
("DPM++ 2M Karras", "Euler a") are translated to ComfyUI's sampler/scheduler ids.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from stablequeue.v1 import queue_pb2
from stablequeue_coordinator.errors import BackendRejected

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


# ---- reading a graph back ---------------------------------------------------

CHECKPOINT_LOADERS = {
    "CheckpointLoaderSimple": "ckpt_name",
    "CheckpointLoader": "ckpt_name",
    "ImageOnlyCheckpointLoader": "ckpt_name",
    "UNETLoader": "unet_name",
}
SAMPLER_NODES = {"KSampler": "seed", "KSamplerAdvanced": "noise_seed"}
# ComfyUI sampler ids → A1111's labels (as its "Sampler:" field writes them).
A1111_LABELS = {
    "euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun", "dpm_2": "DPM2",
    "dpm_2_ancestral": "DPM2 a", "lms": "LMS", "dpm_fast": "DPM fast",
    "dpm_adaptive": "DPM adaptive", "dpmpp_2s_ancestral": "DPM++ 2S a", "dpmpp_sde": "DPM++ SDE",
    "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_sde": "DPM++ 2M SDE", "dpmpp_3m_sde": "DPM++ 3M SDE",
    "ddim": "DDIM", "uni_pc": "UniPC", "lcm": "LCM", "ipndm": "IPNDM",
}  # fmt: skip


def checkpoint_of(graph: Any) -> str:
    """The model file the graph's (first) checkpoint loader loads, or ""."""
    if not isinstance(graph, dict):
        return ""
    for node in graph.values():
        if isinstance(node, dict) and node.get("class_type") in CHECKPOINT_LOADERS:
            name = (node.get("inputs") or {}).get(CHECKPOINT_LOADERS[node["class_type"]])
            if isinstance(name, str) and name:
                return name
    return ""


class _Unclear(Exception):
    """The graph does not say one thing unambiguously."""


def _node(graph: dict[str, Any], link: Any, *classes: str) -> dict[str, Any]:
    if not (isinstance(link, list) and len(link) == 2 and str(link[0]) in graph):
        raise _Unclear
    node = graph[str(link[0])]
    if not isinstance(node, dict) or node.get("class_type") not in classes:
        raise _Unclear
    inputs = node.get("inputs")
    if not isinstance(inputs, dict):
        raise _Unclear
    return inputs


def _value(inputs: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = inputs.get(key)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise _Unclear  # linked from another node, or missing: not known before it ran
    return value


def _model_chain(graph: dict[str, Any], link: Any) -> tuple[str, list[tuple[str, float]]]:
    """The checkpoint behind a MODEL input, through LoRA loaders; (name, LoRAs)."""
    loras: list[tuple[str, float]] = []
    for _ in range(64):
        inputs = _node(graph, link, "LoraLoader", "LoraLoaderModelOnly", *CHECKPOINT_LOADERS)
        node = graph[str(link[0])]
        kind = node["class_type"]
        if kind in CHECKPOINT_LOADERS:
            return _value(inputs, CHECKPOINT_LOADERS[kind], str), loras[::-1]
        loras.append(
            (_value(inputs, "lora_name", str), _value(inputs, "strength_model", (int, float)))
        )
        link = inputs.get("model")
    raise _Unclear


def seed_of(graph: Any) -> int:
    """The seed of the graph's only sampler, when set in the graph; else -1."""
    if not isinstance(graph, dict):
        return -1
    samplers = [
        n for n in graph.values()
        if isinstance(n, dict) and n.get("class_type") in SAMPLER_NODES
    ]  # fmt: skip
    if len(samplers) != 1:
        return -1
    seed = (samplers[0].get("inputs") or {}).get(SAMPLER_NODES[samplers[0]["class_type"]])
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else -1


def parameters_of(graph: Any, seed: int | None = None) -> str:
    """An A1111-style `parameters` text for a workflow, when the graph says it
    unambiguously: one KSampler (or KSamplerAdvanced) whose values are set in the graph,
    prompts from CLIPTextEncode nodes, the model from a checkpoint loader (LoRA loaders
    between are listed as <lora:name:weight>) and the size from EmptyLatentImage. "" when
    anything is missing, linked from another kind of node, or there are several samplers."""
    from stablequeue import infotext  # the client package's A1111 writer

    if not isinstance(graph, dict):
        return ""
    samplers = [
        n for n in graph.values()
        if isinstance(n, dict) and n.get("class_type") in SAMPLER_NODES
    ]  # fmt: skip
    if len(samplers) != 1 or not isinstance(samplers[0].get("inputs"), dict):
        return ""
    sampler = samplers[0]
    inputs = sampler["inputs"]
    try:
        positive = _value(_node(graph, inputs.get("positive"), "CLIPTextEncode"), "text", str)
        negative = _value(_node(graph, inputs.get("negative"), "CLIPTextEncode"), "text", str)
        checkpoint, loras = _model_chain(graph, inputs.get("model"))
        params = queue_pb2.GenerationParams(
            prompt=positive,
            negative_prompt=negative,
            steps=_value(inputs, "steps", int),
            cfg_scale=float(_value(inputs, "cfg", (int, float))),
            sampler=_sampler_label(_value(inputs, "sampler_name", str)),
            scheduler=_value(inputs, "scheduler", str).replace("_", " ").title(),
        )
        for name, weight in loras:
            params.loras.add(name=NAME_SPLIT.split(name)[-1].rsplit(".", 1)[0], weight=weight)
        used = _value(inputs, SAMPLER_NODES[sampler["class_type"]], int)
        latent = inputs.get("latent_image")
        with contextlib.suppress(_Unclear):
            size = _node(graph, latent, "EmptyLatentImage")
            params.width, params.height = _value(size, "width", int), _value(size, "height", int)
        denoise = inputs.get("denoise")
        if isinstance(denoise, (int, float)) and not isinstance(denoise, bool) and denoise < 1:
            params.mode = queue_pb2.GENERATION_MODE_IMG2IMG
            params.denoising_strength = float(denoise)
    except _Unclear:
        return ""
    model = NAME_SPLIT.split(checkpoint)[-1].rsplit(".", 1)[0]
    return infotext.build(params, used if seed is None else seed, model)


def _sampler_label(name: str) -> str:
    """ComfyUI's sampler id as A1111 names it ("dpmpp_2m" → "DPM++ 2M"), else the id."""
    return A1111_LABELS.get(name, name)
