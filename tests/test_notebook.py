"""notebooks/rubric_arm_colab.ipynb executed headless (nbclient) with SMOKE = True: every cell
runs without error, and the outputs hold the curves (a PNG), the evaluation table, the viewer's
page, the policy's evaluations and a real model's generations; arm_jax.notebook's sizes."""

import json
import os

import pytest

from arm_jax import notebook

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "rubric_arm_colab.ipynb")


def test_the_notebook_opens_in_colab_and_takes_its_parameters_from_one_tagged_cell():
  with open(NOTEBOOK, encoding="utf-8") as f:
    nb = json.load(f)
  first = "".join(nb["cells"][0]["source"])
  assert "colab.research.google.com/github/" in first
  assert "notebooks/rubric_arm_colab.ipynb" in first
  tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
  assert len(tagged) == 1 and "SMOKE = False" in "".join(tagged[0]["source"])
  assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")  # clean


def test_sizes_are_the_shipped_configs_fields_and_follow_the_runtime():
  assert notebook.size_for("tpu") == notebook.size_for("gpu") == "full"
  assert notebook.size_for("cpu") == "cpu" and notebook.size_for("tpu", smoke=True) == "smoke"
  for size in notebook.SIZES:  # every override names a field configs/toy.py has
    config = notebook.toy_config(size)
    for key, value in notebook.SIZES[size].items():
      node = config
      for part in key.split("."):
        node = node[part]
      assert node == value
  for size in notebook.POLICY_SIZES:
    notebook.override(notebook.load_config("policy_toy", "dpo"), notebook.POLICY_SIZES[size])
  with pytest.raises(KeyError, match="'warmstart.step': the config has no field 'step'"):
    notebook.override(notebook.load_config("toy"), {"warmstart.step": 1})


@pytest.mark.slow  # the toy run, its evaluation, a DPO pass and SmolLM2: a few minutes
def test_every_cell_runs_headless_and_shows_curves_table_viewer_and_generations(tmp_path,
                                                                                monkeypatch):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  from arm_jax import assets  # noqa: PLC0415
  try:
    assets.smollm2_gguf()
  except FileNotFoundError as err:
    pytest.skip(str(err))
  nb = nbformat.read(NOTEBOOK, as_version=4)
  at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
  # papermill's convention: the injected parameters follow the tagged cell.
  nb.cells.insert(at + 1, nbformat.v4.new_code_cell(
      f"SMOKE = True\nWORKDIR = {str(tmp_path / 'runs')!r}"))
  monkeypatch.delenv("XLA_FLAGS", raising=False)  # the kernel sees one CPU device, as Colab's
  client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                   resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}})
  client.execute()  # raises CellExecutionError naming the cell on any error
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
  assert not [o for o in outputs if o.output_type == "error"]
  data = [o.get("data", {}) for o in outputs]
  text = "\n".join(o.get("text", "") for o in outputs) + "\n".join(
      d.get("text/markdown", "") + d.get("text/plain", "") for d in data)
  assert any("image/png" in d for d in data)  # the curves
  assert "held-out judge accuracy" in text  # the run's evaluations
  assert "| system |" in text and "trained voting@2" in text  # the evaluation table
  assert any("data-disagree" in d.get("text/html", "") for d in data)  # the viewer's page
  assert "win_rate_vs_start" in text  # the policy's evaluations
  assert "### Write a haiku about the sea" in text  # the real model's generations
  assert os.path.isfile(tmp_path / "runs" / "eval" / "view.html")
