"""Scoring rules of the evaluator, as pure functions of labels and parsed verdicts.

Everything here runs without a model, so the rules are pinned by tests with hand-computed values
(tests/test_evaluate_metrics.py). The rules:

* Comparisons. A pairwise example is one comparison, preferred vs the other response. A
  best-of-n example (RewardBench2: one chosen, three rejected) is n - 1 comparisons, the
  preferred candidate against each other candidate.
* Orders (where each response is shown). Ord-1: the dataset's order (for best-of-n, the
  lower-indexed candidate in slot A). Ord-2: every comparison flipped. Mixed (the paper's
  default): each comparison flipped or not by a coin seeded by (seed, example id, rival index),
  the same for every system, so the rows of a table see the same presentations.
* Accuracy uses the first judge sample. A comparison is won when the parsed verdict names the
  preferred response's slot; an unparseable verdict loses. A pairwise example is correct when
  its comparison is won; a best-of-n example only when the preferred candidate wins all of its
  comparisons (the best-of-4 rule; a pairwise judge has no scores to rank by).
* voting@k: the k samples of a comparison vote; unparseable samples abstain and the majority of
  the parsed verdicts decides. A tie, including no parsed verdict at all, decides nothing and
  loses. Ties and vote-less comparisons are counted and reported.
* Judgment accuracy: the share of all judgments (every sample of every comparison) that name
  the preferred response's slot; for pairwise examples this is what training's held-out eval
  reports as judge_accuracy when it averages several sampled judgments per pair.
* Position bias: |accuracy(Ord-1) - accuracy(Ord-2)|, when both orders were run.
* Parse-failure rate: unparseable judgments over all judgments (every sample of every
  comparison) in that order.

Accuracies are fractions in [0, 1]; tables print them as percentages.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Optional, Sequence

ORDERS = ("mixed", "ord1", "ord2")
ORDER_LABELS = {"mixed": "Mixed", "ord1": "Ord-1", "ord2": "Ord-2"}
SLOTS = ("A", "B")
TIE = "tie"


def flip_coin(seed: int, example_id: str, rival: int) -> bool:
  """Mixed order's per-comparison coin: stable under any selection or order of the examples."""
  digest = hashlib.sha256(f"{seed}\x00{example_id}\x00{rival}".encode("utf-8")).digest()
  return bool(digest[0] & 1)


def shown_pairs(example_id: str, num_candidates: int, preferred: int, order: str,
                seed: int) -> list[tuple[int, int]]:
  """(candidate in slot A, candidate in slot B) for each comparison, rivals in index order."""
  if order not in ORDERS:
    raise ValueError(f"order {order!r}; expected one of {ORDERS}")
  pairs = []
  for rival in range(num_candidates):
    if rival == preferred:
      continue
    natural = (min(preferred, rival), max(preferred, rival))
    flip = order == "ord2" or (order == "mixed" and flip_coin(seed, example_id, rival))
    pairs.append(natural[::-1] if flip else natural)
  return pairs


def slot_label(shown: tuple[int, int], preferred: int) -> str:
  """"A" when the preferred candidate is shown first, else "B"."""
  return SLOTS[shown.index(preferred)]


def majority(verdicts: Sequence[Optional[str]]) -> str:
  """"A" or "B" by majority of the parsed verdicts (None abstains); TIE on equal counts,
  including when nothing parsed."""
  a, b = sum(v == "A" for v in verdicts), sum(v == "B" for v in verdicts)
  return "A" if a > b else "B" if b > a else TIE


@dataclasses.dataclass(frozen=True)
class ExampleScore:
  """One example in one order: per comparison, its label and the k parsed verdicts."""
  subset: str
  labels: tuple[str, ...]
  verdicts: tuple[tuple[Optional[str], ...], ...]

  @property
  def votes(self) -> tuple[str, ...]:
    return tuple(majority(v) for v in self.verdicts)

  @property
  def correct(self) -> bool:
    """Every comparison won by its first sample."""
    return all(v[0] == label for v, label in zip(self.verdicts, self.labels))

  @property
  def voted_correct(self) -> bool:
    """Every comparison won by its vote (a tie loses)."""
    return all(vote == label for vote, label in zip(self.votes, self.labels))


def _mean(flags: Sequence[bool]) -> float:
  return sum(flags) / len(flags) if flags else float("nan")


def summarize(scores: Sequence[ExampleScore], votes: int) -> dict:
  """Accuracy (and voting@k when k > 1), per subset too, ties, parse failures, for one order."""
  comparisons = [(label, v) for s in scores for label, v in zip(s.labels, s.verdicts)]
  judgments = [x for _, v in comparisons for x in v]
  failures = sum(x is None for x in judgments)
  out = dict(examples=len(scores), comparisons=len(comparisons),
             accuracy=_mean([s.correct for s in scores]),
             comparison_accuracy=_mean([v[0] == label for label, v in comparisons]),
             judgment_accuracy=_mean([x == label for label, v in comparisons for x in v]),
             judgments=len(judgments), parse_failures=failures,
             parse_failure_rate=failures / len(judgments) if judgments else float("nan"))
  if votes > 1:
    out.update(voting_accuracy=_mean([s.voted_correct for s in scores]),
               vote_ties=sum(majority(v) == TIE for _, v in comparisons),
               vote_no_parsed=sum(all(x is None for x in v) for _, v in comparisons))
  subsets: dict[str, list[ExampleScore]] = {}
  for s in scores:
    subsets.setdefault(s.subset, []).append(s)
  out["subsets"] = {
      name: dict(examples=len(group), accuracy=_mean([s.correct for s in group]),
                 **({"voting_accuracy": _mean([s.voted_correct for s in group])}
                    if votes > 1 else {}))
      for name, group in sorted(subsets.items())}
  return out


def position_bias(by_order: dict[str, dict]) -> Optional[dict]:
  """|Ord-1 - Ord-2| of accuracy (and of voting accuracy), or None without both orders."""
  if "ord1" not in by_order or "ord2" not in by_order:
    return None
  one, two = by_order["ord1"], by_order["ord2"]
  return {key: abs(one[key] - two[key]) for key in ("accuracy", "voting_accuracy") if key in one}
