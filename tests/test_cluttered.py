"""The cluttered-budget study's parts: its grid (budgets, matched widths, draws per seed), claim
8's choice of cells, and the study end to end on a few steps
(mechanics; the study's numbers: docs/studies/cluttered)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs.sweeps import cluttered as sweep
from research.studies import _rules, cluttered
from research.sweeps import grid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_budget_trains_each_model_the_same_epochs_on_its_own_draw():
  spec = grid.load_sweep("configs/sweeps/cluttered.py")
  runs = grid.expand(spec, {}, seeds=[0, 1])
  assert {r.condition for r in runs} == {sweep.condition_name(e) for e in sweep.EPOCHS}
  for run in runs:
    config = run.config()
    assert config.num_epochs == cluttered.split_condition(run.condition)[1]
    assert (config.canvas_size, config.clutter_pieces, config.transform_seed) == (60, 4, run.seed)
  # the matched MLPs: the seed CNN's 126,986 parameters; the half-width CNN's multiply-adds
  assert spec["models"]["mlp_params"]["mlp_hidden"] == (35,)  # 35 * 3,611 + 10 = 126,395
  assert spec["models"]["mlp_flops_narrow"]["mlp_hidden"] == (1080,)  # 3,898,800 vs 3,897,728
  part = grid.expand(grid.load_sweep("configs/sweeps/cluttered.py:9,cnn,mlp"), {}, seeds=[0])
  assert sorted((r.model, r.condition) for r in part) == [
      ("cnn", "cluttered 60x60, 9 epochs"), ("mlp", "cluttered 60x60, 9 epochs")]
  joined = grid.expand(grid.load_sweep("configs/sweeps/cluttered.py:3+9,cnn"), {}, seeds=[0])
  assert sorted((r.model, r.condition) for r in joined) == sorted(
      [(m, "cluttered 60x60, 3 epochs") for m in sweep.models()]
      + [("cnn", "cluttered 60x60, 9 epochs")])
  assert [r.name for r in joined if r.model == "cnn"] == [
      r.name for r in grid.expand(spec, {}, seeds=[0]) if r.model == "cnn"
      and r.condition != sweep.condition_name(27)]  # the same runs as the whole grid's
  with pytest.raises(ValueError, match=r"unknown keys \['gru', 4\]"):
    sweep.get_sweep("4,gru")


class _Results:
  """Enough of verdict.Results for harder_sources: summaries, and every cell present."""

  def __init__(self, summaries, harder_cells=True):
    self.summaries, self.harder_cells = summaries, harder_cells

  def optional_summary(self, study):
    return self.summaries.get(study)

  def acc(self, study, model, condition):
    return np.ones(5 if self.harder_cells else 0)


def test_claim_8_takes_each_dataset_from_the_study_that_trains_it_best():
  cell = lambda m, e, rising: {"model": m, "epochs": e, "condition": sweep.condition_name(e),
                               "under_trained": rising}
  cells = [cell("cnn", 3, False), cell("mlp", 3, False), cell("cnn", 9, False),
           cell("mlp", 9, False), cell("cnn", 27, True), cell("mlp", 27, False),
           cell("lcn_narrow", 27, False)]
  found = _rules.harder_sources(_Results({"cluttered": {"cells": cells}, "mnist1d": {}}))
  assert found == [("Fashion-MNIST", "harder", "cnn", "Fashion-MNIST"),
                   ("cluttered MNIST 60x60", "cluttered", "cnn", "cluttered 60x60, 9 epochs"),
                   ("MNIST-1D", "mnist1d", "cnn", "MNIST-1D")]
  rising = [dict(c, under_trained=True) for c in cells]  # none plateaued: the longest both ran
  found = _rules.harder_sources(_Results({"cluttered": {"cells": rising}}))
  assert found[1][3] == sweep.condition_name(27) and found[2][1] == "harder"
  assert [s for _, s, _, _ in _rules.harder_sources(_Results({}))] == ["harder"] * 3
  assert len(_rules.harder_sources(_Results({}, harder_cells=False))) == 1


@pytest.mark.slow
def test_the_study_runs_end_to_end_on_a_few_steps(mnist, tmp_path):
  out = tmp_path / "out"
  cmd = [sys.executable, "-m", "research.studies", "cluttered",
         "--sweep=configs/sweeps/cluttered.py:quick", f"--output_dir={out}",
         f"--runs_dir={tmp_path / 'runs'}", "--executor=inline"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-2000:]
  summary = json.loads((out / "summary.json").read_text())
  assert {(c["model"], c["epochs"], c["n"]) for c in summary["cells"]} == {
      ("mlp", 3, 2), ("mlp_params", 3, 2)}
  assert summary["params"] == {"mlp": 462_218, "mlp_params": 126_395}
  text = (out / "results.md").read_text()
  assert "| mlp_params | MLP, one hidden layer of 35: the seed CNN's parameters" in text
  assert (out / "cluttered.png").is_file() and (out / "cluttered_curves.png").is_file()
