"""The package is layered and acyclic: every `arm_jax` import of every module (module level and
inside functions, read with ast) goes to the module's own layer or a lower one, never in a cycle.

Layers, low to high (README.md, Layout):
  1 core types and the config schema;
  2 models, sharding, tokenizer, assets, XLA options, multi-process helpers;
  3 sampling and the text layer (prompts, parsing, rewards);
  4 data;
  5 rl;
  6 training, evaluation, downstream (the reward model used for a policy), and the toy world
    (a plug-in no other package imports);
  7 entry points: jobs (dispatch), the generate and evaluate CLIs, the local launcher, the
    TPU planner, the notebook's helpers.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "arm_jax"

LAYERS = {
    "core": 1, "config_sections": 1,
    "models": 2, "sharding": 2, "tokenizer": 2, "assets": 2, "xla_options": 2,
    "multihost": 2,
    "sampling": 3, "prompts": 3, "parsing": 3, "rewards": 3,
    "data": 4,
    "rl": 5,
    "training": 6, "evaluation": 6, "downstream": 6, "toy": 6,
    "jobs": 7, "generate": 7, "evaluate": 7, "launch": 7, "plan": 7, "notebook": 7,
}


def _module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts.pop()
  return ".".join(parts)


def _modules() -> dict[str, pathlib.Path]:
  return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _resolve(name: str) -> str:
  """The longest known module that `name` is or lies in (`from arm_jax.rl import grpo` names the
  module arm_jax.rl.grpo; `from arm_jax.rl.grpo import GRPOConfig` names arm_jax.rl.grpo)."""
  while name not in MODULES and "." in name:
    name = name.rsplit(".", 1)[0]
  return name


def imports_of(module: str) -> set[str]:
  """Every arm_jax module that `module` imports, wherever the import statement stands."""
  tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
  package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = package.split(".")
        anchor = anchor[:len(anchor) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
      names = [f"{base}.{a.name}" for a in node.names] + [base]
    else:
      continue
    for name in names:
      if name == "arm_jax" or name.startswith("arm_jax."):
        target = _resolve(name)
        if target != module and target != "arm_jax":
          found.add(target)
  return found


def layer_of(module: str) -> int:
  top = module.split(".")[1] if "." in module else None
  if top not in LAYERS:
    raise AssertionError(f"{module} is in no layer: add its top-level name to LAYERS")
  return LAYERS[top]


def test_every_module_has_a_layer():
  for module in MODULES:
    if module != "arm_jax":
      layer_of(module)


def test_the_package_init_imports_nothing():
  assert imports_of("arm_jax") == set()


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "arm_jax"))
def test_imports_go_to_the_same_or_a_lower_layer(module):
  upward = {t: layer_of(t) for t in imports_of(module) if layer_of(t) > layer_of(module)}
  assert not upward, f"{module} (layer {layer_of(module)}) imports higher layers: {upward}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "arm_jax"))
def test_only_the_toy_world_imports_the_toy_world(module):
  if module.startswith("arm_jax.toy"):
    return
  toy = sorted(t for t in imports_of(module) if t.startswith("arm_jax.toy"))
  assert not toy, f"{module} imports the toy plug-in: {toy}"


def test_no_import_cycle():
  graph = {m: imports_of(m) for m in MODULES}
  state: dict[str, int] = {}  # 1 on the current path, 2 done
  path: list[str] = []

  def visit(m):
    state[m] = 1
    path.append(m)
    for t in sorted(graph.get(m, ())):
      if state.get(t) == 1:
        raise AssertionError("import cycle: " + " -> ".join(path[path.index(t):] + [t]))
      if t not in state:
        visit(t)
    path.pop()
    state[m] = 2

  for m in sorted(graph):
    if m not in state:
      visit(m)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
  """The checks above would pass vacuously if imports_of missed imports: pin what it finds."""
  assert "arm_jax.core" in imports_of("arm_jax.rl.phases")
  probe = tmp_path / "_layer_probe.py"
  probe.write_text("def f():\n  from arm_jax.training import loop\n"
                   "from ..data import schema\nfrom . import grpo\n", encoding="utf-8")
  monkeypatch.setitem(MODULES, "arm_jax.rl._layer_probe", probe)
  assert imports_of("arm_jax.rl._layer_probe") == {
      "arm_jax.training", "arm_jax.training.loop", "arm_jax.data", "arm_jax.data.schema",
      "arm_jax.rl", "arm_jax.rl.grpo"}
