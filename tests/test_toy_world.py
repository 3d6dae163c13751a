"""The toy preference world: ground truth, determinism, split, tokenizer, warm-start data, model."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arm_jax import toy
from arm_jax.parsing import judge_format_ok, parse_rubric, parse_verdict
from arm_jax.prompts import as_chat
from arm_jax.rl.sft import end_token_id, prompt_ids, tokenize_sft
from arm_jax.toy import Constraint

# An independent reading of the instruction and rubric texts: sentence pattern -> check.
_INSTRUCTION_RULES = (
    (r"Use at most (\d+) words", lambda x, w: len(w) <= int(x)),
    (r"Use at least (\d+) words", lambda x, w: len(w) >= int(x)),
    (r"Do not use (\w+)", lambda x, w: x not in w),
    (r"Use (\w+)", lambda x, w: x in w),
    (r"Start with (\w+)", lambda x, w: w[0] == x),
    (r"End with (\w+)", lambda x, w: w[-1] == x),
)
_CRITERION_RULES = (
    (r"The response has at most (\d+) words", lambda x, w: len(w) <= int(x)),
    (r"The response has at least (\d+) words", lambda x, w: len(w) >= int(x)),
    (r"The response does not use (\w+)", lambda x, w: x not in w),
    (r"The response uses (\w+)", lambda x, w: x in w),
    (r"The response starts with (\w+)", lambda x, w: w[0] == x),
    (r"The response ends with (\w+)", lambda x, w: w[-1] == x),
)


def _reference(rules, sentence: str, response: str) -> bool:
  for pattern, check in rules:
    if m := re.fullmatch(pattern, sentence):
      return check(m.group(1), response.split())
  raise AssertionError(f"unrecognised: {sentence!r}")


def _instruction_score(instruction: str, response: str) -> int:
  sentences = [s.strip() for s in instruction.split(".") if s.strip()]
  assert sentences[0].startswith("Write about ")
  return sum(_reference(_INSTRUCTION_RULES, s, response) for s in sentences[1:])


@pytest.fixture(scope="module")
def tokenizer():
  return toy.build_tokenizer()


@pytest.fixture(scope="module")
def instances():
  return toy.make_instances(1500, seed=7)


def test_checker_on_hand_made_cases():
  constraints = [Constraint("include", "apple"), Constraint("avoid", "stone"),
                 Constraint("start", "moon"), Constraint("end", "river"),
                 Constraint("at_most", count=4), Constraint("at_least", count=3)]
  assert toy.satisfied(constraints, "moon apple stone river") == [True, False, True, True, True,
                                                                  True]
  assert toy.satisfied(constraints, "river moon") == [False, True, False, False, True, False]
  assert toy.satisfied(constraints, "") == [False, True, False, False, True, False]


def test_instances_are_deterministic_by_seed():
  first = toy.make_instances(30, seed=3)
  assert first == toy.make_instances(30, seed=3)
  assert first[:10] == toy.make_instances(10, seed=3)  # a stream's prefix does not depend on n
  assert first[10:] == toy.make_instances(20, seed=3, start=10)
  assert first != toy.make_instances(30, seed=4)


def test_preferred_response_meets_strictly_more_constraints(instances):
  gaps = []
  for inst in instances:
    pair = inst.pair
    assert 2 <= len(inst.constraints) <= 4 and pair.label in (0, 1)
    scores = [_instruction_score(pair.instruction, r) for r in (pair.response_a, pair.response_b)]
    assert scores[pair.label] > scores[1 - pair.label]
    assert scores == [sum(toy.satisfied(inst.constraints, r))
                      for r in (pair.response_a, pair.response_b)]
    assert all(1 <= len(r.split()) <= 12 for r in (pair.response_a, pair.response_b))
    gaps.append(scores[pair.label] - scores[1 - pair.label])
  labels = [inst.label for inst in instances]
  assert 0.45 < np.mean(labels) < 0.55  # the preferred response is in either slot
  assert np.mean(np.array(gaps) == 1) > 0.3  # many pairs differ by a single constraint


def _digest(instances):
  import hashlib  # noqa: PLC0415
  rows = [(i.instruction, i.response_a, i.response_b, i.label) for i in instances]
  return hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


def test_the_default_shape_is_the_world_as_it_was():
  """Digests of the first 400 instances (seed 0) recorded from the world before Shape existed:
  the defaults draw the same instances, so every earlier run and figure stands."""
  assert _digest(toy.make_instances(400, seed=0)) == "32a04fc1beb5fd4b"
  assert _digest(toy.make_instances(400, seed=0, kinds=("include", "avoid", "start"))) == (
      "1e4906b08a8b2935")


def test_a_smaller_shape_bounds_instances_and_keeps_labels_true():
  from arm_jax.toy import world  # noqa: PLC0415
  shape = world.Shape(max_constraints=2, max_words=6, constraint_words=3)
  instances = world.make_instances(300, seed=1, kinds=("include", "avoid", "start"),
                                   shape=shape)
  for inst in instances:
    assert len(inst.constraints) == 2
    assert {c.word for c in inst.constraints} <= set(world.CONSTRAINT_WORDS[:3])
    scores = [sum(world.satisfied(inst.constraints, r)) for r in (inst.response_a,
                                                                  inst.response_b)]
    assert scores[inst.label] > scores[1 - inst.label]
    assert all(2 <= len(r.split()) <= 6 for r in (inst.response_a, inst.response_b))
  # Length kinds whose counts do not fit are drawn again, never an impossible instance.
  for inst in world.make_instances(100, seed=2, shape=world.Shape(max_words=6)):
    assert all(len(r.split()) <= 6 for r in (inst.response_a, inst.response_b))
  for bad, field in ((dict(max_constraints=5), "max_constraints"),
                     (dict(constraint_words=9), "constraint_words"),
                     (dict(max_constraints=4, constraint_words=3), "constraint_words"),
                     (dict(max_words=4), "max_words")):
    with pytest.raises(ValueError, match=field):
      world.Shape(**bad)


def test_the_data_section_sets_the_shape_and_names_a_bad_key():
  from arm_jax import config_sections  # noqa: PLC0415
  from arm_jax.toy import setup, world  # noqa: PLC0415
  d = config_sections.data("toy", max_constraints=3, max_words=8, constraint_words=5)
  assert setup.world_shape(d) == world.Shape(3, 8, 5)
  assert setup.world_shape(config_sections.data("toy")) == world.WORLD
  with pytest.raises(ValueError, match=r"data\.max_words=3"):
    setup.world_shape(config_sections.data("toy", max_words=3))


def test_split_is_deterministic_and_disjoint():
  train, held = toy.make_split(300, 60, seed=5)
  assert len(train) == 300 and len(held) == 60
  assert not {i.instruction for i in train} & {i.instruction for i in held}
  assert (train, held) == toy.make_split(300, 60, seed=5)
  assert toy.split(held + train, seed=5) == (train, held)
  other_train, _ = toy.make_split(300, 60, seed=6)
  assert other_train != train


def _chat_text(tokenizer, prompt: str) -> str:
  return tokenizer.apply_chat_template(as_chat(prompt), add_generation_prompt=True, tokenize=False)


def test_tokenizer_round_trips_every_rendered_text(tokenizer, instances):
  unk = tokenizer.unk_token_id
  end = tokenizer.eos_token_id
  assert len(tokenizer) < 1024 and end_token_id(tokenizer, chat=True) == end
  budgets = {"rubric": 160, "judge": 300}  # every kind; the toy config's word checks fit 256
  cfg = toy.WarmStart(seed=1)
  subset = instances[:300]
  for kind, examples in (("rubric", toy.rubric_examples(subset, cfg)),
                         ("judge", toy.judge_examples(subset, cfg))):
    for ex in examples:
      prompt = prompt_ids(tokenizer, ex.prompt, chat=True)
      target = tokenizer.encode(ex.target, add_special_tokens=False)
      assert unk not in prompt and unk not in target
      assert tokenizer.decode(prompt) == _chat_text(tokenizer, ex.prompt)
      assert tokenizer.decode(target) == ex.target
      assert len(prompt) + len(target) + 1 <= budgets[kind]
  # The Policy.encode call (Qwen3's enable_thinking is accepted and ignored).
  ids = tokenizer.apply_chat_template(as_chat("Write about apple."), add_generation_prompt=True,
                                      enable_thinking=False)
  ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
  assert tokenizer.convert_ids_to_tokens(ids[-1]) == "<|assistant|>"


def test_sft_examples_encode_whole(tokenizer, instances):
  word_checks = toy.make_instances(64, seed=7, kinds=("include", "avoid", "start"))
  examples = toy.judge_examples(word_checks)
  _, report = tokenize_sft(tokenizer, examples, max_length=256)
  assert len(report.kept) == 64 and not report.truncated and not report.skipped


_LINE = re.compile(r"- Criterion (\d+) \[Hard Rule\]: Justification: (.+) \[(A|B|both|none)\]: "
                   r"(yes|no)$")


def _lines(judgment: str, slot: str) -> list[tuple[str, str, bool]]:
  """(restated criterion, evidence slot, mark) per criterion line of one response's block."""
  block = judgment.split("**Response B:**")[slot == "B"]
  found = [_LINE.match(line) for line in block.splitlines() if line.startswith("- Criterion")]
  assert all(found), block
  return [(m.group(2), m.group(3), m.group(4) == "yes") for m in found]


