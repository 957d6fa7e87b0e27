"""`modules.img2img`: Forge builds and runs img2img in one function (no constructor)."""

from __future__ import annotations

from contextlib import closing
from typing import Any

import gradio as gr

import modules.scripts
from modules import processing, shared
from modules.infotext_utils import create_override_settings_dict


def img2img_function(
    id_task: str, request: gr.Request, mode: int, prompt: str, negative_prompt: str,
    prompt_styles: list[str], init_img: Any, mask_blur: int, inpainting_fill: int, n_iter: int,
    batch_size: int, cfg_scale: float, distilled_cfg_scale: float, image_cfg_scale: float,
    denoising_strength: float, height: int, width: int, resize_mode: int,
    override_settings_texts: list[str], *args: Any,
) -> Any:  # fmt: skip
    override_settings = create_override_settings_dict(override_settings_texts)
    is_batch = mode == 5
    p = processing.StableDiffusionProcessingImg2Img(
        outpath_samples=shared.opts.outdir_samples or shared.opts.outdir_img2img_samples,
        outpath_grids=shared.opts.outdir_grids or shared.opts.outdir_img2img_grids,
        prompt=prompt,
        negative_prompt=negative_prompt,
        styles=prompt_styles,
        batch_size=int(batch_size),
        n_iter=int(n_iter),
        cfg_scale=cfg_scale,
        distilled_cfg_scale=distilled_cfg_scale,
        width=int(width),
        height=int(height),
        init_images=[init_img],
        mask=None,
        mask_blur=mask_blur,
        inpainting_fill=inpainting_fill,
        resize_mode=resize_mode,
        denoising_strength=denoising_strength,
        image_cfg_scale=image_cfg_scale,
        override_settings=override_settings,
    )
    p.scripts = modules.scripts.scripts_img2img
    p.script_args = args
    p.user = getattr(request, "username", None)
    with closing(p):
        if is_batch:
            processed = processing.Processed(p, [])  # a folder batch runs locally
        else:
            processed = modules.scripts.scripts_img2img.run(p, *args)
            if processed is None:
                processed = processing.process_images(p)
    return processed.images, processed.js(), processed.info, ""


def img2img(id_task: str, request: gr.Request, *args: Any) -> Any:
    """Forge hands the work to its main thread; the stand-in calls it directly."""
    return img2img_function(id_task, request, *args)
