"""`modules.txt2img`: Forge's processing constructor and the Generate function."""

from __future__ import annotations

from contextlib import closing
from typing import Any

import gradio as gr

import modules.scripts
from modules import processing, shared
from modules.infotext_utils import create_override_settings_dict


def txt2img_create_processing(
    id_task: str, request: gr.Request, prompt: str, negative_prompt: str, prompt_styles: list[str],
    n_iter: int, batch_size: int, cfg_scale: float, distilled_cfg_scale: float, height: int,
    width: int, enable_hr: bool, denoising_strength: float, hr_scale: float, hr_upscaler: str,
    hr_second_pass_steps: int, hr_resize_x: int, hr_resize_y: int, hr_checkpoint_name: str,
    hr_sampler_name: str, hr_scheduler: str, hr_prompt: str, hr_negative_prompt: str,
    hr_cfg: float, hr_distilled_cfg: float, override_settings_texts: list[str], *args: Any,
    force_enable_hr: bool = False,
) -> processing.StableDiffusionProcessingTxt2Img:  # fmt: skip
    override_settings = create_override_settings_dict(override_settings_texts)
    if force_enable_hr:
        enable_hr = True
    p = processing.StableDiffusionProcessingTxt2Img(
        outpath_samples=shared.opts.outdir_samples or shared.opts.outdir_txt2img_samples,
        outpath_grids=shared.opts.outdir_grids or shared.opts.outdir_txt2img_grids,
        prompt=prompt,
        styles=prompt_styles,
        negative_prompt=negative_prompt,
        batch_size=int(batch_size),
        n_iter=int(n_iter),
        cfg_scale=cfg_scale,
        distilled_cfg_scale=distilled_cfg_scale,
        width=int(width),
        height=int(height),
        enable_hr=enable_hr,
        denoising_strength=denoising_strength,
        hr_scale=hr_scale,
        hr_upscaler=hr_upscaler,
        hr_second_pass_steps=int(hr_second_pass_steps),
        hr_resize_x=int(hr_resize_x),
        hr_resize_y=int(hr_resize_y),
        hr_checkpoint_name=None
        if hr_checkpoint_name == "Use same checkpoint"
        else hr_checkpoint_name,
        hr_sampler_name=None if hr_sampler_name == "Use same sampler" else hr_sampler_name,
        hr_scheduler=None if hr_scheduler == "Use same scheduler" else hr_scheduler,
        hr_prompt=hr_prompt,
        hr_negative_prompt=hr_negative_prompt,
        hr_cfg=hr_cfg,
        hr_distilled_cfg=hr_distilled_cfg,
        override_settings=override_settings,
    )
    p.scripts = modules.scripts.scripts_txt2img
    p.script_args = args
    p.user = getattr(request, "username", None)
    return p


def txt2img(id_task: str, request: gr.Request, *args: Any) -> Any:
    p = txt2img_create_processing(id_task, request, *args)
    with closing(p):
        processed = modules.scripts.scripts_txt2img.run(p, *p.script_args)
        if processed is None:
            processed = processing.process_images(p)
    return processed.images, processed.js(), processed.info, ""
