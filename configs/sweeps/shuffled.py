"""Shuffled pixels: {MLP, CNN, LCN} x {MNIST, MNIST with one fixed pixel shuffle (retrained)},
plus the params trained on MNIST scored on shuffled test images (no retraining).

The budgets, validation split and learning-rate search are the harder-task study's
(configs/sweeps/harder.py): its 'MNIST' runs are this study's, trained once with a shared
--runs_dir.

  python -m research.studies shuffled --output_dir docs/studies/shuffled --runs_dir runs/harder
  --sweep=configs/sweeps/shuffled.py:ARG, ARG one of
  quick    a short version for tests (MLP and CNN, a few steps)
  no_lcn   the MLP and the CNN only (an LCN run costs ~7 CNN runs of this budget on a CPU; the
           LCN's shuffled-pixels cell at equal budget is in the harder-task study)
"""
from configs.sweeps import harder


def get_sweep(arg=None):
  quick = arg == "quick"
  spec = harder.get_sweep("mnist_quick" if quick else "mnist")
  mnist = spec["conditions"]["MNIST"]
  if arg not in (None, "", "quick", "no_lcn"):
    raise ValueError(f"unknown argument {arg!r}; choose quick or no_lcn")
  models = ("mlp", "cnn") if arg in ("quick", "no_lcn") else harder.IMAGE_MODELS
  conditions = {"MNIST": mnist, "MNIST shuffled": {**mnist, "pixel_permutation": "train_test"}}
  return {
      **spec,
      "conditions": conditions,
      "grid": [{"model": m, "condition": c} for m in models for c in conditions],
      **({"seeds": [0, 1, 2], "model_seeds": {"cnn": [0]}} if quick else {}),
      "evals": {
          "normal -> shuffled test": {"from": "MNIST",
                                      "test": {"pixel_permutation": "test", "permutation_seed": 0}},
      },
  }