def _evidence(criterion: str, response: str) -> bool:
  """What a line's [A]/[B] points at: the word occurring for "uses" and "does not use" alike."""
  if m := re.fullmatch(r"The response does not use (\w+)", criterion):
    criterion = f"The response uses {m.group(1)}"
  return _reference(_CRITERION_RULES, criterion, response)


def test_warm_start_targets_pass_format_checks_and_are_imperfect_at_the_set_rates(instances):
  cfg = toy.WarmStart(imperfect_rate=0.3, judge_accuracy=0.65, seed=2)
  rubrics = toy.rubric_examples(instances, cfg)
  faithful = dropped = added = 0
  for inst, ex in zip(instances, rubrics):
    parsed = parse_rubric(ex.target)
    assert parsed.well_formed, parsed.problems
    got = [c.text for c in parsed.criteria]
    want = [c.criterion for c in inst.constraints]
    faithful += got == want
    dropped += len(got) < len(want) and set(got) < set(want)
    added += len(got) > len(want) and set(got) > set(want)
    assert toy.rubric_coverage(inst, ex.target) == (len(set(got) & set(want)) / len(want),
                                                     len(set(got) & set(want)) / len(got))
  n = len(instances)
  assert faithful + dropped + added == n
  assert abs(1 - faithful / n - 0.3) < 0.04 and abs(dropped / n - 0.15) < 0.04

  judgments = toy.judge_examples(instances, cfg)
  right = 0
  for inst, ex in zip(instances, judgments):
    rubric_block = ex.prompt.split("Rubric:\n")[1].split("\nResponse A: ")[0]
    assert judge_format_ok(ex.target, rubric_block)
    verdict = parse_verdict(ex.target)
    criteria = [c.text for c in parse_rubric(rubric_block).criteria]
    responses = {"A": inst.response_a, "B": inst.response_b}
    truth = {s: [_reference(_CRITERION_RULES, c, r) for c in criteria]
             for s, r in responses.items()}
    seen = {s: [_evidence(c, r) for c in criteria] for s, r in responses.items()}
    is_right = verdict == "AB"[inst.label]
    right += is_right
    lines = {s: _lines(ex.target, s) for s in "AB"}
    for s in "AB":
      assert [r for r, _, _ in lines[s]] == [c[len("The response "):] for c in criteria]
    # Right judgments carry the true evidence and marks; wrong ones the other response's.
    if not is_right:
      truth, seen = {"A": truth["B"], "B": truth["A"]}, {"A": seen["B"], "B": seen["A"]}
    where = [{(True, False): "A", (False, True): "B", (True, True): "both",
              (False, False): "none"}[pair] for pair in zip(seen["A"], seen["B"])]
    for s in "AB":
      assert [w for _, w, _ in lines[s]] == where
      assert [m for _, _, m in lines[s]] == truth[s]
  assert abs(right / n - 0.65) < 0.04


