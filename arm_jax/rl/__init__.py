"""Rubric-ARM training algorithms: GRPO for both policies, SFT warm start, the schedule."""
