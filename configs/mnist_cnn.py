"""The seed CNN on MNIST: Conv32 3x3 -> pool -> Conv64 3x3 -> pool -> Dense 10 (34,826 params).

  bash scripts/train.sh      # = python -m research.main --config=configs/mnist_cnn.py --workdir=runs/mnist_cnn

10 epochs of Adam at 1e-3 with a cosine schedule, batch 128: test accuracy 99.00% (seed 0,
results.json of that command on a 2-core AMD EPYC, avx512f; bit-identical reruns on one CPU).
"""
from configs import common


def get_config(arg=None):
  c = common.base_config()
  c.model = "cnn"
  c.num_epochs = 10
  c.lr_schedule = "cosine"
  return common.apply_variants(c, arg)
