"""Reward-model evaluation (docs/method.md §5, §7), run by arm_jax.evaluate.

benchmarks: configured benchmarks -> examples; the paper's table columns.
metrics: the scoring rules (orders, best-of-n, voting, position bias) as pure functions.
runner: one system on one benchmark through rubric / judge callables.
systems: which weights and templates each table row uses; restoring a training run.
report: Markdown, CSV, JSON, JSONL and PNG outputs.
"""
