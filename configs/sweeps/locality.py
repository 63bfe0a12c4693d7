"""Locality learned from data: a dense net trained with β-LASSO (Neyshabur 2020) against the same
net trained with SGD, on original pixels and on the seeds' shuffled pixels (its first layer then
un-permuted back onto the grid and measured there), on MNIST, Fashion-MNIST and MNIST-1D.

The model is the calibration point's MLP, 784 -> 512 -> 10 (`fc` with mlp_hidden=(512,): the
seed MLP's layers, wider; it logs its first layer's locality at each evaluation). Every run:
SGD with momentum 0.9, batch 128, constant rate, β = 50, the rate chosen per cell on the
validation split (seed 0) among 0.02, 0.05 and 0.1 around the calibration point's 0.05 (Adam:
3e-4, 1e-3, 3e-3), one step further where the best is at an end (the calibration point's
30-epoch cells keep its 0.05; a shuffled cell takes the rate chosen for its twin on the
original pixels), the same epochs within a dataset (MNIST and Fashion-MNIST 10, MNIST-1D
100: its 3,500 training sequences make 27 steps an epoch), a 5,000-image validation split held
out of the training set (500 sequences for MNIST-1D) on which λ is chosen by the study. One fixed
pixel permutation (permutation_seed 0).

  python -m research.studies locality --output_dir docs/studies/locality --runs_dir runs/locality
  --sweep=configs/sweeps/locality.py:ARG, ARG a comma-separated list of parts (default: all):
  mnist      MNIST: SGD, β-LASSO λ in LAMBDAS, each on original pixels; SGD and β-LASSO at
             λ = 4e-4 on shuffled pixels (the priority: the calibration point's cells)
  fashion    Fashion-MNIST: SGD, β-LASSO λ = 4e-4
  mnist1d    MNIST-1D: SGD, β-LASSO λ in (4e-4, 1e-3)
  sfc        MNIST: the paper's S-FC (α = 4: 784 -> 784 -> 96 -> 10) with SGD, Adam and β-LASSO
             λ = 4e-4; the 784 -> 512 -> 10 net with Adam; the seed CNN with SGD (the same
             budget: its accuracy beside the dense nets')
  fashion_sfc  the same on Fashion-MNIST
  dfc        MNIST: the paper's D-FC at α = 1 (1,247,650 params) with SGD and β-LASSO λ = 4e-4
  long       MNIST: the calibration point's 30-epoch cells (SGD; β-LASSO λ = 1e-3), and β-LASSO
             λ = 4e-4 on original and shuffled pixels at 30 epochs (where 10 do not plateau)
  conv1d     MNIST-1D: the 1-D CNN of configs/sweeps/harder.py with SGD (its accuracy beside
             the dense net's)
  lcn        MNIST and Fashion-MNIST: the LCN (the seed CNN's layout without weight sharing)
             with SGD (the costliest part)
  quick      a few steps of MNIST (SGD, β-LASSO, shuffled β-LASSO), one seed: a smoke check
"""
LAMBDAS = (1e-4, 4e-4, 1e-3)
EPOCHS = 10
EPOCHS_1D = 100
LONG = 30  # the calibration point's longer cells


def _bl(lam):
  return {"optimizer": "beta_lasso", "lasso_lambda": lam}


SGD = {"optimizer": "sgd"}
SHUFFLED = {"pixel_permutation": "train_test"}
MNIST = {"dataset": "mnist"}
FASHION = {"dataset": "fashion_mnist"}
MNIST1D = {"dataset": "mnist1d", "validation_size": 500, "num_epochs": EPOCHS_1D,
           "eval_every_epochs": 10, "log_every_steps": 270}

# condition -> overrides; the study reads dataset, optimizer, λ and the shuffle from each run's
# config.json, not from these names.
ADAM = {"optimizer": "adam", "learning_rate": 1e-3}  # Adam's usual rate, a candidate
SGD_RATES = (0.02, 0.05, 0.1)  # around the calibration point's 0.05 (β-LASSO's too)
ADAM_RATES = (3e-4, 1e-3, 3e-3)
ALPHA = 4  # S-FC's width factor: its first layer has 14 * 14 * α = 784 units

