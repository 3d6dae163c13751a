"""The toy world's own tokenizer: word level over everything the toy texts can contain.

A transformers fast tokenizer (encode, decode, apply_chat_template, save_pretrained), built
offline from the lexicon and the toy templates and formats. Pieces are GPT-2 style (a word keeps
its leading space, each punctuation mark and newline stands alone) and are mapped to bytes as
GPT-2 does, so decode(encode(text)) == text exactly and the parsers see the newlines they need.
The fixed phrases of the rubric and judge formats ("The response", " [Hard Rule]",
"--- Analysis ---", "Winner: Response A" ...) are single tokens: a rendered judge prompt plus its
judgment stays under 230 tokens for the word checks (under 290 with every kind), which is what lets
a from-scratch decoder train on two cores.

The chat template is minimal: `<|role|>content<|end|>` per turn, then `<|assistant|>`; `<|end|>`
is the eos token, so it ends SFT targets (sft.end_token_id finds it) and stops the sampler.
"""

from __future__ import annotations

import functools
import re

from arm_jax.prompts import render_judge_prompt, render_rubric_prompt
from arm_jax.toy.warmstart import WHERE, judgment_text, rubric_text, templates
from arm_jax.toy.world import KINDS, LEXICON, TOPICS, Constraint, instruction_text

PAD, UNK, END = "<pad>", "<unk>", "<|end|>"
ROLES = ("system", "user", "assistant")
SPECIAL = (PAD, UNK, END) + tuple(f"<|{r}|>" for r in ROLES)
PHRASES = ("The response", " The response", " [Hard Rule]", " [Principle]",
           "--- Compliance Check ---", "--- Analysis ---", "--- Final Judgment ---",
           "Identified Gatekeeper Criterion:", "**Response A:**", "**Response B:**", "- Criterion",
           "Justification:", " Justification:", "Winner: Response A", "Winner: Response B",
           " [A]", " [B]", " [both]", " [none]")
MAX_NUMBER = 32  # numbers up to this are single tokens (counts, criterion numbers)

CHAT_TEMPLATE = (
    "{%- for m in messages -%}"
    "{%- if m['role'] not in ['system', 'user', 'assistant'] -%}"
    "{{ raise_exception('toy chat template: unknown role ' + m['role']) }}{%- endif -%}"
    "<|{{ m['role'] }}|>{{ m['content'] }}<|end|>"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}")


def _split_pattern() -> str:
  """Phrases first (longest first, so they win over their own prefixes), then GPT-2-like pieces:
  a word or number with an optional leading space, one punctuation mark, one whitespace char."""
  phrases = "|".join(re.escape(p).replace("\\ ", " ") for p in sorted(PHRASES, key=len,
                                                                       reverse=True))
  return phrases + r"| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]|\s"


def _pre_tokenizer():
  from tokenizers import Regex, pre_tokenizers  # pylint: disable=import-outside-toplevel

  return pre_tokenizers.Sequence([
      pre_tokenizers.Split(Regex(_split_pattern()), behavior="isolated"),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
  ])


def _corpus() -> list[str]:
  """Texts whose pieces make up the vocabulary: one example of every format, template and
  constraint kind, plus every lexicon word, number and ASCII mark with and without a space."""
  word, topic = LEXICON[0], TOPICS[0]
  constraints = [Constraint(k, word, 3) for k in KINDS]
  instruction = instruction_text(topic, constraints)
  rubric = rubric_text(constraints)
  rubric_template, judge_template = templates()
  texts = [render_rubric_prompt(rubric_template, instruction), rubric,
           render_judge_prompt(judge_template, instruction, rubric, word, word),
           judgment_text(constraints, word, word, 0), judgment_text(constraints, word, word, 1)]
  texts += list(WHERE.values())
  atoms = list(LEXICON) + [str(n) for n in range(MAX_NUMBER + 1)]
  atoms += [chr(c) for c in range(33, 127) if not chr(c).isalnum()]
  return texts + [prefix + a for a in atoms for prefix in ("", " ")] + ["\n", " ", "\t"]


@functools.lru_cache(maxsize=1)
def _vocab() -> tuple[str, ...]:
  pre = _pre_tokenizer()
  pieces = {piece for text in _corpus() for piece, _ in pre.pre_tokenize_str(text)}
  phrase_pieces = [pre.pre_tokenize_str(p)[0][0] for p in PHRASES]
  rest = sorted(pieces - set(phrase_pieces))
  return SPECIAL + tuple(phrase_pieces) + tuple(rest)


def build_tokenizer():
  """A fresh toy tokenizer (452 tokens); ids are stable across runs and machines."""
  import transformers  # pylint: disable=import-outside-toplevel
  from tokenizers import AddedToken, Tokenizer, decoders, models  # pylint: disable=import-outside-toplevel

  vocab = {piece: i for i, piece in enumerate(_vocab())}
  backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
  backend.pre_tokenizer = _pre_tokenizer()
  backend.decoder = decoders.ByteLevel()
  backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
  return transformers.PreTrainedTokenizerFast(
      tokenizer_object=backend, pad_token=PAD, unk_token=UNK, eos_token=END,
      chat_template=CHAT_TEMPLATE, clean_up_tokenization_spaces=False, model_max_length=1024)