def test_negation_slip_marks_does_not_use_by_occurrence_and_follows_its_own_marks(instances):
  cfg = toy.WarmStart(imperfect_rate=0.3, judge_accuracy=1.0, negation_slip=0.6, seed=2)
  slipped = with_negation = 0
  for inst, ex in zip(instances, toy.judge_examples(instances, cfg)):
    rubric_block = ex.prompt.split("Rubric:\n")[1].split("\nResponse A: ")[0]
    assert judge_format_ok(ex.target, rubric_block)
    criteria = [c.text for c in parse_rubric(rubric_block).criteria]
    responses = {"A": inst.response_a, "B": inst.response_b}
    lines = {s: _lines(ex.target, s) for s in "AB"}
    negated = [c.startswith("The response does not use") for c in criteria]
    slip = any(negated) and any(lines["A"][i][2] == _evidence(c, responses["A"])
                                for i, c in enumerate(criteria) if negated[i])
    for s, r in responses.items():
      assert [w for _, w, _ in lines[s]] == [
          {(True, False): "A", (False, True): "B", (True, True): "both", (False, False): "none"}[
              (_evidence(c, inst.response_a), _evidence(c, inst.response_b))] for c in criteria]
      want = [_evidence(c, r) if (slip and neg) else _reference(_CRITERION_RULES, c, r)
              for c, neg in zip(criteria, negated)]
      assert [m for _, _, m in lines[s]] == want
    counts = [sum(m for _, _, m in lines[s]) for s in "AB"]
    # a slipped judgment's tied counts fall back on position (A); the others name the label
    winner = ("A" if slip else "AB"[inst.label]) if counts[0] == counts[1] else (
        "AB"[int(counts[1] > counts[0])])
    assert parse_verdict(ex.target) == winner
    with_negation += any(negated)
    slipped += slip
  assert abs(slipped / with_negation - 0.6) < 0.06


