"""The eFCN study (research/studies/efcn.py): a CNN run mapped to its exact dense network through
`init_from`, trained on, checkpointed and resumed like any run, on real MNIST."""
import json
import os
import shutil

import jax
import numpy as np
import pytest

from conftest import ROOT, tiny_config
from research import UserError, equivalence, experiment, train


def test_init_from_refuses_bad_sources(tmp_path):
  config = tiny_config("fcn", init_from=str(tmp_path / "nowhere"))
  with pytest.raises(UserError, match="is not a run directory"):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()  # refused before it started: nothing left behind


@pytest.mark.slow
def test_efcn_study_maps_trains_and_resumes(mnist, tmp_path, capsys):
  """configs/sweeps/efcn.py:quick: a CNN (Conv 4 -> Conv 8) on 1,280 MNIST images, its eFCN
  from switch points 0 and 1 epoch, and a dense net of the same shape from random init."""
  from research.studies import efcn as study
  out, runs_dir = str(tmp_path / "study"), str(tmp_path / "runs")
  arguments = dict(output_dir=out, runs_dir=runs_dir, executor="inline",
                   sweep=os.path.join(ROOT, "configs/sweeps/efcn.py:quick"))
  frame, curves, diffs = study.run(**arguments)
  assert sorted(frame["model"]) == ["cnn", "efcn-t0", "efcn-t1", "fcn"]
  by_model = frame.set_index("model")
  # The eFCN has the CNN's function with every weight free: many more parameters.
  assert by_model.loc["efcn-t1", "num_params"] == by_model.loc["fcn", "num_params"] > 100 * (
      by_model.loc["cnn", "num_params"])
  assert (frame["test_accuracy"] > 0.3).all()  # every run learned (1,280 images; chance: 0.1)
  assert [(d["dataset"], d["t"]) for d in diffs] == [("mnist", 0), ("mnist", 1)]

  # init_from: the eFCN's initial params are the CNN's checkpoint at epoch 1, mapped exactly,
  # and compute the same logits on real test images.
  workdir = {m: w for m, w in zip(frame["model"], frame["workdir"])}
  cnn, cnn_params, cnn_config = experiment.load_model(workdir["cnn"], 20)  # 20 steps = 1 epoch
  fcn, fcn_params, _ = experiment.load_model(workdir["efcn-t1"], 0)
  _, mapped = equivalence.cnn_to_fcn(cnn, cnn_params, (28, 28, 1))
  jax.tree.map(np.testing.assert_array_equal, fcn_params, mapped)
  x = mnist.test_images[:500].astype(np.float32) / 255.0
  logits = np.asarray(cnn.apply({"params": cnn_params}, x))
  assert np.abs(np.asarray(fcn.apply({"params": fcn_params}, x)) - logits).max() <= 1e-4
  # The subspace fractions: exactly 0 at the switch, > 0 once trained as dense; a dense net
  # from random init starts almost wholly outside both patterns.
  efcn = curves[curves["model"] == "efcn-t1"].sort_values("epoch")
  assert efcn["outside_conv/ConvDense_0"].iloc[0] == 0.0
  assert 0 < efcn["outside_local/ConvDense_0"].iloc[-1] <= efcn["outside_conv/ConvDense_0"].iloc[-1]
  dense = curves[curves["model"] == "fcn"].sort_values("epoch")
  assert dense["outside_local/ConvDense_0"].iloc[0] > 0.9
  # The dense net from random init is compared at the eFCN's whole budget, t + R epochs.
  summary = json.load(open(os.path.join(out, "summary.json")))
  dense_at = dense.set_index("epoch")["test_accuracy"]
  for d in summary["diffs"]:
    end = curves[curves["model"] == f"efcn-t{d['t']}"].sort_values("epoch").iloc[-1]
    assert end["epoch"] == d["t"] + 1  # R = 1 in the quick sweep
    assert d["efcn_minus_dense"][0] == pytest.approx(
        100 * (end["test_accuracy"] - dense_at[d["t"] + 1]), abs=1e-9)
  line = summary["verdict_line"]
  assert "trained t+R epochs" in line and "not searched" in line
  for name in ("results.csv", "curves.csv", "results.md", "summary.json", "efcn_accuracy.png",
               "efcn_subspaces.png"):
    assert os.path.getsize(os.path.join(out, name)) > 0

  # Resumes like any run: drop the eFCN's end (results, last checkpoint, its metrics), rerun.
  run = workdir["efcn-t1"]
  before = json.load(open(os.path.join(run, "results.json")))
  os.remove(os.path.join(run, "results.json"))
  shutil.rmtree(os.path.join(run, "checkpoints", "20"))
  capsys.readouterr()
  frame2, _, _ = study.run(**arguments)
  log = capsys.readouterr().out
  assert log.count(": done ") == 3 and log.count(": resumed ") == 1
  after = json.load(open(os.path.join(run, "results.json")))
  assert after["steps"] == before["steps"] == 20
  assert abs(after["test_accuracy"] - before["test_accuracy"]) <= 1e-4
  lines = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
  assert [(m["split"], m["step"]) for m in lines if m["split"] != "train"] == [
      ("weights", 0), ("test", 20), ("weights", 20)]  # nothing repeated by the resumption


def test_the_validated_variant_chooses_each_stage_one_rate_on_a_validation_split():
  import pandas as pd
  from configs.sweeps import efcn as sweep
  from research.studies import efcn as study
  plain, validated = sweep.get_sweep(), sweep.get_sweep("validated")
  assert "lr_search" not in plain and "validation_size" not in plain["common"]
  assert validated["common"]["validation_size"] == 5000 and validated["lr_search"]["seed"] == 0
  # steps per epoch of what the validation split leaves: the switch points stay whole epochs
  assert (plain["relax"]["steps_per_epoch"], validated["relax"]["steps_per_epoch"]) == (468, 429)
  with pytest.raises(ValueError, match=r"unknown keys \['slow'\]"):
    sweep.get_sweep("quick,slow")
  frame = pd.DataFrame({"model": ["cnn", "fcn", "efcn-t1", "cnn", "fcn"],
                        "condition": ["mnist"] * 3 + ["fashion_mnist"] * 2,
                        "learning_rate": [3e-3, 1e-3, 1e-3, 1e-3, 3e-4]})
  assert study.rates_text(frame, searched=True) == (
      "Adam at constant rates, the CNN's and the dense net's chosen on a validation split (mnist: "
      "CNN 0.003, dense 0.001, eFCN trained on at 0.001; fashion_mnist: CNN 0.001, dense 0.0003)")
  assert study.rates_text(frame.assign(learning_rate=1e-3), searched=False) == (
      "Adam at a fixed 0.001 (constant, not searched)")
  # the eFCN runs start from each CNN run and train on at the dense net's rate of their dataset
  from research.sweeps import grid
  runs = [grid.Run(m, c, 0, "configs.mnist_cnn", (("learning_rate", lr), ("model", m)))
          for m, c, lr in (("cnn", "mnist", 3e-3), ("fcn", "mnist", 1e-4),
                           ("cnn", "fashion_mnist", 1e-2), ("fcn", "fashion_mnist", 3e-4))]
  stage2 = study.relax_runs(validated, runs, "/runs")
  assert len(stage2) == 2 * len(validated["relax"]["epochs"])
  assert {(r.condition, dict(r.overrides)["learning_rate"]) for r in stage2} == {
      ("mnist", 1e-4), ("fashion_mnist", 3e-4)}
  assert {dict(r.overrides)["learning_rate"] for r in study.relax_runs(plain, runs, "/runs")} == {
      3e-3, 1e-2}  # without a rate_from: the CNN run's own
