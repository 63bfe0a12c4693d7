"""Rethinking generalization (Zhang et al. 2017, Fig. 1a) on MNIST: training loss and accuracy
over steps for true labels, random labels, shuffled pixels, random pixels and Gaussian images.

Memorizing random labels takes many epochs, so the runs train on a fixed random subset of 5,000
training images (train_subset, the same for both models) with a constant learning rate; test
accuracy is on the full test set. Both models get the same budget (3,000 steps of batch 128, ~77
epochs of the subset), the same optimizer and learning rate (Adam 1e-3, fixed: a memorization
study has no validation score to choose by), the same five seeds. The MLP is wider than the
seed's (512 hidden units) so it can memorize within the budget.

  python -m research.studies rethinking --output_dir docs/studies/rethinking
  --sweep=configs/sweeps/rethinking.py:ARG, ARG a comma list of
  quick   a short version for tests (the MLP only, 300 steps)
  mlp     the MLP's part alone (the CNN's is the slow one)
  drawn   every data draw varied with the seed, so that the intervals cover it: the training
          subset, the random labels, the per-image pixel permutations and the Gaussian images
          (transform_seed = seed), and the shuffled pixels' permutation (permutation_seed =
          seed); without it every draw is seed 0's
"""

CONDITIONS = {
    "true labels": {},
    "random labels": {"random_labels": 1.0},
    "shuffled pixels": {"pixel_permutation": "train_test"},
    "random pixels": {"random_pixels": True},
    "gaussian": {"gaussian_images": True},
}


DRAWS = {c: ["transform_seed"] + (["permutation_seed"] if "pixel_permutation" in o else [])
         for c, o in CONDITIONS.items()}


def get_sweep(arg=None):
  keys = [k for k in (arg or "").split(",") if k]
  if set(keys) - {"quick", "mlp", "drawn"}:
    raise ValueError(f"unknown keys {sorted(set(keys) - {'quick', 'mlp', 'drawn'})}; choose "
                     "quick, mlp and/or drawn")
  quick = "quick" in keys
  return {
      "base": {"mlp": "configs.mnist_mlp", "cnn": "configs.mnist_cnn"},
      "common": {"parallelism": "single", "eval_train": True, "lr_schedule": "constant",
                 "optimizer": "adam", "learning_rate": 1e-3, "batch_size": 128,
                 "checkpoint_every_steps": 2000, "train_subset": 5000,
                 "num_train_steps": 300 if quick else 3000, "log_every_steps": 100,
                 "eval_every_epochs": 8},
      "models": {
          "mlp": {"model": "mlp", "mlp_hidden": (512,)},
          "cnn": {"model": "cnn"},
      },
      "conditions": CONDITIONS,
      "grid": [{"model": m, "condition": c}
               for m in (("mlp",) if quick or "mlp" in keys else ("mlp", "cnn"))
               for c in CONDITIONS],
      "seeds": [0, 1, 2, 3, 4],
      **({"seeded_draws": DRAWS} if "drawn" in keys else {}),
      "resources": {"num_cpus": 1},
  }
