"""Dense vs Conv on data without spatial structure: sklearn's breast cancer table (30 features).

MLP (Dense 64 -> 2) vs a 1-D conv net sliding over the feature columns, on the original column
order and on one fixed shuffle of the columns (retrained): a conv's locality prior buys nothing
when neighbouring columns are not related.

The rules of the other studies: both models train the same steps with the same batch and
optimizer (Adam, cosine decay); the learning rate is chosen per model and condition on a
validation split held out of the training set (91 of its 456 examples), never on the test split.
The table is small (113 test examples: one is 0.88 pp), so every cell gets 10 seeds.

  python -m research.studies tabular --output_dir docs/studies/tabular --runs_dir runs/studies
  --sweep=configs/sweeps/tabular.py:quick: a short version for tests (2 seeds, 2 candidate rates, 100 steps)
"""
STEPS = 600
SEEDS = list(range(10))


def get_sweep(arg=None):
  if arg not in (None, "", "quick"):
    raise ValueError(f"unknown argument {arg!r}; choose quick")
  quick = arg == "quick"
  return {
      "base": "configs.mnist_mlp",
      "common": {"dataset": "breast_cancer", "parallelism": "single", "batch_size": 32,
                 "num_train_steps": 100 if quick else STEPS, "lr_schedule": "cosine",
                 "optimizer": "adam", "validation_size": 91, "transform_seed": 0,
                 "eval_every_epochs": 5, "eval_batch_size": 1000, "log_every_steps": 50,
                 "checkpoint_every_steps": 1000, "eval_train": True},
      "models": {
          "mlp": {"model": "mlp", "mlp_hidden": (64,)},
          "cnn1d": {"model": "cnn1d", "cnn_features": (16, 32), "cnn_kernel": 3, "cnn_pool": 2},
      },
      "conditions": {
          "original columns": {},
          "shuffled columns": {"pixel_permutation": "train_test", "permutation_seed": 0},
      },
      "seeds": [0, 1] if quick else SEEDS,
      "lr_search": {"learning_rates": [1e-3, 3e-3] if quick else [3e-4, 1e-3, 3e-3, 1e-2],
                    "seed": 0, "extend": 0 if quick else 2},
  }
