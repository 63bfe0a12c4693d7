"""eFCN (d'Ascoli et al. 2019): a CNN mapped to its exact dense network at a switch point
("relax time") and trained on with every weight free. Run by research/studies/efcn.py in two stages:

  1. `cnn`: the CNN trained for RELAX_EPOCHS[-1] + TRAIN_ON_EPOCHS epochs at a constant learning
     rate, a checkpoint every epoch (its segment t .. t + TRAIN_ON_EPOCHS is "the CNN trained
     on" from switch point t); `fcn`: a dense network of the eFCN's exact shape trained from
     random initialisation for as long as the CNN, so that at epoch t + TRAIN_ON_EPOCHS it has
     had the eFCN from t's whole budget.
  2. `relax`: for each finished `cnn` run and switch point t (epochs; 0 is the CNN's random
     init): a `fcn` run with `init_from` = that run at step t * steps_per_epoch, trained for
     TRAIN_ON_EPOCHS epochs with the same optimizer settings (Adam state fresh).

  python -m research.studies efcn --runs_dir=runs/efcn --output_dir=docs/studies/efcn
  --sweep=configs/sweeps/efcn.py:ARG, ARG a comma list of
  quick      a short version for tests (a 1,280-image training subset, one seed, MNIST)
  validated  a 5,000-image validation split held out of the training set, on which each stage-1
             model's constant rate is chosen; the eFCN, which is the dense network, trains on
             at the rate chosen for it (relax.rate_from); without it every run uses Adam 1e-3

The CNN is the seed's shape family, narrowed to Conv 8 -> Conv 16 (eFCN 6.9M weights instead of
the seed's 59M) to fit a shared 2-core CPU: see docs/results.md, eFCN.
"""

BASE = {"cnn": "configs.mnist_cnn", "fcn": "configs.mnist_cnn"}


def get_sweep(arg=None):
  keys = [k for k in (arg or "").split(",") if k]
  if set(keys) - {"quick", "validated"}:
    raise ValueError(f"unknown keys {sorted(set(keys) - {'quick', 'validated'})}; choose quick "
                     "and/or validated")
  quick, validated = "quick" in keys, "validated" in keys
  batch = 64 if quick else 128
  subset = 1280 if quick else 0  # 0: all 60,000 training images (MNIST and Fashion-MNIST)
  validation = (256 if quick else 5000) if validated else 0
  steps_per_epoch = ((subset or 60000) - validation) // batch
  relax_epochs = [0, 1] if quick else [0, 1, 2, 3]  # switch points t (epochs of CNN training)
  train_on = 1 if quick else 2
  common = {
      "parallelism": "single", "batch_size": batch, "train_subset": subset,
      "cnn_features": [4, 8] if quick else [8, 16],
      "lr_schedule": "constant", "learning_rate": 1e-3, "eval_train": False,
      "log_every_steps": steps_per_epoch, "steps_per_call": 10 if not quick else 5,
      "eval_every_epochs": 1, **({"validation_size": validation} if validated else {}),
  }
  return {
      "base": BASE,
      "common": common,
      "models": {
          "cnn": {"model": "cnn", "num_epochs": relax_epochs[-1] + train_on,
                  "checkpoint_every_steps": steps_per_epoch,
                  "max_checkpoints_to_keep": relax_epochs[-1] + train_on + 1},
          # the eFCN's whole budget at the last switch point: its test score at epoch t + R is
          # a run of t + R epochs (constant rate, data order fixed by seed and epoch)
          "fcn": {"model": "fcn", "num_epochs": relax_epochs[-1] + train_on},
      },
      "conditions": ({"mnist": {"dataset": "mnist"}} if quick else
                     {"mnist": {"dataset": "mnist"},
                      "fashion_mnist": {"dataset": "fashion_mnist"}}),
      "seeds": [0] if quick else [0, 1, 2, 3, 4],
      **({"lr_search": {"learning_rates": [1e-3, 3e-3] if quick else [3e-4, 1e-3, 3e-3],
                        "seed": 0, "extend": 0 if quick else 2}} if validated else {}),
      # Stage 2 (research/studies/efcn.py): eFCN runs from the `from` runs' checkpoints.
      "relax": {"from": "cnn", "epochs": relax_epochs, "steps_per_epoch": steps_per_epoch,
                **({"rate_from": "fcn"} if validated else {}),
                "overrides": {"model": "fcn", "num_epochs": train_on,
                              # quick: a checkpoint mid-run, so the test can resume from it
                              "checkpoint_every_steps": 10 if quick else 1000,
                              "max_checkpoints_to_keep": 2}},
  }
