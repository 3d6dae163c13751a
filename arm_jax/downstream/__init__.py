"""Using a trained (rubric generator, judge) pair as the reward for a policy (docs/method.md §6):
the reward model component, pair labels for DPO, and the online GRPO reward."""
