"""The toy world as a training plug-in: registers the ("toy", "toy") builder of
arm_jax.training.setup. Toy configs name this module in `plugins` (configs/toy.py).

The builder makes the world's instances and split, its tokenizer, a fresh tiny decoder shared by
both policies, the warm-start examples from deliberately imperfect synthetic rubrics and
judgments, and, while the toy templates are in use, the step-by-step reading checks of held-out
rubrics and judgments (arm_jax.toy.diagnostics).
"""

from __future__ import annotations

import ml_collections

from arm_jax import config_sections
from arm_jax.core import PreferencePair
from arm_jax.prompts import load_template
from arm_jax.rl.policy import Policy
from arm_jax.toy import diagnostics, policy_eval, warmstart, world
from arm_jax.toy import model as toy_model
from arm_jax.toy.tokenizer import build_tokenizer
from arm_jax.training.setup import Built, register_architecture, register_builder


def _pair(instance: world.ToyInstance) -> PreferencePair:
  return PreferencePair(instance.instruction, instance.response_a, instance.response_b,
                        instance.label)


def world_shape(data: ml_collections.ConfigDict) -> world.Shape:
  """The data section's instance size (data.max_constraints, max_words, constraint_words; a
  config written before they existed: the world's defaults)."""
  fields = {k: int(data[k]) for k in ("max_constraints", "max_words", "constraint_words")
            if k in data}
  try:
    return world.Shape(**fields)
  except ValueError as e:
    raise ValueError(f"data.{e}") from None


@register_architecture("toy")
def toy_architecture(config: ml_collections.ConfigDict):
  m = config.model
  return toy_model.decoder_config(build_tokenizer(), num_layers=m.num_layers,
                                  hidden_size=m.hidden_size, num_heads=m.num_heads,
                                  num_kv_heads=m.num_kv_heads,
                                  intermediate_size=m.intermediate_size,
                                  **config_sections.lora_overrides(m))


@register_builder("toy", "toy")
def build_toy(config: ml_collections.ConfigDict, mesh, rules) -> Built:
  d = config.data
  tokenizer = build_tokenizer()
  instances = world.make_instances(d.num_instances, seed=d.seed,
                                   kinds=tuple(d.kinds) or world.KINDS,  # () = every kind
                                   shape=world_shape(d))
  train, held_out = world.split(instances, d.held_out_fraction, seed=d.seed)
  cfg = toy_architecture(config)
  model, params = toy_model.init_model(cfg, seed=config.seed, mesh=mesh, rules=rules)
  rubric_t, judge_t = warmstart.templates()
  ws = warmstart.WarmStart(imperfect_rate=config.warmstart.imperfect_rate,
                           judge_accuracy=config.warmstart.judge_accuracy,
                           negation_slip=config.warmstart.negation_slip,
                           gatekeeper=config.warmstart.gatekeeper, seed=config.seed)
  sft = {"generator": warmstart.rubric_examples(train, ws, rubric_t),
         "judge": warmstart.judge_examples(train, ws, judge_t)}
  policies = {role: Policy(role, model, tokenizer, t, params)
              for role, t in (("generator", rubric_t), ("judge", judge_t))}
  # The reading checks parse the toy templates' output formats: off with other templates.
  toy_templates = not (config.templates.rubric or config.templates.judge)
  return Built(policies, [_pair(i) for i in train], [_pair(i) for i in held_out], sft,
               direct_template=load_template(warmstart.template_path("direct"), "direct"),
               eval_diagnostics=diagnostics.evaluate if toy_templates else None,
               policy_oracle=policy_eval.oracle)
