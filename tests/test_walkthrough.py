"""docs/walkthrough.ipynb runs end to end (nbclient), with a 20-step CNN, so it cannot rot."""
import os

import pytest

from conftest import ROOT


def test_walkthrough_notebook_runs(mnist, tmp_path, monkeypatch):
  nbformat = pytest.importorskip("nbformat", reason="pip install -e .[test] brings nbformat")
  nbclient = pytest.importorskip("nbclient", reason="pip install -e .[test] brings nbclient")
  monkeypatch.setenv("WALKTHROUGH_STEPS", "20")  # read by the notebook's first cell
  monkeypatch.setenv("CNN_RUN", "")
  monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's run goes to a temp dir
  notebook = nbformat.read(os.path.join(ROOT, "docs", "walkthrough.ipynb"), as_version=4)
  client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                   resources={"metadata": {"path": ROOT}})
  client.execute()  # raises CellExecutionError, with the cell and its traceback, on failure
  text = "\n".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
  assert "trained 20 steps" in text
  assert "same predictions: True" in text
  assert "'outside_local': 0.0, 'outside_conv': 0.0" in text  # the mapped CNN is a conv
