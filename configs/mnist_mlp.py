"""The seed MLP on MNIST: Flatten -> Dense 128 relu -> Dense 10 (101,770 params)."""
from configs import common


def get_config(arg=None):
  c = common.base_config()
  c.model = "mlp"
  c.num_epochs = 10
  c.lr_schedule = "cosine"
  return common.apply_variants(c, arg)
