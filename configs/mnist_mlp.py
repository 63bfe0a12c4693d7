"""The seed MLP on MNIST: Flatten -> Dense 128 relu -> Dense 10 (101,770 params)."""
from configs import common


def get_config(arg=None):
  c = common.base_config()
  c.model = "mlp"
  c.num_epochs = 20  # cheap: ~17 s on 2 CPU cores; 10 epochs stop at ~97.3%
  c.lr_schedule = "cosine"
  return common.apply_variants(c, arg)
