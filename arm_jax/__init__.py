"""arm_jax: Rubric-ARM reward models (rubric generator + judge) trained by alternating RL.

Importing the package has no side effects: process settings (XLA flags) are applied by the entry
points through arm_jax.xla_options.configure_process. Layout: README.md.
"""
