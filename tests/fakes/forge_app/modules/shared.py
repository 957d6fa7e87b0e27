"""`modules.shared`: opts, cmd_opts, prompt styles (the parts extensions read)."""

from __future__ import annotations

from types import SimpleNamespace

from modules.options import OptionInfo, Options
from modules.styles import StyleDatabase

__all__ = ["OptionInfo", "cmd_opts", "opts", "prompt_styles", "sd_model"]

opts = Options(
    {
        "sd_model_checkpoint": OptionInfo(None, "Stable Diffusion checkpoint"),
        "outdir_samples": OptionInfo(""),
        "outdir_txt2img_samples": OptionInfo("outputs/txt2img-images"),
        "outdir_img2img_samples": OptionInfo("outputs/img2img-images"),
        "outdir_grids": OptionInfo(""),
        "outdir_txt2img_grids": OptionInfo("outputs/txt2img-grids"),
        "outdir_img2img_grids": OptionInfo("outputs/img2img-grids"),
        "enable_console_prompts": OptionInfo(False),
        "CLIP_stop_at_last_layers": OptionInfo(1),
    }
)
cmd_opts = SimpleNamespace(api=False, nowebui=False)
prompt_styles = StyleDatabase()
sd_model = None
