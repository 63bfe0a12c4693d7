"""Rethinking generalization (Zhang et al. 2017, Fig. 1a) on MNIST: training loss and accuracy
over steps for true labels, random labels, shuffled pixels, random pixels and Gaussian images.

Memorizing random labels takes many epochs, so the runs train on a fixed random subset of the
training set (train_subset) with a constant learning rate; test accuracy is on the full test
set. The MLP is wider than the seed's (512 hidden units) so it can memorize within the budget.

  python scripts/study_rethinking.py --output_dir runs/study_rethinking
"""

CONDITIONS = {
    "true labels": {},
    "random labels": {"random_labels": 1.0},
    "shuffled pixels": {"pixel_permutation": "train_test"},
    "random pixels": {"random_pixels": True},
    "gaussian": {"gaussian_images": True},
}


def get_sweep(arg=None):
  quick = arg == "quick"
  return {
      "base": {"mlp": "configs.mnist_mlp", "cnn": "configs.mnist_cnn"},
      "common": {"parallelism": "single", "eval_train": True, "lr_schedule": "constant",
                 "learning_rate": 1e-3, "batch_size": 128, "checkpoint_every_steps": 2000},
      "models": {
          "mlp": {"model": "mlp", "mlp_hidden": (512,), "train_subset": 5000,
                  "num_train_steps": 300 if quick else 3000, "log_every_steps": 100,
                  "eval_every_epochs": 4},
          # The CNN is ~20x slower per step on CPU: a smaller subset, one seed.
          "cnn": {"model": "cnn", "train_subset": 1000, "num_train_steps": 800,
                  "log_every_steps": 50, "eval_every_epochs": 25},
      },
      "conditions": CONDITIONS,
      # ':mlp' runs the MLP's part alone (the CNN's is the slow one).
      "grid": [{"model": m, "condition": c}
               for m in (("mlp",) if arg in ("quick", "mlp") else ("mlp", "cnn"))
               for c in CONDITIONS],
      "seeds": [0, 1, 2],
      "model_seeds": {"cnn": [0]},
  }
