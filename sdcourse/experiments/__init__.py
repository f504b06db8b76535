"""The lessons' experiments: sweeps and comparisons that notebooks and ``bench/`` run.

One module per lesson that needs one: ``steps_quality`` (lesson 03), ``guidance_sweep`` (04),
``vae_lesson`` (05), ``attention_cost`` (06), ``latent_vs_pixel`` (07), ``sd_lesson`` (08), ``sd_digits``
(08 and 09: sd-mnist's pictures measured),
``faster_sampling`` (11); and ``quality_plots``, the reference lines their plots share. They may
import the concept and ground modules; no concept module imports them (docs/ARCHITECTURE.md).
"""
