"""MNIST-1D (Greydanus 2020, "Scaling down deep learning") with its paper's recipe.

  python -m research.main --config=configs/mnist1d.py:mlp --workdir=runs/mnist1d_mlp
  python -m research.main --config=configs/mnist1d.py:cnn --workdir=runs/mnist1d_cnn
  python -m research.main --config=configs/mnist1d.py:gru --workdir=runs/mnist1d_gru
  python -m research.main --config=configs/mnist1d.py:gru_torch --workdir=runs/mnist1d_gru_torch

The recipe of the MNIST-1D repository (greydanus/mnist1d, notebooks/train.py and models.py;
read, not run, here): the default dataset (4,000 train / 1,000 test sequences of length 40,
seed 42), Adam at a constant 1e-2, no weight decay, batch 100, 6,000 steps (150 epochs), the
test split scored every 250 steps; the whole training set is trained on (no validation split:
the rate is the paper's, not chosen here). Its table: MLP ~68%, CNN ~94%, GRU ~91% test accuracy.

Models, the repository's (notebooks/models.py):
  :mlp  Dense 100 -> Dense 100 -> Dense 10, relu, the second layer's output added to its input
        (h + relu(W2 h)): 15,210 parameters.
  :cnn  cnn1d: three Conv1D of 25 channels, kernels 5, 3, 3, stride 2, padding 1, no pooling
        (40 -> 19 -> 10 -> 5), then Dense 125 -> 10: 5,210 parameters.
  :gru  the paper's GRUBase: a GRU of 6 hidden units read both ways along the 40 positions,
        every step's outputs concatenated (480), then Dense 10; flax's GRUCell (4 bias
        vectors a cell where PyTorch's GRU has 6: 5,110 parameters) and initializers.
  :gru_torch  the same with PyTorch's cell and initializers (gru_layout "torch": 6 bias
        vectors a cell, every weight and bias uniform in ±1/√fan): 5,134 parameters, the
        paper's model as it ran.
Other differences: flax's initializers (lecun normal) instead of PyTorch's for the MLP and CNN,
and every epoch reshuffled (the paper cycles through the training set in a fixed order).
Other variants (debug, runlocal, gpu, tpu) combine with these: `:cnn,debug`.
"""
from configs import common

STEPS = 6000
MODELS = {
    "mlp": {"model": "mlp", "mlp_hidden": (100, 100), "mlp_residual": True},
    "cnn": {"model": "cnn1d", "cnn_features": (25, 25, 25), "cnn1d_kernels": (5, 3, 3),
            "cnn1d_stride": 2, "cnn1d_padding": 1, "cnn_pool": 1},
    "gru": {"model": "gru", "rnn_hidden": 6, "rnn_bidirectional": True},
    "gru_torch": {"model": "gru", "rnn_hidden": 6, "rnn_bidirectional": True,
                  "gru_layout": "torch"},
}


def get_config(arg=None):
  names = [a for a in (arg or "").split(",") if a]
  models = [a for a in names if a in MODELS]
  if len(models) > 1:
    raise ValueError(f"pick one model variant of {tuple(MODELS)}; got {models}")
  c = common.base_config()
  c.dataset = "mnist1d"
  c.optimizer = "adam"
  c.learning_rate = 1e-2
  c.lr_schedule = "constant"
  c.weight_decay = 0.0
  c.batch_size = 100
  c.num_train_steps = STEPS
  c.eval_every_epochs = 5  # 200 steps (the paper: every 250)
  c.log_every_steps = 200
  c.checkpoint_every_steps = 2000
  c.parallelism = "single"
  for key, value in MODELS[models[0] if models else "cnn"].items():
    c[key] = value
  return common.apply_variants(c, ",".join(a for a in names if a not in MODELS))
