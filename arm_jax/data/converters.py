"""Converters from the hub layouts of preference datasets to canonical records.

Each converter takes one source row (a dict, as read from JSONL / JSON / Parquet) and returns a
list of Records and Skips: usually one item, several where a row expands (rmbench). `convert_row`
first applies `--column_map` (target=source renames, so any converter can read renamed columns)
and reports skip fields under the user's column names.

Shared conventions:
* ids: the row's own id column where the source has one (`id`, `question_id` for PPE), else
  `content_id(source, prompt, responses...)`, a hash of the content (see schema.content_id);
* chosen/rejected sources are placed into A/B by the parity of sha256(id), so about half of the
  pairs have the preferred response second and a judge cannot learn "A wins"; sources that already
  show two responses in an order (openrubrics, helpsteer3, columns) keep that order;
* best-of-n sources (rewardbench2, ppe_ifeval) give `candidates` and `preferred`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import random
import re
from typing import Any, Callable, Mapping, Union

from arm_jax.data.schema import (BAD_LAYOUT, BAD_MESSAGE, BAD_TRANSCRIPT, BAD_TYPE, BAD_WINNER,
                                 EMPTY_FIELD, MISSING_FIELD, MULTIPLE_CHOSEN, PREFIX_MISMATCH, TIE,
                                 UNKNOWN_SUBSET, Message, Prompt, Record, Skip, content_id,
                                 record_from_json)

Item = Union[Record, Skip]


# OpenRubrics' general-domain sources, the paper's training data (docs/method.md §3): its
# science (MegaScience) and medical (Medical-o1) sources are left out unless asked for.
OPENRUBRICS_GENERAL = ("UltraFeedback", "Magpie", "Skywork", "HelpSteer2", "OffsetBias",
                       "Synthetic-IF", "Tulu")
# The subsets a format's build keeps when --subsets is not given (others: every subset).
DEFAULT_SUBSETS = {"openrubrics": OPENRUBRICS_GENERAL}


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
  """Per-build settings: the record `source` (defaults to the format name), `--column_map`
  (target column -> source column), `--winner_values` (source value -> "A", "B" or "tie") and
  `--subsets` (the subsets kept; None = the format's DEFAULT_SUBSETS, () = every subset)."""
  source: str
  column_map: Mapping[str, str] = dataclasses.field(default_factory=dict)
  winner_values: Mapping[str, str] = dataclasses.field(default_factory=dict)
  subsets: tuple[str, ...] | None = None


def _key(name: str) -> str:
  return re.sub(r"[^a-z0-9]", "", name.lower())


def subset_selected(subset: str, selection: tuple[str, ...]) -> bool:
  """Whether a record's subset is selected: an empty selection keeps all; a name matches a
  subset that starts with it, ignoring case and punctuation ("Skywork" keeps
  "skywork_preference_v0.2"); a record without a subset is kept (nothing to select it by)."""
  if not selection or not subset:
    return True
  return any(_key(subset).startswith(_key(name)) for name in selection)


Converter = Callable[[Mapping[str, Any], ConvertOptions], list[Item]]
CONVERTERS: dict[str, Converter] = {}


def _register(name: str) -> Callable[[Converter], Converter]:
  def add(fn: Converter) -> Converter:
    CONVERTERS[name] = fn
    return fn
  return add


class _Bad(Exception):
  """Carries a Skip out of nested field parsing; converters turn it back into a Skip."""

  def __init__(self, skip: Skip):
    super().__init__(skip.reason)
    self.skip = skip


def _guarded(fn: Converter) -> Converter:
  @functools.wraps(fn)
  def run(row: Mapping[str, Any], opts: ConvertOptions) -> list[Item]:
    try:
      return fn(row, opts)
    except _Bad as bad:
      return [bad.skip]
  return run


def convert_row(fmt: str, row: Mapping[str, Any], opts: ConvertOptions) -> list[Item]:
  """Converts one source row with the converter registered as `fmt`."""
  if fmt not in CONVERTERS:
    raise ValueError(f"unknown format {fmt!r}; known: {', '.join(sorted(CONVERTERS))}")
  renamed = {**row, **{target: row[src] for target, src in opts.column_map.items() if src in row}}
  items = CONVERTERS[fmt](renamed, opts)
  return [dataclasses.replace(item, field=opts.column_map.get(item.field, item.field))
          if isinstance(item, Skip) else item for item in items]


def parse_pairs(text: str) -> dict[str, str]:
  """`a=x,b=y` -> {"a": "x", "b": "y"}: the syntax of --column_map and --winner_values."""
  out = {}
  for part in filter(None, (p.strip() for p in text.split(","))):
    key, sep, value = part.partition("=")
    if not sep or not key.strip() or not value.strip():
      raise ValueError(f"expected key=value, got {part!r}")
    out[key.strip()] = value.strip()
  return out


def winner_values(text: str) -> dict[str, str]:
  """Parses `--winner_values A=1,B=2[,tie=0]` into source value -> label."""
  out = {}
  for label, value in parse_pairs(text).items():
    if label not in ("A", "B", "tie"):
      raise ValueError(f"--winner_values labels are A, B and tie, got {label!r}")
    out[value] = label
  return out


def _raw(row: Mapping[str, Any], name: str) -> Any:
  if row.get(name) is None:
    raise _Bad(Skip(MISSING_FIELD, name))
  return row[name]


def _text(row: Mapping[str, Any], name: str) -> str:
  value = _raw(row, name)
  if not isinstance(value, str):
    raise _Bad(Skip(BAD_TYPE, name, f"expected text, got {type(value).__name__}"))
  if not value.strip():
    raise _Bad(Skip(EMPTY_FIELD, name))
  return value


def _optional_text(row: Mapping[str, Any], name: str) -> str:
  value = row.get(name)
  if value is None:
    return ""
  if not isinstance(value, str):
    raise _Bad(Skip(BAD_TYPE, name, f"expected text, got {type(value).__name__}"))
  return value


def _texts(row: Mapping[str, Any], name: str) -> list[str]:
  value = _raw(row, name)
  if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
    raise _Bad(Skip(BAD_TYPE, name, "expected a list of texts"))
  if not value or not all(v.strip() for v in value):
    raise _Bad(Skip(EMPTY_FIELD, name))
  return value


def _messages(row: Mapping[str, Any], name: str) -> list[Message]:
  """A chat as {"role", "content"} messages (extra keys such as names are dropped)."""
  value = _raw(row, name)
  if not isinstance(value, list):
    raise _Bad(Skip(BAD_TYPE, name, "expected a list of messages"))
  if not value:
    raise _Bad(Skip(EMPTY_FIELD, name))
  out = []
  for message in value:
    if (not isinstance(message, dict) or not isinstance(message.get("role"), str)
        or not isinstance(message.get("content"), str)):
      raise _Bad(Skip(BAD_MESSAGE, name, "messages are {'role': str, 'content': str}"))
    out.append({"role": message["role"], "content": message["content"]})
  return out


def _prompt(row: Mapping[str, Any], name: str) -> Prompt:
  return _messages(row, name) if isinstance(row.get(name), list) else _text(row, name)


def _row_id(row: Mapping[str, Any], key: str, source: str, *content: Any) -> str:
  value = row.get(key)
  if value is None or isinstance(value, bool) or not str(value).strip():
    return content_id(source, *content)
  return str(value)


def _id_bytes(record_id: str) -> bytes:
  return hashlib.sha256(record_id.encode("utf-8")).digest()


def place_pair(record_id: str, chosen: str, rejected: str) -> tuple[str, str, str]:
  """(response_a, response_b, winner): chosen goes second when sha256(id) is odd (stable)."""
  if _id_bytes(record_id)[0] % 2:
    return rejected, chosen, "B"
  return chosen, rejected, "A"


def shuffle_candidates(record_id: str, chosen: str,
                       rejected: list[str]) -> tuple[tuple[str, ...], int]:
  """(candidates, preferred): chosen + rejected in an order seeded by sha256(id) (stable)."""
  order = list(range(1 + len(rejected)))
  random.Random(int.from_bytes(_id_bytes(record_id)[:8], "big")).shuffle(order)
  pool = [chosen, *rejected]
  return tuple(pool[i] for i in order), order.index(0)


_WINNER_WORDS = {"a": "A", "responsea": "A", "modela": "A", "answera": "A", "outputa": "A",
                 "b": "B", "responseb": "B", "modelb": "B", "answerb": "B", "outputb": "B"}
_TIE_WORDS = {"tie", "tiebothbad", "bothbad", "bothgood", "equal", "draw", "same"}


def _winner(row: Mapping[str, Any], name: str, values: Mapping[str, str]) -> str:
  """"A"/"B" from a label: the --winner_values map when given, else spellings like "A",
  "response_a", "Response B", "model_a"; tie words are a TIE skip, anything else BAD_WINNER."""
  value = _raw(row, name)
  if values:
    label = values.get(str(value))
  else:
    key = re.sub(r"[\s_\-()]", "", str(value).lower()) if isinstance(value, str) else None
    label = "tie" if key in _TIE_WORDS else _WINNER_WORDS.get(key)
  if label == "tie":
    raise _Bad(Skip(TIE, name, str(value)))
  if label is None:
    raise _Bad(Skip(BAD_WINNER, name, f"{value!r} is not a recognised winner"))
  return label


def _pair(opts: ConvertOptions, record_id: str, prompt: Prompt, chosen: str, rejected: str,
          subset: str = "") -> Record:
  a, b, winner = place_pair(record_id, chosen, rejected)
  return Record(id=record_id, prompt=prompt, response_a=a, response_b=b, winner=winner,
                source=opts.source, subset=subset)


def _shown_pair(row: Mapping[str, Any], opts: ConvertOptions, prompt: Prompt, a: str, b: str,
                winner: str, subset: str = "", rubric: str = "") -> Record:
  return Record(id=_row_id(row, "id", opts.source, prompt, a, b), prompt=prompt, response_a=a,
                response_b=b, winner=winner, source=opts.source, subset=subset, rubric=rubric)


@_register("openrubrics")
@_guarded
def openrubrics(row: Mapping[str, Any], opts: ConvertOptions) -> list[Item]:
  """OpenRubrics: instruction, response_a, response_b, winner (A/B spellings), rubric, and the
  source dataset in `subset` or `source` (the record's subset, which --subsets selects by)."""
  prompt = _prompt(row, "instruction")
  a, b = _text(row, "response_a"), _text(row, "response_b")
  winner = _winner(row, "winner", opts.winner_values)
  origin = _optional_text(row, "subset") or _optional_text(row, "source")  # its source dataset
  return [_shown_pair(row, opts, prompt, a, b, winner, origin, _optional_text(row, "rubric"))]


@_register("columns")
@_guarded
def columns(row: Mapping[str, Any], opts: ConvertOptions) -> list[Item]:
  """Any pairwise table: --column_map maps prompt, response_a, response_b, winner and optionally
  id, subset, rubric onto its columns; --winner_values maps its labels to A/B (and tie)."""
  prompt = _prompt(row, "prompt")
  a, b = _text(row, "response_a"), _text(row, "response_b")
  winner = _winner(row, "winner", opts.winner_values)
  return [_shown_pair(row, opts, prompt, a, b, winner, _optional_text(row, "subset"),
                      _optional_text(row, "rubric"))]


def _split_chat(row: Mapping[str, Any], name: str) -> tuple[list[Message], str]:
  chat = _messages(row, name)
  if chat[-1]["role"] != "assistant":
    raise _Bad(Skip(BAD_MESSAGE, name, "the last message is not the assistant's"))
  if not chat[-1]["content"].strip():
    raise _Bad(Skip(EMPTY_FIELD, name, "the assistant response is empty"))
  return chat[:-1], chat[-1]["content"]


@_register("ultrafeedback_binarized")
@_guarded
def ultrafeedback_binarized(row: Mapping[str, Any], opts: ConvertOptions) -> list[Item]:
  """HuggingFaceH4/ultrafeedback_binarized: chosen / rejected chats whose last assistant message
  is the response and whose earlier turns (identical in both) are the prompt; equal
  score_chosen / score_rejected is a tie."""
  prompt, chosen = _split_chat(row, "chosen")
  rejected_prompt, rejected = _split_chat(row, "rejected")
  if not prompt:
    raise _Bad(Skip(EMPTY_FIELD, "chosen", "no turns before the response"))
  if rejected_prompt != prompt:
    raise _Bad(Skip(PREFIX_MISMATCH, "rejected", "earlier turns differ from chosen"))
  if row.get("score_chosen") is not None and row.get("score_chosen") == row.get("score_rejected"):
    raise _Bad(Skip(TIE, "score_chosen", f"both scored {row['score_chosen']}"))
  return [_pair(opts, content_id(opts.source, prompt, chosen, rejected), prompt, chosen, rejected)]


_ASSISTANT = "\n\nAssistant:"


def _split_transcript(row: Mapping[str, Any], name: str) -> tuple[str, str]:
  text = _text(row, name)
  cut = text.rfind(_ASSISTANT)
  if cut < 0:
    raise _Bad(Skip(BAD_TRANSCRIPT, name, "no '\\n\\nAssistant:' turn"))
  prompt, response = text[:cut].strip(), text[cut + len(_ASSISTANT):].strip()
  if not prompt:
    raise _Bad(Skip(EMPTY_FIELD, name, "no turns before the last assistant turn"))
  if not response:
    raise _Bad(Skip(EMPTY_FIELD, name, "the last assistant turn is empty"))
  return prompt, response


@_register("hh_rlhf")
@_guarded
def hh_rlhf(row: Mapping[str, Any], opts: ConvertOptions) -> list[Item]:
  """Anthropic/hh-rlhf: chosen / rejected transcripts "\\n\\nHuman: ...\\n\\nAssistant: ...".
  The prompt is the text before the last "\\n\\nAssistant:" (kept as text, stripped), the
  responses what follows it; rows whose prompts differ are a PREFIX_MISMATCH skip."""
  prompt, chosen = _split_transcript(row, "chosen")
  rejected_prompt, rejected = _split_transcript(row, "rejected")
  if rejected_prompt != prompt:
    raise _Bad(Skip(PREFIX_MISMATCH, "rejected", "the text before the last turn differs"))
  return [_pair(opts, content_id(opts.source, prompt, chosen, rejected), prompt, chosen, rejected)]


@_register("helpsteer3")
@_guarded
def helpsteer3(row: Mapping[str, Any], opts: ConvertOptions) -> list[Item]:
  """nvidia/HelpSteer3 preference: context (chat), response1, response2, overall_preference in
  -3..3 (negative: response1 better -> "A", positive -> "B", 0 a tie skip); domain -> subset."""
  prompt = _prompt(row, "context")
  a, b = _text(row, "response1"), _text(row, "response2")
  score = _raw(row, "overall_preference")
  if isinstance(score, bool) or not isinstance(score, int) or not -3 <= score <= 3:
    raise _Bad(Skip(BAD_WINNER, "overall_preference", f"{score!r} is not an integer in -3..3"))
  if score == 0:
    raise _Bad(Skip(TIE, "overall_preference", "0"))
  return [_shown_pair(row, opts, prompt, a, b, "A" if score < 0 else "B",
                      _optional_text(row, "domain"))]


REWARDBENCH_SECTIONS = {
    "Chat": ("alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy",
             "mt-bench-med"),
    "Chat-Hard": ("mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor",
                  "llmbar-adver-GPTInst", "llmbar-adver-GPTOut", "llmbar-adver-manual"),
    "Safety": ("refusals-dangerous", "refusals-offensive", "xstest-should-refuse",
               "xstest-should-respond", "donotanswer"),
    "Reasoning": ("math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python",
                  "hep-rust"),
}
_SECTION_OF = {name: section for section, names in REWARDBENCH_SECTIONS.items() for name in names}


@_register("rewardbench")
@_guarded
def rewardbench(row: Mapping[str, Any], opts: ConvertOptions) -> list[Item]:
  """allenai/reward-bench: prompt, chosen, rejected, subset, id. subset becomes
  "Section/subset" (e.g. "Chat/alpacaeval-easy"), so section scores group by the part before
  "/" and the original name stays; subsets outside the four sections are UNKNOWN_SUBSET."""
  subset = _text(row, "subset")
  if subset not in _SECTION_OF:
    raise _Bad(Skip(UNKNOWN_SUBSET, "subset", subset))
  prompt, chosen, rejected = _prompt(row, "prompt"), _text(row, "chosen"), _text(row, "rejected")
  record_id = _row_id(row, "id", opts.source, prompt, chosen, rejected)
  return [_pair(opts, record_id, prompt, chosen, rejected, f"{_SECTION_OF[subset]}/{subset}")]


@_register("rewardbench2")
@_guarded
def rewardbench2(row: Mapping[str, Any], opts: ConvertOptions) -> list[Item]:
  """allenai/reward-bench-2: prompt, chosen (one answer), rejected (usually three), subset, id.
  Every subset becomes best-of-n, candidates shuffled per id; several chosen (Ties) is
  MULTIPLE_CHOSEN."""
  prompt, chosen, rejected = _prompt(row, "prompt"), _texts(row, "chosen"), _texts(row, "rejected")
  if len(chosen) != 1:
    raise _Bad(Skip(MULTIPLE_CHOSEN, "chosen", f"{len(chosen)} chosen answers"))
  record_id = _row_id(row, "id", opts.source, prompt, chosen, rejected)
  candidates, preferred = shuffle_candidates(record_id, chosen[0], rejected)
  return [Record(id=record_id, prompt=prompt, source=opts.source, subset=_text(row, "subset"),
                 candidates=candidates, preferred=preferred)]


def _rmbench_level(chosen_style: int, rejected_style: int) -> str:
  if chosen_style == rejected_style:
    return "normal"
  return "hard" if chosen_style < rejected_style else "easy"


@_register("rmbench")
@_guarded
def rmbench(row: Mapping[str, Any], opts: ConvertOptions) -> list[Item]:
  """RM-Bench: id, prompt, chosen and rejected (one response per style level: concise, detailed,
  detailed markdown), domain (or subset), e.g. "chat". Emits the full 3x3 grid as RM-Bench scores
  it: record "<id>:c<i>r<j>" pairs chosen[i] with rejected[j] under subset "<domain>/<level>",
  level "normal" on the diagonal, "hard" when the chosen is the plainer one (i < j), else "easy"."""
  prompt, chosen, rejected = _prompt(row, "prompt"), _texts(row, "chosen"), _texts(row, "rejected")
  if len(chosen) != len(rejected):
    raise _Bad(Skip(BAD_LAYOUT, "rejected", f"{len(rejected)} rejected for {len(chosen)} chosen"))
  domain = _text(row, "domain" if row.get("domain") is not None else "subset")
  base = _row_id(row, "id", opts.source, prompt, chosen, rejected)
  out: list[Item] = []
  for i, good in enumerate(chosen):
    for j, bad in enumerate(rejected):
      out.append(_pair(opts, f"{base}:c{i}r{j}", prompt, good, bad,
                       f"{domain}/{_rmbench_level(i, j)}"))
  return out


def _ppe_responses(row: Mapping[str, Any]) -> list[str]:
  numbered = sorted((int(m.group(1)), key) for key in row
                    for m in [re.fullmatch(r"response_(\d+)", key)] if m)
  if not numbered:
    return _texts(row, "responses")
  return [_text(row, key) for _, key in numbered]


@_register("ppe_ifeval")
@_guarded
def ppe_ifeval(row: Mapping[str, Any], opts: ConvertOptions) -> list[Item]:
  """lmarena-ai/PPE-IFEval-Best-of-K: question_id, prompt, response_1 .. response_K (or one
  `responses` list), scores (one number or bool per response, higher is better). One best-of-K
  record, candidates in the source order, preferred the top score; a shared top score is a TIE
  (with 0/1 correctness that is any row with two correct responses). Other column names: use
  --column_map (e.g. scores=correctness)."""
  prompt, responses = _prompt(row, "prompt"), _ppe_responses(row)
  scores = _raw(row, "scores")
  if not isinstance(scores, list) or not all(isinstance(s, (int, float)) for s in scores):
    raise _Bad(Skip(BAD_TYPE, "scores", "expected a list of numbers"))
  if len(scores) != len(responses) or len(responses) < 2:
    raise _Bad(Skip(BAD_LAYOUT, "scores", f"{len(scores)} scores for {len(responses)} responses"))
  top = max(scores)
  if scores.count(top) > 1:
    raise _Bad(Skip(TIE, "scores", f"{scores.count(top)} responses share the top score {top}"))
  return [Record(id=_row_id(row, "question_id", opts.source, prompt, responses, scores),
                 prompt=prompt, source=opts.source, subset=_optional_text(row, "subset"),
                 candidates=tuple(responses), preferred=scores.index(top))]


@_register("canonical")
def canonical(row: Mapping[str, Any], opts: ConvertOptions) -> list[Item]:
  """Canonical JSONL as written by schema.record_to_json (re-import of converted data); the
  record keeps its own source and id."""
  del opts  # canonical rows carry their own source
  return [record_from_json(row)]
