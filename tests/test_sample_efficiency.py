"""The sample-efficiency study's parts: class-balanced nested subsets, the sweep's conditions,
the per-size differences (mechanics; the study's numbers: docs/studies/sample_efficiency)."""
import numpy as np
import pandas as pd
import pytest

from configs.sweeps import sample_efficiency as sweep
from research import UserError, transforms
from research.studies import sample_efficiency as study
from research.sweeps import grid


def test_balanced_subsets_are_nested_and_class_balanced():
  labels = np.random.default_rng(0).integers(0, 10, 5000)
  subsets = {n: transforms.balanced_subset(labels, n, seed=0) for n in (500, 2000, 2003)}
  for n, keep in subsets.items():
    counts = np.bincount(labels[keep], minlength=10)
    assert len(keep) == len(set(keep)) == n and counts.max() - counts.min() <= 1, counts
  assert set(subsets[500]) <= set(subsets[2000]) <= set(subsets[2003])
  other = transforms.balanced_subset(labels, 500, seed=1)
  assert set(other) != set(subsets[500])  # the seed draws another subset
  with pytest.raises(UserError, match=r"train_subset 5000: class \d has only \d+ examples"):
    transforms.balanced_subset(labels, 5000, seed=0)


def test_the_config_field_picks_the_balanced_subset():
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(10), 100).astype(np.int64)
  images = rng.random((1000, 4, 4, 1)).astype(np.float32)
  from research import data
  ds = data.Dataset(name="toy", train_images=images, train_labels=labels, test_images=images[:10],
                    test_labels=labels[:10], num_classes=10)
  out = transforms.apply({"train_subset": 50, "train_subset_balanced": True}, ds)
  assert np.bincount(out.train_labels, minlength=10).tolist() == [5] * 10
  plain = transforms.apply({"train_subset": 50}, ds)
  assert not np.array_equal(plain.train_labels, out.train_labels)


def test_the_sweep_trains_every_size_the_same_steps_with_4_to_20_evaluations():
  spec = grid.load_sweep("configs/sweeps/sample_efficiency.py")
  runs = grid.expand(spec, {}, seeds=[0])
  by_dataset = {}
  for run in runs:
    config = run.config()
    label, size = study.split_condition(run.condition)
    by_dataset.setdefault(config.dataset, set()).add(config.num_train_steps)
    n = study.n_train(spec["conditions"][run.condition])
    per_epoch = n // config.batch_size
    evaluations = config.num_train_steps // (per_epoch * config.eval_every_epochs)
    assert 4 <= evaluations <= 20, (run.condition, evaluations)
    assert config.train_subset_balanced and config.train_subset == size
  assert by_dataset == {"mnist": {2000}, "fashion_mnist": {2000}, "mnist1d": {6000}}
  assert {r.model for r in runs} == {"mlp", "mlp_params", "cnn", "lcn", "mlp_1d", "cnn1d"}
  assert spec["models"]["mlp_params"]["mlp_hidden"] == (44,)  # 34,990 params: the CNN's 34,826
  assert study.n_train(spec["conditions"]["MNIST n=all"]) == 55000


def test_the_lcn_can_be_left_out_everywhere_or_on_one_dataset():
  models = lambda arg: {(study.split_condition(g["condition"])[0], g["model"])
                        for g in sweep.get_sweep(arg)["grid"]}
  assert ("Fashion-MNIST", "lcn") in models("mnist,fashion")
  assert not any(m == "lcn" for _, m in models("mnist,fashion,no_lcn"))
  only_mnist = models("mnist,fashion,mnist1d,no_lcn_fashion")
  assert ("MNIST", "lcn") in only_mnist and ("Fashion-MNIST", "lcn") not in only_mnist
  assert ("Fashion-MNIST", "cnn") in only_mnist and ("MNIST-1D", "cnn1d") in only_mnist
  with pytest.raises(ValueError, match="no_lcn_cifar"):
    sweep.get_sweep("mnist,no_lcn_cifar")


def test_differences_per_size():
  rows = [{"model": m, "condition": "MNIST n=500", "seed": s, "test_accuracy": a + d}
          for m, a in (("cnn", 0.95), ("mlp", 0.85)) for s, d in enumerate((0, 0.01, -0.01))]
  (g,) = study.gaps(pd.DataFrame(rows))
  assert (g["dataset"], g["size"], g["a"], g["b"]) == ("MNIST", 500, "cnn", "mlp")
  assert g["diff"] == pytest.approx(0.10) and g["low"] > 0


def test_seeded_draws_give_each_seed_its_own_subset_and_clutter():
  spec = grid.load_sweep("configs/sweeps/sample_efficiency.py")
  runs = [r for r in grid.expand(spec, {}, seeds=[0, 1]) if r.condition == "MNIST n=500"]
  assert sorted({r.config().transform_seed for r in runs}) == [0, 1]
  labels = np.repeat(np.arange(10), 200)
  images = np.random.default_rng(0).random((2000, 28, 28, 1)).astype(np.float32)
  from research import data
  ds = data.Dataset(name="toy", train_images=images, train_labels=labels, test_images=images[:50],
                    test_labels=labels[:50], num_classes=10)
  draw = lambda **f: transforms.apply({"train_subset": 100, "train_subset_balanced": True,
                                       "canvas_size": 40, "clutter_pieces": 2, **f}, ds)
  a, b = draw(transform_seed=0), draw(transform_seed=1)
  assert not np.array_equal(a.train_images, b.train_images)  # another subset, other clutter
  assert not np.array_equal(a.test_images, b.test_images)  # the test digits' clutter too
  perm = [transforms.pixel_permutation((28, 28, 1), s) for s in (0, 1)]
  assert not np.array_equal(perm[0], perm[1])
  # A draw seeded in some conditions only: the shuffled study's permutation per seed.
  spec = grid.load_sweep("configs/sweeps/shuffled.py")
  drawn = {(r.condition, r.seed): r.config().permutation_seed
           for r in grid.expand(spec, {}, seeds=[0, 3]) if r.model == "cnn"}
  assert drawn == {("MNIST", 0): 0, ("MNIST", 3): 0, ("MNIST shuffled", 0): 0,
                   ("MNIST shuffled", 3): 0, ("MNIST shuffled per seed", 0): 0,
                   ("MNIST shuffled per seed", 3): 3}


def test_the_verdict_page_reads_the_study_summary(tmp_path):
  import json
  from research.studies import verdict
  curve = lambda m, n, acc: {"dataset": "MNIST", "size": n, "model": m, "test_accuracy_mean": acc,
                             "test_accuracy_ci95": 0.01, "n": 5}
  summary = {"curves": [curve("mlp", 0, 0.98), curve("mlp", 500, 0.80), curve("cnn", 500, 0.90),
                        curve("cnn", 0, 0.99)],
             "gaps": [{"dataset": "MNIST", "size": 500, "a": "cnn", "b": "mlp", "diff": 0.1,
                       "low": 0.08, "high": 0.12, "verdict": "> 0"}]}
  assert study.notes(verdict.Results(str(tmp_path))) == []
  (tmp_path / "sample_efficiency").mkdir()
  (tmp_path / "sample_efficiency" / "summary.json").write_text(json.dumps(summary))
  ((order, lines),) = study.notes(verdict.Results(str(tmp_path)))
  assert 3 < order < 4 and lines[-1] == (
      "- MNIST: mlp 500: 80.0 ± 1.0, all: 98.0 ± 1.0; cnn 500: 90.0 ± 1.0, all: 99.0 ± 1.0; "
      "conv − MLP 500: +10.00 [+8.00, +12.00] pp.")
