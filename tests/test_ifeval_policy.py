"""A policy's IFEval scores (arm_jax.evaluation.ifeval_policy) against hand-counted ones, on
hand-made prompts whose instructions the offline checker decides without ambiguity."""

import pytest

from arm_jax.data import ifeval
from arm_jax.evaluation import ifeval_policy

LOWER = "change_case:english_lowercase"
NO_COMMA = "punctuation:no_comma"
LOWER_TEXT = ("this answer is written entirely in lowercase letters and it explains the plan "
              "for the garden in plain english")


@pytest.fixture(scope="module")
def scored():
  inputs = [ifeval.example("p1", [NO_COMMA, LOWER], [{}, {}], key=1),
            ifeval.example("p2", [NO_COMMA], [{}], key=2),
            ifeval.example("p3", [NO_COMMA], [{}], key=3),
            ifeval.example("p4", [LOWER, NO_COMMA], [{}, {}], key=4)]
  responses = [LOWER_TEXT,  # both followed
               "Sure, here it is",  # the comma stays in every loose variant
               "Intro, then\nthe garden plan has no commas at all\nBye, now",  # loose only
               LOWER_TEXT + ", with a comma"]  # lowercase yes, no comma no
  return ifeval_policy.score(inputs, responses)


def test_prompt_and_instruction_levels_strict_and_loose(scored):
  # Prompts: strict p1 only; loose p1 and p3. Instructions (6): strict p1 x2 + p4's lowercase;
  # loose adds p3's.
  assert (scored["prompt_strict"], scored["prompt_loose"]) == (0.25, 0.5)
  assert scored["instruction_strict"] == pytest.approx(3 / 6)
  assert scored["instruction_loose"] == pytest.approx(4 / 6)
  assert scored["average"] == pytest.approx((0.25 + 0.5 + 3 / 6 + 4 / 6) / 4)
  assert (scored["prompts"], scored["instructions"], scored["empty_responses"]) == (4, 6, 0)


def test_accuracy_by_instruction_kind(scored):
  assert scored["by_kind"] == {
      LOWER: dict(n=2, strict=1.0, loose=1.0),
      NO_COMMA: dict(n=4, strict=0.25, loose=0.5)}


def test_mismatched_counts_are_an_error():
  with pytest.raises(ValueError, match="1 IFEval prompts but 0 responses"):
    ifeval_policy.score([ifeval.example("p", [NO_COMMA], [{}])], [])


def test_table_has_the_papers_columns(scored):
  lines = ifeval_policy.table(scored).splitlines()
  assert lines[0] == ("| prompt strict | prompt loose | instruction strict | instruction loose "
                      "| average |")
  assert lines[2] == "| 25.0 | 50.0 | 50.0 | 66.7 | 47.9 |"


# --- bootstrap intervals over prompts -------------------------------------------------------------

def _naive_figures(per_prompt, picks):
  """The five figures of the prompts at `picks`, recounted the plain way."""
  ps = sum(all(per_prompt[i]["strict"]) for i in picks) / len(picks)
  pl = sum(all(per_prompt[i]["loose"]) for i in picks) / len(picks)
  n = sum(len(per_prompt[i]["strict"]) for i in picks)
  is_ = sum(sum(per_prompt[i]["strict"]) for i in picks) / n
  il = sum(sum(per_prompt[i]["loose"]) for i in picks) / n
  return [ps, pl, is_, il, (ps + pl + is_ + il) / 4]


def _random_per_prompt(rng, n, p_follow):
  out = []
  for _ in range(n):
    k = int(rng.integers(1, 4))
    strict = [bool(rng.random() < p_follow) for _ in range(k)]
    out.append(dict(strict=strict, loose=[s or bool(rng.random() < 0.3) for s in strict]))
  return out


def test_bootstrap_matches_a_plain_recount_of_the_same_resamples():
  import numpy as np  # noqa: PLC0415
  per_prompt = _random_per_prompt(np.random.default_rng(1), 40, 0.6)
  ci = ifeval_policy.bootstrap(per_prompt, resamples=200, seed=3, level=0.9)
  idx = ifeval_policy.resample_indices(40, 200, 3)
  stats = np.array([_naive_figures(per_prompt, row) for row in idx])
  for j, figure in enumerate(ifeval_policy.FIGURES):
    assert ci[figure] == pytest.approx([np.percentile(stats[:, j], 5),
                                        np.percentile(stats[:, j], 95)])
  point = _naive_figures(per_prompt, range(40))
  for j, figure in enumerate(ifeval_policy.FIGURES):
    assert ci[figure][0] <= point[j] <= ci[figure][1]


def test_bootstrap_width_is_the_binomial_one_for_independent_prompts():
  # One instruction per prompt followed with p=0.5: the 95% interval of a proportion over 400
  # prompts is about +-1.96 * sqrt(0.25 / 400) = +-0.049.
  import numpy as np  # noqa: PLC0415
  rng = np.random.default_rng(0)
  per_prompt = [dict(strict=[bool(x)], loose=[bool(x)]) for x in rng.random(400) < 0.5]
  lo, hi = ifeval_policy.bootstrap(per_prompt, resamples=2000)["prompt_strict"]
  assert (hi - lo) / 2 == pytest.approx(1.96 * (0.25 / 400) ** 0.5, rel=0.15)


def test_scores_carry_intervals_and_the_table_prints_them(scored):
  ci = scored["ci"]
  assert ci["level"] == 0.95 and ci["unit"] == "prompt"
  for figure in ifeval_policy.FIGURES:
    assert ci[figure][0] <= scored[figure] <= ci[figure][1]
  assert ifeval_policy.table(scored).splitlines()[3].startswith("| [")


def test_paired_bootstrap_of_a_policy_against_itself_and_a_better_one():
  import numpy as np  # noqa: PLC0415
  rng = np.random.default_rng(2)
  base = _random_per_prompt(rng, 60, 0.4)
  same = ifeval_policy.paired_bootstrap(base, base)
  assert all(same[f] == dict(difference=0.0, low=0.0, high=0.0) for f in ifeval_policy.FIGURES)
  better = [dict(strict=[True] * len(p["strict"]), loose=[True] * len(p["loose"])) for p in base]
  diff = ifeval_policy.paired_bootstrap(better, base, resamples=300, seed=1)
  want = np.subtract(_naive_figures(better, range(60)), _naive_figures(base, range(60)))
  for j, figure in enumerate(ifeval_policy.FIGURES):
    assert diff[figure]["difference"] == pytest.approx(want[j])
    assert 0 < diff[figure]["low"] <= want[j] <= diff[figure]["high"]


def test_paired_bootstrap_refuses_results_on_different_prompts():
  a = [dict(strict=[True], loose=[True]), dict(strict=[True, False], loose=[True, True])]
  with pytest.raises(ValueError, match="2 prompts against 1"):
    ifeval_policy.paired_bootstrap(a, a[:1])
  with pytest.raises(ValueError, match="prompt 0 has 1 instructions in one result and 2"):
    ifeval_policy.paired_bootstrap(a, a[::-1])
  with pytest.raises(ValueError, match="differ first at position 1"):
    ifeval_policy.paired_bootstrap(a, a, keys=([1, 2], [1, 3]))
