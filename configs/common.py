"""Every config field once: its default, a one-line description and its valid values (`FIELDS`);
and the `:variant` arguments every experiment config takes.

A config file calls `base_config()`, sets its own fields, then `apply_variants(config, arg)`, so
`--config=configs/mnist_cnn.py:debug` or `:tpu,runlocal` work for every experiment.
`python -m research.main --show_config` prints this table; `check(config)` enforces it before a
run starts. A field added later must default to what runs made without it did: a saved
config.json that lacks it is read with that default (resuming, evaluating, records).
"""
import dataclasses
import numbers
from typing import Any

import ml_collections

VARIANTS = ("debug", "runlocal", "gpu", "tpu")
CONV_IMPLS = ("auto", "nn.Conv", "xla", "im2col", "im2col_bf16", "hybrid", "fused")


@dataclasses.dataclass(frozen=True)
class Field:
  default: Any
  help: str
  valid: Any = None  # a tuple of choices, or one of the rule names in `_RULES`
  # Whether a resumed run may change it (it does not change the numbers: speed, logging, I/O).
  resumable: bool = False


_RULES = {
    "positive": (lambda v: isinstance(v, numbers.Real) and v > 0, "> 0"),
    "nonnegative": (lambda v: isinstance(v, numbers.Real) and v >= 0, ">= 0"),
    "fraction": (lambda v: isinstance(v, numbers.Real) and 0 <= v <= 1, "in [0, 1]"),
    "momentum": (lambda v: isinstance(v, numbers.Real) and 0 <= v < 1, "in [0, 1)"),
    "steps": (lambda v: isinstance(v, int) and (v == -1 or v > 0), "-1 (use num_epochs) or > 0"),
    "widths": (lambda v: isinstance(v, (tuple, list)) and all(
        isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in v),
               "a tuple of positive ints, e.g. (32, 64)"),
    "shift": (lambda v: isinstance(v, (tuple, list)) and len(v) == 2 and all(
        isinstance(s, int) for s in v), "(dy, dx) ints"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an int"),
    "nonnegative_int": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                        "an int >= 0"),
    "positive_int": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
                     "an int > 0"),
    "bool": (lambda v: isinstance(v, bool), "True or False"),
    "text": (lambda v: isinstance(v, str), "a string"),
}

