"""stable-diffusion.cpp master-827's own sampler and scheduler names (PROTOCOLS.md §12),
for the sd-server fake and the sd-cli stand-in (which imports this by file, beside it)."""

SAMPLE_METHODS = ["euler", "euler_a", "heun", "dpm2", "dpm++2s_a", "dpm++2m", "dpm++2mv2",
                  "ipndm", "ipndm_v", "lcm", "ddim_trailing", "tcd", "res_multistep", "res_2s",
                  "er_sde", "euler_cfg_pp", "euler_a_cfg_pp", "euler_ge", "dpm++2m_sde",
                  "dpm++2m_sde_bt", "lms"]  # fmt: skip
SCHEDULERS = ["discrete", "karras", "exponential", "ays", "gits", "sgm_uniform", "simple",
              "smoothstep", "kl_optimal", "lcm", "bong_tangent", "ltx2", "logit_normal", "flux2",
              "flux", "beta"]  # fmt: skip
