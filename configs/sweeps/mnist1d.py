"""MNIST-1D with its paper's models and recipe (configs/mnist1d.py), on the default dataset and
on a shuffle of the 40 positions drawn per seed (train and test, retrained): MLP, 1-D CNN and
GRU (flax's cell, and PyTorch's: gru_torch) x 5 seeds.

The rate is the paper's (Adam 1e-2, constant), not chosen on a validation split: the study asks
whether this project reproduces the paper's table (MLP ~68%, CNN ~94%, GRU ~91%) within 3 pp.

  python -m research.studies mnist1d --output_dir docs/studies/mnist1d --runs_dir runs/mnist1d \
      --executor=inline
  --sweep=configs/sweeps/mnist1d.py:quick: a short version for tests (2 seeds, 200 steps)
"""
from configs import mnist1d

CONDITIONS = {
    "MNIST-1D": {},
    "MNIST-1D shuffled": {"pixel_permutation": "train_test"},  # permutation_seed = the seed
}


def get_sweep(arg=None):
  if arg not in (None, "", "quick"):
    raise ValueError(f"unknown argument {arg!r}; choose quick")
  quick = arg == "quick"
  common = {"eval_train": True}
  if quick:
    common.update(num_train_steps=200, eval_every_epochs=1, log_every_steps=40)
  return {
      "base": "configs.mnist1d",
      "common": common,
      "models": {name: dict(fields) for name, fields in mnist1d.MODELS.items()},
      "conditions": CONDITIONS,
      "seeds": [0, 1] if quick else [0, 1, 2, 3, 4],
      "seeded_draws": {"MNIST-1D shuffled": ["permutation_seed"]},
      "resources": {"num_cpus": 1},
  }
