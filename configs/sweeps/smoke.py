"""A smoke test of a sweep set-up (laptop, GPU server, Ray cluster): 4 tiny MLP runs (20 steps
of batch 32, original and shuffled pixels, 2 seeds) that finish in seconds once compiled.

  python -m research.sweeps --sweep=configs/sweeps/smoke.py --runs_dir=runs/smoke
  ...smoke.py:broken  adds two runs that fail by their own error (an unknown model name): the
                      others finish, the table names the failures, the sweep exits 1
"""


def get_sweep(arg=None):
  conditions = {"original": {}, "shuffled": {"pixel_permutation": "train_test"}}
  if arg == "broken":
    conditions["broken"] = {"model": "no_such_model"}
  return {
      "base": "configs.mnist_mlp",
      "common": {"parallelism": "single", "num_train_steps": 20, "batch_size": 32,
                 "steps_per_call": 10, "log_every_steps": 10, "checkpoint_every_steps": 10,
                 "eval_every_epochs": 0, "eval_batch_size": 2000, "eval_train": False},
      "models": {"mlp": {"model": "mlp"}},
      "conditions": conditions,
      "seeds": [0, 1],
  }