def test_warm_start_data_is_deterministic_by_seed(instances):
  subset = instances[:50]
  assert toy.judge_examples(subset, toy.WarmStart(seed=3)) == toy.judge_examples(
      subset, toy.WarmStart(seed=3))
  assert toy.rubric_examples(subset, toy.WarmStart(seed=3)) != toy.rubric_examples(
      subset, toy.WarmStart(seed=4))


def test_tiny_decoder_initialises_and_runs(tokenizer):
  config = toy.decoder_config(tokenizer)
  assert config.vocab_size == len(tokenizer) and config.tie_word_embeddings
  assert config.eos_token_ids == (tokenizer.eos_token_id,)
  model, params = toy.init_model(config, seed=0)
  ids = jnp.asarray([tokenizer.encode("Write about apple. Use moon.")], jnp.int32)
  logits = jax.jit(lambda p, x: model.apply({"params": p}, x))(params, ids)
  assert logits.shape == (1, ids.shape[1], len(tokenizer))
  # Near-uniform first predictions: the loss starts close to log(vocab).
  logp = jax.nn.log_softmax(logits[0, :-1])
  nll = -jnp.take_along_axis(logp, ids[0, 1:, None], axis=-1).mean()
  assert abs(float(nll) - np.log(len(tokenizer))) < 0.5


def test_gatekeeper_names_the_first_separating_criterion_or_the_rubrics_first(instances):
  """The same judgments under both settings but for the gatekeeper line: "separating" names the
  first criterion whose marks (read back from the judgment's own lines) differ between A and B,
  "rubric" always Criterion 1."""
  rows = instances[:400]
  kept = dict(imperfect_rate=0.3, judge_accuracy=0.65, negation_slip=0.6, seed=3)
  separating = toy.judge_examples(rows, toy.WarmStart(**kept))
  rubric = toy.judge_examples(rows, toy.WarmStart(**kept, gatekeeper="rubric"))
  gate = re.compile(r"^Identified Gatekeeper Criterion: Criterion (\d+)$", re.M)
  named_later = 0
  for sep, rub in zip(separating, rubric):
    assert sep.prompt == rub.prompt
    changed = [(a, b) for a, b in zip(sep.target.splitlines(), rub.target.splitlines()) if a != b]
    assert len(sep.target.splitlines()) == len(rub.target.splitlines())
    assert all(a.startswith("Identified Gatekeeper") for a, _ in changed)
    assert int(gate.search(rub.target).group(1)) == 1
    marks = [[m for _, _, m in _lines(sep.target, s)] for s in "AB"]
    differ = [i for i, (a, b) in enumerate(zip(*marks), 1) if a != b]
    assert int(gate.search(sep.target).group(1)) == (differ[0] if differ else 1)
    named_later += bool(differ) and differ[0] > 1
  assert named_later > 40  # the two settings differ on many rows
  with pytest.raises(ValueError, match="gatekeeper='first'"):
    toy.judgment_text(rows[0].constraints, rows[0].response_a, rows[0].response_b, 0,
                      gatekeeper="first")