PARTS = {
    "mnist": {
        "mnist-sgd": {**MNIST, **SGD},
        **{f"mnist-bl{lam:g}": {**MNIST, **_bl(lam)} for lam in LAMBDAS},
        "mnist_shuffled-sgd": {**MNIST, **SHUFFLED, **SGD},
        "mnist_shuffled-bl0.0004": {**MNIST, **SHUFFLED, **_bl(4e-4)},
    },
    "fashion": {
        "fashion-sgd": {**FASHION, **SGD},
        "fashion-bl0.0004": {**FASHION, **_bl(4e-4)},
    },
    "mnist1d": {
        "mnist1d-sgd": {**MNIST1D, **SGD},
        "mnist1d-bl0.0004": {**MNIST1D, **_bl(4e-4)},
        "mnist1d-bl0.001": {**MNIST1D, **_bl(1e-3)},
    },
    "sfc": {
        "mnist-sgd": {**MNIST, **SGD},
        "mnist-adam": {**MNIST, **ADAM},
        "mnist-bl0.0004": {**MNIST, **_bl(4e-4)},
    },
    "fashion_sfc": {
        "fashion-sgd": {**FASHION, **SGD},
        "fashion-adam": {**FASHION, **ADAM},
        "fashion-bl0.0004": {**FASHION, **_bl(4e-4)},
    },
    "dfc": {"mnist-sgd": {**MNIST, **SGD}, "mnist-bl0.0004": {**MNIST, **_bl(4e-4)}},
    "long": {"mnist-sgd-30": {**MNIST, **SGD, "num_epochs": LONG},
             "mnist-bl0.001-30": {**MNIST, **_bl(1e-3), "num_epochs": LONG},
             "mnist-bl0.0004-30": {**MNIST, **_bl(4e-4), "num_epochs": LONG},
             "mnist_shuffled-bl0.0004-30": {**MNIST, **SHUFFLED, **_bl(4e-4), "num_epochs": LONG}},
    "conv1d": {"mnist1d-sgd": {**MNIST1D, **SGD}},
    "lcn": {"mnist-sgd": {**MNIST, **SGD}, "fashion-sgd": {**FASHION, **SGD}},
}
# (model, condition) pairs of the parts that do not train fc512 on each of their conditions
GRIDS = {
    "sfc": [("sfc", "mnist-sgd"), ("sfc", "mnist-adam"), ("sfc", "mnist-bl0.0004"),
            ("fc512", "mnist-adam"), ("cnn", "mnist-sgd")],
    "fashion_sfc": [("sfc", "fashion-sgd"), ("sfc", "fashion-adam"), ("sfc", "fashion-bl0.0004"),
                    ("fc512", "fashion-adam"), ("cnn", "fashion-sgd")],
    "dfc": [("dfc", "mnist-sgd"), ("dfc", "mnist-bl0.0004")],
    "conv1d": [("cnn1d", "mnist1d-sgd")],
    "lcn": [("lcn", "mnist-sgd"), ("lcn", "fashion-sgd")],
}
MODELS = {"fc512": {"model": "fc", "mlp_hidden": (512,)},
          "sfc": {"model": "s_fc", "fc_alpha": ALPHA},
          "dfc": {"model": "d_fc", "fc_alpha": 1},
          "cnn": {"model": "cnn"}, "lcn": {"model": "lcn"},
          "cnn1d": {"model": "cnn1d", "cnn_features": (25, 25, 25), "cnn_kernel": 5,
                    "cnn_pool": 2}}


def get_sweep(arg=None):
  quick = arg == "quick"
  keys = ["mnist"] if quick else (arg.split(",") if arg else list(PARTS))
  unknown = [k for k in keys if k not in PARTS]
  if unknown:
    raise ValueError(f"unknown parts {unknown}; choose from {list(PARTS)} or quick")
  conditions = {name: dict(o) for k in keys for name, o in PARTS[k].items()}
  pairs = [p for k in keys for p in GRIDS.get(k, [("fc512", c) for c in PARTS[k]])]
  grid = [{"model": m, "condition": c} for m, c in dict.fromkeys(pairs)]
  if quick:
    conditions = {k: conditions[k] for k in ("mnist-sgd", "mnist-bl0.0004",
                                             "mnist_shuffled-bl0.0004")}
    grid = [{"model": "fc512", "condition": c} for c in conditions]
  # Each cell's rate chosen on validation (seed 0) from its optimizer's candidates, but the
  # calibration point's 30-epoch cells keep its rate 0.05, and a shuffled cell takes the rate
  # of its twin on original pixels (the same problem from a permuted init: tests/test_locality.py).
  follow = {name: name.replace("_shuffled", "") for name, o in conditions.items()
            if o.get("pixel_permutation") == "train_test"}
  rates = {name: ADAM_RATES if o.get("optimizer") == "adam" else SGD_RATES
           for name, o in conditions.items() if o.get("num_epochs") != LONG and name not in follow}
  common = {"parallelism": "single", "batch_size": 128, "learning_rate": 0.05, "momentum": 0.9,
            "lr_schedule": "constant", "num_epochs": EPOCHS, "validation_size": 5000,
            "lasso_beta": 50.0, "eval_every_epochs": 1, "eval_train": False,
            "log_every_steps": 430, "checkpoint_every_steps": 5000, "permutation_seed": 0,
            "transform_seed": 0}
  if quick:
    common.update(num_train_steps=60, eval_every_epochs=0, log_every_steps=20)
  return {
      "base": "configs.mnist_mlp",
      "common": common,
      "models": MODELS,
      "conditions": conditions,
      "grid": grid,
      "seeds": [0] if quick else [0, 1, 2, 3, 4],
      **({"lr_search": {"learning_rates": rates, "seed": 0, "extend": 1, "follow": follow}}
         if rates and not quick else {}),
      "resources": {"num_cpus": 1},
  }
