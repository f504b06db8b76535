"""The lessons' experiments: sweeps and comparisons that notebooks and ``bench/`` run.

One module per lesson that needs one: ``guidance_sweep`` (lesson 04), ``vae_lesson`` (05),
``attention_cost`` (06), ``latent_vs_pixel`` (07), ``sd_lesson`` (08), ``faster_sampling`` (11).
They may import the concept and ground modules; no concept module imports them (docs/ARCHITECTURE.md).
"""
