"""The verdict's statistics, on inputs worked out by hand (research/stats.py), the under-trained
marker on curves that rise and curves that are flat, and the anchors read from their file."""
import json
import math

import pandas as pd
import pytest

from research import stats
from research.studies import verdict
from research.sweeps import report


def test_welch_on_two_pairs():
  # a = [1, 3], b = [0, 2]: each variance 2, so se = sqrt(2/2 + 2/2) = sqrt(2) and Welch's
  # dof = (1 + 1)^2 / (1 + 1) = 2.
  w = stats.welch([1.0, 3.0], [0.0, 2.0])
  assert w["diff"] == 1.0
  assert w["se"] == pytest.approx(math.sqrt(2))
  assert w["dof"] == pytest.approx(2.0)


def _t2_sf(t):  # Student t with 2 degrees of freedom: P(T > t) = 1/2 - t / (2 sqrt(2 + t^2))
  return 0.5 - t / (2 * math.sqrt(2 + t * t))


def test_tost_by_hand():
  # diff 1, se sqrt(2), dof 2. Margin 2: the upper test's t = (2 - 1) / sqrt(2), p = 1/2 -
  # 1/(2 sqrt(5)) = 0.2764; the lower test's t = 3 / sqrt(2); TOST p is the larger.
  r = stats.tost([1.0, 3.0], [0.0, 2.0], margin=2.0)
  assert r["p"] == pytest.approx(0.5 - 1 / (2 * math.sqrt(5)), abs=1e-9)
  assert r["p"] == pytest.approx(0.2763932, abs=1e-6)
  assert not r["equivalent"]
  # Margin 10: t = 9 / sqrt(2) and 11 / sqrt(2); p = 0.011906 < 0.05: equivalent.
  r = stats.tost([1.0, 3.0], [0.0, 2.0], margin=10.0)
  assert r["p"] == pytest.approx(_t2_sf(9 / math.sqrt(2)), abs=1e-9)
  assert r["p"] == pytest.approx(0.011906, abs=1e-5)
  assert r["equivalent"]
  # Its 90% interval lies inside the margin exactly when it is equivalent.
  assert -10 < r["low"] and r["high"] < 10


def test_difference_and_mean_tests_by_hand():
  r = stats.difference_test([1.0, 3.0], [0.0, 2.0])  # t = 1 / sqrt(2), two-sided
  assert r["p"] == pytest.approx(2 * _t2_sf(1 / math.sqrt(2)), abs=1e-9)
  m = stats.mean_test([1.0, 2.0, 3.0], 0.0)  # mean 2, se 1/sqrt(3), dof 2: t = 2 sqrt(3)
  assert m["p_above"] == pytest.approx(_t2_sf(2 * math.sqrt(3)), abs=1e-9)
  assert m["p_below"] == pytest.approx(1 - _t2_sf(2 * math.sqrt(3)), abs=1e-9)


def test_holm_by_hand():
  # m = 4: sorted 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1, running
  # max 0.06). At 5%: the first two rejected, the procedure stops at 0.03.
  out = stats.holm([0.01, 0.04, 0.03, 0.005])
  assert [o["adjusted"] for o in out] == pytest.approx([0.03, 0.06, 0.06, 0.02])
  assert [o["reject"] for o in out] == [True, False, False, True]
  # Bonferroni would also reject 0.01 (x4 = 0.04); Holm rejects what it does and no more.
  out = stats.holm([float("nan"), 0.01])  # no test possible: not counted, never rejected
  assert out[0]["reject"] is False and out[1]["adjusted"] == pytest.approx(0.01)
  assert stats.holm([0.6, 0.9])[1]["adjusted"] == 1.0  # capped


def test_late_rise_interpolates():
  # Evaluations at 0, 50, 100 of 100 steps: at step 80 the curve is 0.5 + 0.6 * 0.2 = 0.62.
  assert stats.late_rise([0, 50, 100], [0.0, 0.5, 0.7], 100) == pytest.approx(0.08)
  assert math.isnan(stats.late_rise([90, 100], [0.5, 0.6], 100))  # no evaluation that early


def _curves(kind):
  rows = []
  for seed, end in enumerate((0.900, 0.902, 0.898)):
    for step in range(0, 101, 10):
      acc = (0.5 + (end - 0.5) * step / 100 if kind == "rising" else
             min(end, 0.5 + (end - 0.5) * step / 40))
      rows.append({"model": "mlp", "condition": kind, "seed": seed, "step": step, "epoch": None,
                   "accuracy": acc, "total_steps": 100})
  return pd.DataFrame(rows)


