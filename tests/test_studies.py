"""Sweeps as data (research/grid.py), reports (research/report.py), the inline runner and the
shuffled-pixels study on real MNIST. Ray: tests/test_ray_sweeps.py."""
import json
import os
import sys

import numpy as np
import pytest

from conftest import ROOT
from research import executors, grid, report

sys.path.insert(0, os.path.join(ROOT, "scripts"))


def test_grid_helpers_and_run_names():
  points = grid.product(grid.sweep("model", ["mlp", "cnn"]), grid.sweep("lr", [1, 2, 3]))
  assert len(points) == 6 and points[0] == {"model": "mlp", "lr": 1}
  assert points[-1] == {"model": "cnn", "lr": 3}
  spec = grid.load_sweep(os.path.join(ROOT, "configs/sweeps/shuffled.py"))
  runs = grid.expand(spec)
  names = [r.name for r in runs]
  assert len(set(names)) == len(names)
  assert names == [r.name for r in grid.expand(spec)]  # deterministic
  # Every override is a real config field (a typo in a sweep file fails here, not mid-sweep).
  for run in runs:
    config = run.config()
    assert config.seed == run.seed and config.model == run.model
  # The translation study's 'original' runs are the shuffled study's: shared when runs_dir is.
  trans = grid.expand(grid.load_sweep(os.path.join(ROOT, "configs/sweeps/translation.py")))
  shared = {r.name for r in trans} & set(names)
  assert {n.split("-")[0] for n in shared} == {"mlp", "cnn", "lcn"}
  assert all("-original-" in n for n in shared)
  # A --set override changes the run's identity (e.g. CIFAR-10 runs never reuse MNIST ones).
  cifar = grid.expand(spec, {"dataset": "cifar10"})
  assert not {r.name for r in cifar} & set(names)
  assert cifar[0].config().dataset == "cifar10"


def test_unknown_override_is_an_error():
  spec = grid.load_sweep(os.path.join(ROOT, "configs/sweeps/tabular.py"))
  run = grid.expand(spec, {"learning_rat": 0.1})[0]
  with pytest.raises(KeyError, match="learning_rat"):
    run.config()


def test_finished_runs_are_read_back_not_retrained(tmp_path):
  spec = grid.load_sweep(os.path.join(ROOT, "configs/sweeps/tabular.py"))
  run = grid.expand(spec, seeds=[0])[0]
  workdir = tmp_path / run.name
  workdir.mkdir()
  (workdir / "results.json").write_text(json.dumps(
      {"test_accuracy": 0.5, "steps": 7, "num_params": 3, "dataset": "breast_cancer"}))
  lines = []
  # Ray is never started for a sweep whose runs are all finished.
  outcomes = executors.run_runs([run], str(tmp_path), "ray", log=lines.append)
  assert outcomes[run.name]["status"] == "done"
  assert outcomes[run.name]["results"]["test_accuracy"] == 0.5
  assert ": done " in lines[0] and run.name in lines[0]
  assert lines[-1].startswith("runs: 1 done, 0 running, 0 failed, 0 pending of 1")


def test_aggregate_and_markdown_are_exact():
  rows = [{"model": "mlp", "condition": "a", "seed": s, "test_accuracy": acc, "steps": 10,
           "num_params": 100} for s, acc in enumerate([0.90, 0.92, 0.94])]
  rows.append({"model": "cnn", "condition": "a", "seed": 0, "test_accuracy": 0.5, "steps": 5,
               "num_params": 7})
  agg = report.aggregate(report.to_frame(rows))
  mlp = agg[agg["model"] == "mlp"].iloc[0]
  assert mlp["test_accuracy_mean"] == pytest.approx(0.92)
  assert mlp["test_accuracy_std"] == pytest.approx(0.02)  # sample std over seeds
  assert mlp["n"] == 3
  assert agg[agg["model"] == "cnn"].iloc[0]["test_accuracy_std"] == 0.0  # one seed
  table = report.markdown_table(agg)
  assert "| mlp | a | 92.00 ± 2.00 | 3 | 10 | 100 |" in table
  assert list(agg["model"]) == ["mlp", "cnn"]  # first-seen order


def test_markdown_sections_are_replaced(tmp_path):
  path = str(tmp_path / "results.md")
  with open(path, "w") as f:
    f.write("# Results\n\nintro\n")
  report.update_markdown_section(path, "shuffled", "table v1")
  report.update_markdown_section(path, "translation", "table t")
  report.update_markdown_section(path, "shuffled", "table v2")
  text = open(path).read()
  assert text.startswith("# Results\n\nintro\n")
  assert "table v2" in text and "table v1" not in text and "table t" in text
  assert text.index("table v2") < text.index("table t")


