"""Shuffled pixels: {MLP, CNN, LCN} x {original, shuffled-and-retrained} x seeds, plus the
params trained on original images scored on shuffled test images (no retraining).

  python scripts/study_shuffled.py --output_dir runs/study_shuffled
  ...:quick  a short version for tests (fewer steps, MLP and CNN only)
"""

BASE = {"mlp": "configs.mnist_mlp", "cnn": "configs.mnist_cnn", "lcn": "configs.mnist_cnn"}


def get_sweep(arg=None):
  quick = arg == "quick"
  models = {
      "mlp": {"model": "mlp", "num_epochs": 10},  # cheap: the seed config's 10 epochs
      "cnn": {"model": "cnn", "num_epochs": 2},
      # LCN (nn.ConvLocal) runs ~7x slower than the CNN on CPU: a shorter budget, and no
      # pass over the 60k training images at the end (no train accuracy in the table).
      "lcn": {"model": "lcn", "num_train_steps": 400, "eval_train": False},
  }
  if quick:
    models = {"mlp": {"model": "mlp", "num_train_steps": 600},
              "cnn": {"model": "cnn", "num_train_steps": 200}}
  return {
      "base": BASE,
      "common": {"parallelism": "single", "eval_train": not quick, "log_every_steps": 100,
                 "checkpoint_every_steps": 1000, "batch_size": 128},
      "models": models,
      "conditions": {
          "original": {},
          "shuffled (retrained)": {"pixel_permutation": "train_test", "permutation_seed": 0},
      },
      "evals": {
          "normal -> shuffled test": {"from": "original",
                                      "test": {"pixel_permutation": "test", "permutation_seed": 0}},
      },
      "seeds": [0, 1, 2],
      # quick: three MLP seeds (its shuffled-vs-original gap is seed noise), one CNN seed.
      # LCN: two seeds (each run is ~4 min on a shared 2-core CPU).
      "model_seeds": {"cnn": [0]} if quick else {"lcn": [0, 1]},
  }