def test_under_trained_marker_fires_on_a_rising_curve_only():
  rising = report.under_trained_cells(_curves("rising"))["mlp", "rising"]
  assert rising["under_trained"] is True
  assert rising["rise"] == pytest.approx(0.08)  # 0.4 over 100 steps, 20 steps of it
  assert "under-trained" in report.under_trained_mark(rising)
  flat = report.under_trained_cells(_curves("flat"))["mlp", "flat"]
  assert flat["under_trained"] is False and flat["rise"] == pytest.approx(0.0)
  assert report.under_trained_mark(flat).startswith("no")
  # One seed: no interval, no marker.
  assert stats.under_trained([0.1], [0.9])["under_trained"] is None


def test_lr_table_marks_a_choice_at_an_end_of_the_candidates():
  row = lambda m, lr, acc, chosen: {"model": m, "condition": "c", "learning_rate": lr,
                                    "validation_accuracy": acc, "chosen": chosen}
  table = [row("a", 1e-3, 0.90, False), row("a", 3e-3, 0.95, True), row("a", 1e-2, 0.91, False),
           row("b", 1e-3, 0.80, False), row("b", 3e-3, 0.85, False), row("b", 1e-2, 0.88, True)]
  lines = report.lr_search_table(table)
  assert lines[2].endswith("| 0.003 |") and lines[3].endswith("| 0.01 ‡ |")
  assert "1 of 2 cells" in lines[-1]
  assert not any("‡" in line for line in report.lr_search_table(table[:3]))


def test_anchors_are_read_from_their_file(tmp_path, monkeypatch):
  path = tmp_path / "anchors.json"
  path.write_text(json.dumps({"_about": "x", "paper": {"source": "a paper, Table 9",
                                                      "rows": {"d": {"CNN": 12.5}}}}))
  monkeypatch.setattr(verdict, "ANCHORS", str(path))
  assert verdict.anchors() == {"paper": {"source": "a paper, Table 9",
                                         "rows": {"d": {"CNN": 12.5}}}}
  path.write_text(json.dumps({"paper": {"rows": {"d": {"CNN": 12.5}}}}))
  with pytest.raises(ValueError, match="source"):
    verdict.anchors()
  monkeypatch.undo()
  real = verdict.anchors()  # the project's file: every anchor cites a source
  assert {"mnist1d_paper", "zhang2017_cifar10"} <= set(real)
  assert real["mnist1d_paper"]["rows"]["MNIST-1D"]["CNN"][0] == 94
  # and the verdict's code holds none of their numbers
  import inspect
  from research.studies import _rules
  code = inspect.getsource(verdict) + inspect.getsource(_rules)
  assert "89.05" not in code and "53.35" not in code


def test_mnist1d_cells_off_the_paper_are_explained_by_the_draw_the_notebook_or_nothing():
  from research.studies import mnist1d
  paper = {"rows": {"MNIST-1D shuffled": {"CNN": [56, 2], "GRU": [57, 2]},
                    "MNIST-1D": {"MLP": [68, 2]}}}
  notebook = {"rows": {"MNIST-1D shuffled": {"CNN": 58.7, "GRU": 53.3},
                       "MNIST-1D": {"MLP": 65.1}}}
  cell = lambda model, condition, accs: [
      {"model": model, "condition": condition, "status": "trained", "test_accuracy": a}
      for a in accs]
  frame = pd.DataFrame(cell("cnn", "MNIST-1D shuffled", [0.57, 0.60, 0.63])  # draw overlaps
                       + cell("gru_torch", "MNIST-1D shuffled", [0.51, 0.53, 0.545])  # notebook
                       + cell("gru", "MNIST-1D shuffled", [0.48, 0.50, 0.52])  # nothing
                       + cell("mlp", "MNIST-1D", [0.60, 0.61, 0.62]))  # not drawn, no overlap
  lines = [l for l in mnist1d.outside(frame, paper, notebook) if l.startswith("- ")]
  assert len(lines) == 4
  assert "the draw of the permutation moves this cell" in lines[0]
  assert "notebook run of this recipe ends at 53.3%, inside this cell's seeds" in lines[1]
  assert "its notebook run (53.3%) is outside them too: not explained" in lines[2]
  assert "gru_torch, the paper's model as it ran, ends +2.83 [" in lines[2]
  assert lines[2].endswith("not shown to differ.")
  assert "its notebook run (65.1%) is outside them too: not explained" in lines[3]
  apart = pd.DataFrame(cell("gru_torch", "MNIST-1D shuffled", [0.55, 0.56, 0.57])
                       + cell("gru", "MNIST-1D shuffled", [0.48, 0.49, 0.50]))
  line = [l for l in mnist1d.outside(apart, paper, notebook) if "- MNIST-1D shuffled, gru:" in l]
  assert "ends +7.00 [" in line[0] and "accounts for that much of the gap" in line[0]
  within = pd.DataFrame(cell("mlp", "MNIST-1D", [0.66, 0.67, 0.68]))
  assert mnist1d.outside(within, paper, notebook) == []
