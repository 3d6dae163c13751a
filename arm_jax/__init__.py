"""arm_jax: Rubric-ARM reward models (rubric generator + judge) trained by alternating RL."""
