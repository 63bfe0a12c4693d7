"""Harder tasks at equal budgets: does Dense degrade sharply where a CNN keeps its accuracy?

{MLP, CNN, LCN} on MNIST, Fashion-MNIST (original and one fixed pixel shuffle; with MLPs
matched to the seed CNN's parameters and multiply-adds beside them) and cluttered translated
MNIST (60x60 canvas, 4 clutter crops of 8x8 px from other digits; at longer budgets:
configs/sweeps/cluttered.py), and {logistic regression, MLP, 1-D CNN} on MNIST-1D (Greydanus
2020; original and shuffled positions). In each dataset every model trains the same epochs
with the same batch size and optimizer (Adam, cosine decay); its learning rate is chosen per
model and dataset on a validation split held out of the training set (the test split chooses
nothing). Seeds: 5 for every model.

  python -m research.studies harder --output_dir docs/studies/harder --runs_dir runs/harder
  --sweep=configs/sweeps/harder.py:ARG, ARG one of
  mnist1d,fashion         only those datasets (keys: DATASETS); runs are shared, so a study can be
                          run in parts and then once whole (finished runs are read back)
  cluttered,no_lcn        those datasets without the LCN
  quick                   MNIST-1D only, 3 epochs, 2 seeds, 2 candidate rates: the tests
  mnist_quick             MNIST with few steps: the base of the shuffled study's quick variant
"""
from configs import mnist_cnn
from research.studies import _layers

EPOCHS = 5  # 60k-image datasets: the seeds' Keras CNN budget (5 epochs)
EPOCHS_CLUTTERED = 3
EPOCHS_1D = 200  # MNIST-1D: 3,500 training sequences, 27 steps an epoch (its paper: 6,000 steps)

# key -> (condition name, overrides, models)
IMAGE_MODELS = ("mlp", "cnn", "lcn")
# 28x28 datasets: also MLPs matched to the seed CNN's parameters and multiply-adds (the latter
# about the LCN's parameters), so that Dense against Conv is not small against large
MATCHED_MODELS = IMAGE_MODELS + ("mlp_params", "mlp_flops")
SEQ_MODELS = ("logreg", "mlp", "cnn1d")
DATASETS = {
    "mnist": ("MNIST", {"dataset": "mnist"}, MATCHED_MODELS),
    "fashion": ("Fashion-MNIST", {"dataset": "fashion_mnist"}, MATCHED_MODELS),
    "fashion_shuffled": ("Fashion-MNIST shuffled", {
        "dataset": "fashion_mnist", "pixel_permutation": "train_test"}, MATCHED_MODELS),
    # 60x60 inputs: a CNN step costs ~7.8x the 28x28 one here and an LCN step ~14x, so every
    # model gets 3 epochs on this dataset (equal inside its table).
    "cluttered": ("cluttered MNIST 60x60", {
        "dataset": "mnist", "canvas_size": 60, "clutter_pieces": 4, "clutter_size": 8,
        "num_epochs": EPOCHS_CLUTTERED}, IMAGE_MODELS),
    "mnist1d": ("MNIST-1D", {"dataset": "mnist1d", "validation_size": 500,
                             "num_epochs": EPOCHS_1D, "log_every_steps": 540,
                             "eval_every_epochs": 10}, SEQ_MODELS),
    "mnist1d_shuffled": ("MNIST-1D shuffled", {
        "dataset": "mnist1d", "validation_size": 500, "num_epochs": EPOCHS_1D,
        "log_every_steps": 540, "eval_every_epochs": 10, "pixel_permutation": "train_test"},
        SEQ_MODELS),
    # Not in the default set: TFDS downloads CIFAR-10 (~160 MB), which an offline machine cannot.
    # On a machine that can: `...harder.py:cifar10` (or add it to a list of keys).
    "cifar10": ("CIFAR-10", {"dataset": "cifar10"}, IMAGE_MODELS),
}
OFFLINE = [k for k in DATASETS if k != "cifar10"]  # what runs when no keys are given


def get_sweep(arg=None):
  quick = arg in ("quick", "mnist_quick")
  keys = {"quick": ["mnist1d"], "mnist_quick": ["mnist"], None: OFFLINE, "": OFFLINE}.get(
      arg) or arg.split(",")
  no_lcn = "no_lcn" in keys  # a part without the LCN (its runs cost the most here)
  keys = [k for k in keys if k != "no_lcn"] or OFFLINE
  unknown = [k for k in keys if k not in DATASETS]
  if unknown:
    raise ValueError(f"unknown dataset keys {unknown}; choose from {list(DATASETS)} (and "
                     "no_lcn)")
  conditions = {DATASETS[k][0]: dict(DATASETS[k][1]) for k in keys}
  grid = [{"model": m, "condition": DATASETS[k][0]} for k in keys for m in DATASETS[k][2]
          if not (no_lcn and m == "lcn")]
  common = {"parallelism": "single", "optimizer": "adam", "lr_schedule": "cosine",
            "batch_size": 128, "num_epochs": EPOCHS, "validation_size": 5000,
            "eval_every_epochs": 1, "eval_train": False, "log_every_steps": 430,
            "checkpoint_every_steps": 2000, "permutation_seed": 0, "transform_seed": 0}
  if arg == "quick":
    conditions["MNIST-1D"].update(num_epochs=3, eval_every_epochs=1, log_every_steps=10)
  model_steps = {}
  if arg == "mnist_quick":  # a few hundred steps (a fraction of an epoch), evaluated at the end
    common.update(eval_every_epochs=0, log_every_steps=100)
    model_steps = {"mlp": {"num_train_steps": 600}, "cnn": {"num_train_steps": 200},
                   "lcn": {"num_train_steps": 200}}
  models = {
      "mlp": {"model": "mlp", "mlp_hidden": (128,)},  # the seed MLP
      **{f"mlp_{m}": {"model": "mlp", "mlp_hidden": (_layers.matched_mlp_width(
          mnist_cnn.get_config(), (28, 28, 1), m),)} for m in ("params", "flops")},
      "logreg": {"model": "mlp", "mlp_hidden": ()},  # logistic regression (MNIST-1D's row)
      "cnn": {"model": "cnn"},  # the seed CNN
      "lcn": {"model": "lcn"},  # the seed CNN's layout without weight sharing
      # MNIST-1D's 1-D CNN: 3 conv layers of 25 channels, kernel 5 (as in its paper), each
      # VALID and followed by a max pool of 2 (40 -> 36 -> 18 -> 14 -> 7 -> 3 -> 1).
      "cnn1d": {"model": "cnn1d", "cnn_features": (25, 25, 25), "cnn_kernel": 5,
                "cnn_pool": 2},
  }
  for m, o in model_steps.items():
    models[m] = {**models[m], **o}
  return {
      "base": "configs.mnist_cnn",
      "common": common,
      "models": models,
      "conditions": conditions,
      "grid": grid,
      "seeds": [0, 1] if quick else [0, 1, 2, 3, 4],
      # A cell whose best rate is at an end of the candidates gets up to two more beyond it.
      "lr_search": {"learning_rates": {"quick": [1e-3, 3e-3], "mnist_quick": [1e-3]}.get(
          arg, [3e-4, 1e-3, 3e-3]), "seed": 0, "extend": 0 if arg == "mnist_quick" else 2},
      "resources": {"num_cpus": 1},
  }