@pytest.mark.slow
def test_shuffled_pixels_claims_on_real_mnist(mnist, tmp_path, capsys):
  """The issue's first three claims, measured: a short version of scripts/study_shuffled.py
  (MLP 600 steps x 3 seeds, CNN 200 steps x 1 seed)."""
  import study_shuffled
  out = str(tmp_path / "study")
  argv = ["--output_dir", out, "--sweep", os.path.join(ROOT, "configs/sweeps/shuffled.py:quick"),
          "--executor=inline"]  # the study's claims; Ray itself: tests/test_ray_sweeps.py
  frame, agg = study_shuffled.main(argv)
  acc = {(r["model"], r["condition"]): r["test_accuracy_mean"] for _, r in agg.iterrows()}
  n = {(r["model"], r["condition"]): r["n"] for _, r in agg.iterrows()}
  assert n["mlp", "original"] == 3 and n["mlp", "shuffled (retrained)"] == 3
  mlp_drop = acc["mlp", "original"] - acc["mlp", "shuffled (retrained)"]
  cnn_drop = acc["cnn", "original"] - acc["cnn", "shuffled (retrained)"]
  assert acc["mlp", "original"] > 0.9 and acc["cnn", "original"] > 0.9  # both really learned
  assert abs(mlp_drop) <= 0.005, "Dense ignores pixel order: within 0.5 pp"
  assert cnn_drop > mlp_drop, "the CNN relies on pixel neighbourhoods"
  assert acc["cnn", "normal -> shuffled test"] < 0.30, "trained normal, tested shuffled collapses"
  # The outputs the script promises.
  for name in ("results.csv", "results.md", "shuffled.png"):
    assert os.path.getsize(os.path.join(out, name)) > 0
  import pandas as pd
  csv = pd.read_csv(os.path.join(out, "results.csv"))
  assert len(csv) == 6 + 2 + 4  # runs + the normal -> shuffled evaluations (3 MLP, 1 CNN)
  assert np.isfinite(csv["test_accuracy"]).all()
  # Resumable: a second invocation reads every run and evaluation back.
  capsys.readouterr()
  frame2, _ = study_shuffled.main(argv)
  log = capsys.readouterr().out
  assert log.count(": done ") == 8 and ": trained " not in log
  np.testing.assert_array_equal(frame2["test_accuracy"].to_numpy(), frame["test_accuracy"].to_numpy())


@pytest.mark.parametrize("flag, message", [
    ("--set=learning_rat=0.1", "error: --set learning_rat: not a config field of configs.mnist_mlp"),
    ("--seeds=0,x", "error: --seeds 0,x: expected integers"),
    ("--ray_address=127.0.0.1:9", "error: cannot join the Ray cluster at 127.0.0.1:9: nothing answers"),
])
def test_bad_sweep_input_is_one_error_line(tmp_path, capsys, flag, message):
  from research import sweep
  with pytest.raises(SystemExit) as exit_:
    sweep.main([f"--sweep={ROOT}/configs/sweeps/smoke.py", f"--runs_dir={tmp_path}", flag])
  assert exit_.value.code == 2
  assert capsys.readouterr().err.strip().splitlines()[-1].startswith(message)
  assert not any(p.is_dir() for p in tmp_path.iterdir())  # nothing ran


def test_intervals_match_a_hand_computation():
  # Five seeds: mean 0.98, sample std sqrt(2.5e-4 / 4) = 0.0079057, sem 0.0035355,
  # t(0.975, 4 dof) = 2.776445 from a t table: half-width 0.0098160.
  mean, half = report.t_interval([0.97, 0.98, 0.99, 0.975, 0.985])
  assert mean == pytest.approx(0.98) and half == pytest.approx(0.0098160, abs=1e-6)
  assert np.isnan(report.t_interval([0.5])[1])
  # Welch with equal sizes and variances: se = sqrt(1/3 + 1/3), dof = 4 exactly.
  d, low, high = report.diff_interval([3, 4, 5], [1, 2, 3])
  assert d == 2 and low == pytest.approx(2 - 2.776445 * 0.8164966, abs=1e-5)
  assert high == pytest.approx(2 + 2.776445 * 0.8164966, abs=1e-5)
  assert report.verdict(low, high) == "n.s."  # the interval [-0.27, 4.27] contains zero
  d, low, high = report.diff_interval([3.0, 3.1, 2.9], [1.0, 1.1, 0.9])
  assert report.verdict(low, high) == "> 0" and report.verdict(-high, -low) == "< 0"
  frame = report.to_frame([{"model": "m", "condition": "c", "seed": s, "test_accuracy": a}
                           for s, a in enumerate([0.97, 0.98, 0.99, 0.975, 0.985])])
  agg = report.aggregate(frame)
  assert agg["test_accuracy_ci95"][0] == pytest.approx(0.0098160, abs=1e-6)
  assert "98.00 ± 0.98" in report.markdown_table(agg, spread="ci95")


def test_verdict_fails_loudly_when_a_results_file_is_missing(tmp_path):
  import subprocess
  out = tmp_path / "verdict.md"
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "verdict.py"),
                         f"--studies_dir={tmp_path}", f"--output={out}"],
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ")
  assert "harder/summary.json is missing: run `python scripts/study_harder.py" in lines[0]
  assert not out.exists()  # nothing half-made
