"""A synthetic preference world small enough to run Rubric-ARM end to end on a laptop CPU.

The preferred response of each pair satisfies strictly more of the instruction's explicit,
checkable constraints (world.py); the toy has its own word-level tokenizer (tokenizer.py) and a
tiny decoder trained from scratch (model.py); the warm start learns from deliberately imperfect
synthetic rubrics and judgments (warmstart.py), which leaves alternating RL something to fix.
"""

from arm_jax.toy.model import decoder_config, init_model
from arm_jax.toy.tokenizer import build_tokenizer
from arm_jax.toy.warmstart import (WarmStart, judge_examples, judgment_text, rubric_coverage,
                                   rubric_examples, rubric_text, synthetic_judgment,
                                   synthetic_rubric, template_path, templates)
from arm_jax.toy.world import (Constraint, ToyInstance, instruction_text, make_instance,
                               make_instances, make_split, satisfied, split)

__all__ = ["Constraint", "ToyInstance", "WarmStart", "build_tokenizer", "decoder_config",
           "init_model", "instruction_text", "judge_examples", "judgment_text", "make_instance",
           "make_instances", "make_split", "rubric_coverage", "rubric_examples", "rubric_text",
           "satisfied", "split", "synthetic_judgment", "synthetic_rubric", "template_path",
           "templates"]
