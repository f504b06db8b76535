"""sdcourse: Stable Diffusion from first principles.

A small reference library for the course's notebooks: each module holds one idea (a noise
schedule, a sampler, a UNet, attention, the VAE, the Stable Diffusion loop), written to be read
and tested against an independent reference.
"""

__version__ = "0.1.0"
