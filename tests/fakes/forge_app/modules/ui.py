"""`modules.ui`: txt2img and img2img built the way Forge's create_ui builds them.

Each tab is its own gr.Blocks; extension tabs come from `on_ui_tabs`; one page
renders them all. Like Forge, every component's creation fires the
before/after-component callbacks (Forge patches gradio's Component.__init__), and on
gradio 4+ (Forge; not A1111's gradio 3) each component's event methods are replaced
by a `(*args, **kwargs)` wrapper, as Forge's modules/gradio_extensions.py does
(PROTOCOLS.md §12).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import gradio as gr

from modules import img2img, infotext_utils, script_callbacks, scripts, shared, txt2img

_original_init = gr.components.Component.__init__
page_head = ""  # the extensions' scripts and styles (webui.page_head)


WRAPS_EVENTS = int(gr.__version__.split(".")[0]) >= 4


class EventWrapper:
    """Forge's replacement of a component's event method: takes anything, renames
    `_js` to `js`, calls the original. Its signature is `(*args, **kwargs)`."""

    def __init__(self, event: Any) -> None:
        self.event = event

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if "_js" in kwargs:
            kwargs["js"] = kwargs.pop("_js")
        return self.event(*args, **kwargs)


def _wrap_events(component: Any) -> None:
    for event in getattr(component, "EVENTS", None) or []:
        name = str(getattr(event, "event_name", event))
        original = getattr(component, name, None)
        if original is not None:
            setattr(component, name, EventWrapper(original))


def _component_init(self: Any, *args: Any, **kwargs: Any) -> None:
    if scripts.scripts_current is not None:
        scripts.scripts_current.before_component(self, **kwargs)
    script_callbacks.before_component_callback(self, **kwargs)
    _original_init(self, *args, **kwargs)
    if WRAPS_EVENTS:
        _wrap_events(self)
    script_callbacks.after_component_callback(self, **kwargs)
    if scripts.scripts_current is not None:
        scripts.scripts_current.after_component(self, **kwargs)


def install_component_hooks() -> None:
    gr.components.Component.__init__ = _component_init


def remove_component_hooks() -> None:
    gr.components.Component.__init__ = _original_init


def wrap_gradio_gpu_call(func: Any) -> Any:
    @functools.wraps(func)
    def f(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return f


def _toprow(tab: str) -> tuple[Any, Any, Any, Any]:
    with gr.Row(elem_id=f"{tab}_toprow"):
        with gr.Column(scale=6):
            prompt = gr.Textbox(label="Prompt", lines=3, elem_id=f"{tab}_prompt")
            negative = gr.Textbox(label="Negative prompt", lines=2, elem_id=f"{tab}_neg_prompt")
        with gr.Column(scale=1, elem_id=f"{tab}_actions_column"):
            with gr.Row(elem_id=f"{tab}_generate_box"):
                gr.Button("Interrupt", elem_id=f"{tab}_interrupt", visible=False)
                generate = gr.Button("Generate", elem_id=f"{tab}_generate", variant="primary")
            styles = gr.Dropdown(
                label="Styles", choices=list(shared.prompt_styles.styles), value=[],
                multiselect=True, elem_id=f"{tab}_styles",
            )  # fmt: skip
    return prompt, negative, styles, generate


def _sizes(tab: str) -> list[Any]:
    return [
        gr.Slider(label="Batch count", minimum=1, maximum=100, step=1, value=1,
                  elem_id=f"{tab}_batch_count"),
        gr.Slider(label="Batch size", minimum=1, maximum=8, step=1, value=1,
                  elem_id=f"{tab}_batch_size"),
        gr.Slider(label="CFG Scale", minimum=1, maximum=30, step=0.5, value=7.0,
                  elem_id=f"{tab}_cfg_scale"),
        gr.Slider(label="Distilled CFG Scale", minimum=0, maximum=30, step=0.1, value=3.5,
                  elem_id=f"{tab}_distilled_cfg_scale"),
    ]  # fmt: skip


def _txt2img_tab() -> Any:
    runner = scripts.scripts_txt2img
    runner.initialize_scripts(is_img2img=False)
    scripts.scripts_current = runner
    with gr.Blocks(analytics_enabled=False) as interface:
        prompt, negative, styles, generate = _toprow("txt2img")
        n_iter, batch_size, cfg, distilled = _sizes("txt2img")
        height = gr.Slider(label="Height", minimum=64, maximum=2048, step=8, value=512,
                           elem_id="txt2img_height")  # fmt: skip
        width = gr.Slider(label="Width", minimum=64, maximum=2048, step=8, value=512,
                          elem_id="txt2img_width")  # fmt: skip
        with gr.Accordion("Hires. fix", open=False):
            enable_hr = gr.Checkbox(label="Hires. fix", value=False, elem_id="txt2img_hr")
            denoising = gr.Slider(label="Denoising strength", minimum=0, maximum=1, value=0.7,
                                  elem_id="txt2img_denoising_strength")  # fmt: skip
            hr_scale = gr.Slider(label="Upscale by", minimum=1, maximum=4, value=2.0,
                                 elem_id="txt2img_hr_scale")  # fmt: skip
            hr_upscaler = gr.Dropdown(label="Upscaler", choices=["Latent", "R-ESRGAN 4x+"],
                                      value="Latent", elem_id="txt2img_hr_upscaler")  # fmt: skip
            hr_steps = gr.Slider(label="Hires steps", minimum=0, maximum=150, step=1, value=0,
                                 elem_id="txt2img_hires_steps")  # fmt: skip
            hr_x = gr.Slider(label="Resize width to", minimum=0, maximum=2048, step=8, value=0)
            hr_y = gr.Slider(label="Resize height to", minimum=0, maximum=2048, step=8, value=0)
            hr_ckpt = gr.Dropdown(label="Hires checkpoint", choices=["Use same checkpoint"],
                                  value="Use same checkpoint")  # fmt: skip
            hr_sampler = gr.Dropdown(label="Hires sampler", choices=["Use same sampler", "Euler"],
                                     value="Use same sampler")  # fmt: skip
            hr_scheduler = gr.Dropdown(label="Hires schedule type",
                                       choices=["Use same scheduler", "Karras"],
                                       value="Use same scheduler")  # fmt: skip
            hr_prompt = gr.Textbox(label="Hires prompt", elem_id="hires_prompt")
            hr_negative = gr.Textbox(label="Hires negative prompt", elem_id="hires_neg_prompt")
            hr_cfg = gr.Slider(label="Hires CFG Scale", minimum=1, maximum=30, value=1.0)
            hr_distilled = gr.Slider(label="Hires Distilled CFG", minimum=0, maximum=30, value=3.5)
        override = gr.Dropdown(label="Override settings", choices=["CLIP skip: 2"], value=[],
                               multiselect=True, elem_id="txt2img_override_settings")  # fmt: skip
        custom_inputs = runner.setup_ui()
        gallery = gr.Gallery(label="Output", elem_id="txt2img_gallery")
        info = gr.HTML(elem_id="html_info_txt2img")
        dummy = gr.Textbox(visible=False, elem_id="txt2img_task_id")
        generate.click(
            fn=wrap_gradio_gpu_call(txt2img.txt2img),
            inputs=[dummy, prompt, negative, styles, n_iter, batch_size, cfg, distilled, height,
                    width, enable_hr, denoising, hr_scale, hr_upscaler, hr_steps, hr_x, hr_y,
                    hr_ckpt, hr_sampler, hr_scheduler, hr_prompt, hr_negative, hr_cfg,
                    hr_distilled, override, *custom_inputs],
            outputs=[gallery, info],
        )  # fmt: skip
        # Forge builds the extra-networks cards after wiring Generate.
        gr.Textbox(label="Search", elem_id="txt2img_extra_search")
    scripts.scripts_current = None
    return interface


def _img2img_tab() -> Any:
    runner = scripts.scripts_img2img
    runner.initialize_scripts(is_img2img=True)
    scripts.scripts_current = runner
    with gr.Blocks(analytics_enabled=False) as interface:
        prompt, negative, styles, generate = _toprow("img2img")
        mode = gr.Number(value=0, visible=False, precision=0, elem_id="img2img_mode")
        init_img = gr.Image(label="Image for img2img", type="pil", elem_id="img2img_image")
        mask_blur = gr.Slider(label="Mask blur", minimum=0, maximum=64, step=1, value=4)
        fill = gr.Radio(label="Masked content", choices=["fill", "original"], value="original",
                        type="index")  # fmt: skip
        n_iter, batch_size, cfg, distilled = _sizes("img2img")
        image_cfg = gr.Slider(label="Image CFG Scale", minimum=0, maximum=3, value=1.5)
        denoising = gr.Slider(label="Denoising strength", minimum=0, maximum=1, value=0.75,
                              elem_id="img2img_denoising_strength")  # fmt: skip
        height = gr.Slider(label="Height", minimum=64, maximum=2048, step=8, value=512)
        width = gr.Slider(label="Width", minimum=64, maximum=2048, step=8, value=512)
        resize = gr.Radio(label="Resize mode", choices=["Just resize", "Crop and resize"],
                          value="Just resize", type="index")  # fmt: skip
        override = gr.Dropdown(label="Override settings", choices=["CLIP skip: 2"], value=[],
                               multiselect=True)  # fmt: skip
        custom_inputs = runner.setup_ui()
        gallery = gr.Gallery(label="Output", elem_id="img2img_gallery")
        dummy = gr.Textbox(visible=False, elem_id="img2img_task_id")
        generate.click(
            fn=wrap_gradio_gpu_call(img2img.img2img),
            inputs=[dummy, mode, prompt, negative, styles, init_img, mask_blur, fill, n_iter,
                    batch_size, cfg, distilled, image_cfg, denoising, height, width, resize,
                    override, *custom_inputs],
            outputs=[gallery],
        )  # fmt: skip
        gr.Textbox(label="Search", elem_id="img2img_extra_search")
    scripts.scripts_current = None
    return interface


def _settings_tab() -> Any:
    with gr.Blocks(analytics_enabled=False) as interface:
        for key, info in shared.opts.data_labels.items():
            if info.component is None:
                continue
            label = info.label
            if info.section:
                label = f"[{info.section[1]}] {label}"
            info.component(label=label, value=shared.opts.data[key], elem_id=f"setting_{key}",
                           **(info.component_args or {}))  # fmt: skip
    return interface


def create_ui() -> Any:
    interfaces = [(_txt2img_tab(), "txt2img", "txt2img"), (_img2img_tab(), "img2img", "img2img")]
    interfaces += script_callbacks.ui_tabs_callback()
    interfaces.append((_settings_tab(), "Settings", "settings"))
    options = {"head": page_head} if "head" in inspect.signature(gr.Blocks).parameters else {}
    with gr.Blocks(analytics_enabled=False, title="Stable Diffusion", **options) as demo:
        infotext_utils.connect_paste_params_buttons()
        with gr.Tabs(elem_id="tabs"):
            for interface, label, ifid in interfaces:
                with gr.Tab(label, id=ifid, elem_id=f"tab_{ifid}"):
                    interface.render()
    return demo
