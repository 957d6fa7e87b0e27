"""Backend adapters: Forge/A1111, ComfyUI and stable-diffusion.cpp's sd-server."""
