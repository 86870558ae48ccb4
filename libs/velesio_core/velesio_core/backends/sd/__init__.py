"""Stable Diffusion on diffusers and torch: checkpoints, samplers, the pipeline and its jobs.

Importing this package imports neither torch nor diffusers; the modules that need them import
them when they run, so the API can validate image requests with the pure parts (samplers,
images) without them.
"""
