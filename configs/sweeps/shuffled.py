"""Shuffled pixels: {MLP, CNN, LCN} x {MNIST, MNIST with one fixed pixel shuffle (retrained)},
plus the params trained on MNIST scored on shuffled test images (no retraining).

The budgets, validation split and learning-rate search are the harder-task study's
(configs/sweeps/harder.py): its 'MNIST' runs are this study's, trained once with a shared
--runs_dir.

  python -m research.studies shuffled --output_dir docs/studies/shuffled --runs_dir runs/harder
  --sweep=configs/sweeps/shuffled.py:ARG, ARG one of
  quick    a short version for tests (MLP and CNN, a few steps)
  no_lcn   the MLP and the CNN only (an LCN run costs ~2 CNN runs of this budget on a CPU; the
           LCN's shuffled-pixels cell at equal budget is in the harder-task study)

The MLP and the CNN are also retrained on 'MNIST shuffled per seed': each seed draws its own
permutation, so those cells' intervals cover the draw of the permutation as well as training.
"""
from configs.sweeps import harder

PER_SEED = "MNIST shuffled per seed"  # every seed its own permutation (permutation_seed = seed)


def get_sweep(arg=None):
  quick = arg == "quick"
  spec = harder.get_sweep("mnist_quick" if quick else "mnist")
  mnist = spec["conditions"]["MNIST"]
  if arg not in (None, "", "quick", "no_lcn"):
    raise ValueError(f"unknown argument {arg!r}; choose quick or no_lcn")
  models = ("mlp", "cnn") if arg in ("quick", "no_lcn") else harder.IMAGE_MODELS
  shuffled = {**mnist, "pixel_permutation": "train_test"}
  conditions = {"MNIST": mnist, "MNIST shuffled": shuffled, PER_SEED: shuffled}
  grid = [{"model": m, "condition": c} for m in models for c in conditions if c != PER_SEED]
  grid += [{"model": m, "condition": PER_SEED} for m in ("mlp", "cnn") if not quick]
  return {
      **spec,
      "conditions": conditions,
      "grid": grid,
      "seeded_draws": {PER_SEED: ["permutation_seed"]},
      **({"seeds": [0, 1, 2], "model_seeds": {"cnn": [0]}} if quick else {}),
      "evals": {
          "normal -> shuffled test": {"from": "MNIST",
                                      "test": {"pixel_permutation": "test", "permutation_seed": 0}},
      },
  }
