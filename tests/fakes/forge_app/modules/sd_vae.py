"""`modules.sd_vae`: vae_dict (name -> file)."""

vae_dict: dict[str, str] = {}
