"""Helpers that build JobSpec messages."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from stablequeue.app_kinds import APPS
from stablequeue.v1 import common_pb2, queue_pb2


def txt2img(
    prompt: str,
    *,
    negative_prompt: str = "",
    model: str = "",
    loras: Iterable[tuple[str, float]] = (),
    init_images: Iterable[bytes] = (),
    app: str = "any",
    server: str = "",
    priority: int = 0,
    label: str = "",
    extra: Mapping[str, Any] | None = None,
    **params: Any,
) -> queue_pb2.JobSpec:
    """A parameter job. With `init_images` it becomes img2img.

    Args:
        prompt: the positive prompt.
        loras: (name, weight) pairs.
        app: "any", "forge", "comfyui" or "sdcpp".
        server: alias of a server that must run it.
        extra: backend-specific settings, sent as extra_json.
        params: any other GenerationParams field (seed, steps, cfg_scale, width,
            height, sampler, scheduler, batch_size, iterations, denoising_strength).
            Without a seed the job gets a random one (-1): every run a new image.

    Raises:
        KeyError: unknown app.
        ValueError: unknown parameter name.
    """
    images = list(init_images)
    params.setdefault("seed", -1)
    generation = queue_pb2.GenerationParams(
        mode=queue_pb2.GENERATION_MODE_IMG2IMG if images else queue_pb2.GENERATION_MODE_TXT2IMG,
        prompt=prompt,
        negative_prompt=negative_prompt,
        model=model,
        loras=[queue_pb2.LoraRef(name=n, weight=w) for n, w in loras],
        init_images=images,
        extra_json=json.dumps(extra) if extra else "",
        **params,
    )
    return queue_pb2.JobSpec(
        app=APPS[app], params=generation, target_server=server, priority=priority, label=label
    )


def workflow(
    graph: Mapping[str, Any] | str, *, server: str = "", priority: int = 0, label: str = ""
) -> queue_pb2.JobSpec:
    """A ComfyUI API-format workflow job (a dict or its JSON text)."""
    text = graph if isinstance(graph, str) else json.dumps(graph)
    return queue_pb2.JobSpec(
        app=common_pb2.APP_KIND_COMFYUI,
        workflow_json=text,
        target_server=server,
        priority=priority,
        label=label,
    )