FIELDS = {
    # Model (research/models.py looks it up by name).
    "model": Field("cnn", "a model name in research/models.py MODELS", "text"),
    "mlp_hidden": Field((128,), "hidden widths of the MLP", "widths"),
    "cnn_features": Field((32, 64), "channels of each conv (or local/dense) block", "widths"),
    "cnn_kernel": Field(3, "conv kernel side (px)", "positive_int"),
    "cnn_pool": Field(2, "max pool window side after each block (1: none)", "positive_int"),
    "cnn_dense": Field((), "Dense widths between the last block and the classifier", "widths"),
    "pool_impl": Field("reshape", "max pool as reshape + max, or nn.max_pool (same values)",
                       ("reshape", "reduce_window")),
    "half_precision": Field(False, "bfloat16 compute (params and optimizer stay float32)", "bool"),
    "conv_impl": Field("auto", "how conv layers compute (same parameters and math; "
                       "docs/performance.md); auto: per machine", CONV_IMPLS),
    # Data (research/data.py).
    "dataset": Field("mnist", "a TFDS image dataset name, or breast_cancer / mnist1d", "text"),
    "data_dir": Field("", "TFDS data dir ('': $TFDS_DATA_DIR or ~/tensorflow_datasets)", "text",
                      resumable=True),
    # Optimisation.
    "optimizer": Field("adam", "optimizer (beta_lasso: Neyshabur 2020, research/optimizers.py; "
                       "uses momentum)", ("adam", "sgd", "beta_lasso")),
    "lasso_lambda": Field(1e-4, "beta_lasso's L1 coefficient λ", "nonnegative"),
    "lasso_beta": Field(50.0, "beta_lasso's threshold factor β: weights with |w| < β·λ are "
                        "zeroed each step", "nonnegative"),
    "mlp_residual": Field(False, "a hidden layer as wide as its input adds its output to it "
                          "(MNIST-1D's MLP)", "bool"),
    "cnn1d_kernels": Field((), "cnn1d: each conv's kernel (empty: cnn_kernel for all)", "widths"),
    "cnn1d_stride": Field(1, "cnn1d: every conv's stride", "positive_int"),
    "cnn1d_padding": Field(0, "cnn1d: zeros at both ends of every conv's input (0: VALID)",
                           "nonnegative_int"),
    "rnn_hidden": Field(6, "hidden units of the gru model's cell", "positive_int"),
    "rnn_bidirectional": Field(True, "the gru model reads its sequence both ways", "bool"),
    "gru_layout": Field("flax", "the gru model's cell and initializers: flax's GRUCell, or "
                        "PyTorch's GRU and Linear (6 bias vectors a cell, uniform inits)",
                        ("flax", "torch")),
    "fc_alpha": Field(4, "width factor α of the paper's fully connected nets s_fc, d_fc "
                      "(Neyshabur 2020)", "positive_int"),
    "learning_rate": Field(1e-3, "peak learning rate", "positive"),
    "lr_schedule": Field("constant", "learning rate schedule", ("constant", "cosine")),
    "momentum": Field(0.9, "SGD and beta_lasso momentum (0: none)", "momentum"),
    "batch_size": Field(128, "global batch, over all devices and hosts", "positive_int"),
    "grad_accum_steps": Field(1, "micro-batches an optimizer step's batch is split into (their "
                              "gradients averaged): a batch larger than fits at once",
                              "positive_int"),
    "warmup_steps": Field(0, "steps of linear learning-rate warmup from 0 (then lr_schedule)",
                          "nonnegative_int"),
    "weight_decay": Field(0.0, "decoupled weight decay (adam: AdamW); 0: none", "nonnegative"),
    "eval_batch_size": Field(1000, "evaluation batch", "positive_int", resumable=True),
    "num_epochs": Field(5, "epochs (when num_train_steps is -1)", "positive_int"),
    "num_train_steps": Field(-1, "train steps; overrides num_epochs", "steps"),
    "seed": Field(0, "initialisation, data order and augmentation seed", "int"),
    "init_from": Field("", "start from this run's params (a workdir; a fcn from a cnn/lcn run "
                       "gets its exact eFCN); optimizer state fresh", "text"),
    "init_from_step": Field(-1, "init_from's checkpoint step (-1: newest; 0: its initial params)",
                            "int"),
    # Execution.
    "parallelism": Field("jit", "jit (a mesh over all devices), pmap, or single (one device)",
                         ("jit", "pmap", "single"), resumable=True),
    "steps_per_call": Field(10, "train steps per compiled call (CPU: at most 10 a program)",
                            "positive_int", resumable=True),
    "log_every_steps": Field(500, "log train metrics every this many steps", "positive_int",
                             resumable=True),
    "eval_every_epochs": Field(1, "test (and validation) evaluation every this many epochs "
                               "(0: only at the end)", "nonnegative_int", resumable=True),
    "eval_train": Field(True, "score the whole training split at the end (train_accuracy)",
                        "bool", resumable=True),
    "debug": Field(False, "NaN checks inside the step, compiles logged", "bool", resumable=True),
    "stall_timeout": Field(900, "seconds a multi-process run waits for a stalled peer (0: "
                           "forever)", "nonnegative", resumable=True),
    "xla_cpu_ynnpack": Field(False, "XLA:CPU's YNNPACK conv kernels instead of Eigen's", "bool",
                             resumable=True),
    "wandb_project": Field("", "also log the run to this Weights & Biases project ('': off; "
                           "process 0; pip install -e '.[wandb]')", "text", resumable=True),
    "profile_steps": Field(0, "> 0: a jax.profiler trace of this many steps after the first "
                           "call, in WORKDIR/tensorboard", "nonnegative_int", resumable=True),
    # Checkpoints (orbax, WORKDIR/checkpoints).
    "checkpoint_every_steps": Field(1000, "checkpoint every this many steps (and at the end)",
                                    "positive_int", resumable=True),
    "max_checkpoints_to_keep": Field(2, "newest checkpoints kept", "positive_int",
                                     resumable=True),
    # Experiment transforms (research/transforms.py), applied to the dataset before training;
    # the defaults change nothing.
    "pixel_permutation": Field("none", "one fixed pixel shuffle of train and test, or of the "
                               "test images only", ("none", "train_test", "test")),
    "permutation_seed": Field(0, "seed of the fixed pixel permutation", "int"),
    "random_labels": Field(0.0, "fraction of training labels replaced by random classes",
                           "fraction"),
    "random_pixels": Field(False, "a different pixel permutation for every image", "bool"),
    "gaussian_images": Field(False, "images replaced by Gaussian noise of the data's mean and "
                             "std", "bool"),
    "canvas_size": Field(0, "> 0: digits pasted at random positions of a canvas this big",
                         "nonnegative_int"),
    "canvas_position": Field("random", "where each digit goes on the canvas: a random "
                             "position, or its centre", ("random", "centre")),
    "clutter_pieces": Field(0, "> 0 (with canvas_size): that many crops of other digits as "
                            "clutter", "nonnegative_int"),
    "clutter_size": Field(8, "side of each clutter crop (px)", "positive_int"),
    "validation_size": Field(0, "> 0: hold out this many training examples as a validation "
                             "split", "nonnegative_int"),
    "test_shift": Field((0, 0), "fixed (dy, dx) shift of the test images, zero filled", "shift"),
    "train_subset": Field(0, "> 0: train on a fixed random subset of this many examples",
                          "nonnegative_int"),
    "train_subset_balanced": Field(False, "with train_subset: as many examples of every class "
                                   "(a larger subset holds every smaller one)", "bool"),
    "transform_seed": Field(0, "seed of the random labels/pixels/noise/canvas/subset draws", "int"),
    "augment_shift": Field(0, "> 0: random shifts in [-k, k] px of every training batch",
                           "nonnegative_int"),
}


