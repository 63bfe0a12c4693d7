"""Dense vs Conv on data without spatial structure: sklearn's breast cancer table (30 features).

MLP (Dense 64 -> 2) vs a 1-D conv net sliding over the feature columns, on the original column
order and on one fixed shuffle of the columns (retrained): a conv's locality prior buys nothing
when neighbouring columns are not related.

  python scripts/study_tabular.py --output_dir runs/study_tabular
"""


def get_sweep(arg=None):
  quick = arg == "quick"
  return {
      "base": "configs.mnist_mlp",
      "common": {"dataset": "breast_cancer", "parallelism": "single", "batch_size": 32,
                 "num_train_steps": 200 if quick else 600, "lr_schedule": "cosine",
                 "learning_rate": 1e-3, "eval_every_epochs": 0, "eval_batch_size": 1000,
                 "log_every_steps": 50, "checkpoint_every_steps": 1000, "eval_train": True},
      "models": {
          "mlp": {"model": "mlp", "mlp_hidden": (64,)},
          "cnn1d": {"model": "cnn1d", "cnn_features": (16, 32), "cnn_kernel": 3, "cnn_pool": 2},
      },
      "conditions": {
          "original columns": {},
          "shuffled columns": {"pixel_permutation": "train_test", "permutation_seed": 0},
      },
      "seeds": [0, 1, 2],
  }