def base_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({name: f.default for name, f in FIELDS.items()})


def valid_values(field: Field) -> str:
  if isinstance(field.valid, tuple):
    return "one of " + ", ".join(map(str, field.valid))
  return _RULES[field.valid][1] if field.valid else ""


def check(config) -> None:
  """Raises ValueError naming the first field whose value is not valid (unknown fields too)."""
  unknown = sorted(set(config.keys()) - set(FIELDS))
  if unknown:
    raise ValueError(f"unknown config field {unknown[0]!r} (--show_config lists them)")
  for name, field in FIELDS.items():
    value = config[name]
    ok = (value in field.valid if isinstance(field.valid, tuple)
          else _RULES[field.valid][0](value) if field.valid else True)
    if not ok:
      raise ValueError(f"{name} must be {valid_values(field)}; got {value!r}")


def describe(config=None) -> str:
  """Every field: `name = value  # description [valid values]`, in FIELDS order."""
  config = config if config is not None else base_config()
  width = max(map(len, FIELDS))
  lines = []
  for name, field in FIELDS.items():
    value = config.get(name, field.default)
    value = tuple(value) if isinstance(value, list) else value
    lines.append(f"{name:<{width}} = {value!r:<14} # {field.help} [{valid_values(field)}]")
  return "\n".join(lines)


def apply_variants(c: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
  """Applies comma-separated variants: debug, runlocal, gpu, tpu."""
  for name in filter(None, (arg or "").split(",")):
    if name not in VARIANTS:
      raise ValueError(f"unknown config variant {name!r}; choose from {VARIANTS}")
    if name == "debug":  # a few steps, every one checked for NaNs, compiles logged
      c.debug = True
      c.num_train_steps = 20
      c.log_every_steps = 1
      c.steps_per_call = 1
      c.checkpoint_every_steps = 10
    elif name == "runlocal":  # a short real run for a laptop
      c.num_train_steps = 200
      c.checkpoint_every_steps = 100
    elif name == "gpu":  # one GPU: bigger batches, fewer dispatches
      c.batch_size = 512
      c.learning_rate = 2e-3
      c.steps_per_call = 117
      c.eval_batch_size = 10000
    elif name == "tpu":  # a TPU slice: global batch split over many chips, bf16 compute
      c.batch_size = 1024
      c.learning_rate = 3e-3
      c.half_precision = True
      c.eval_batch_size = 10000
  return c
