"""Defaults shared by every experiment config, and the `:variant` arguments.

A config file calls `base_config()`, sets its own fields, then `apply_variants(config, arg)`,
so `--config=configs/mnist_cnn.py:debug` or `:tpu,runlocal` work for every experiment.
"""
import ml_collections

VARIANTS = ("debug", "runlocal", "gpu", "tpu")


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Model (research/models.py looks it up by name).
  c.model = "cnn"
  c.mlp_hidden = (128,)
  c.cnn_features = (32, 64)
  c.cnn_kernel = 3
  c.cnn_pool = 2
  c.cnn_dense = ()
  c.pool_impl = "reshape"  # "reduce_window" is nn.max_pool: same values, slower backward on CPU
  c.half_precision = False
  # How conv layers compute (research/cpu/convdot.py, models.conv_impl): 'auto' (xla on CPU,
  # nn.Conv elsewhere), 'nn.Conv', 'xla', 'im2col', 'im2col_bf16'. Same parameters and math;
  # im2col_bf16 rounds the dot operands to bfloat16. results.json records the one used.
  c.conv_impl = "auto"

  # Data (research/data.py).
  c.dataset = "mnist"
  c.data_dir = ""  # '' -> $TFDS_DATA_DIR or ~/tensorflow_datasets

  # Optimisation.
  c.optimizer = "adam"
  c.learning_rate = 1e-3
  c.lr_schedule = "constant"  # or "cosine"
  c.momentum = 0.9  # sgd only
  c.batch_size = 128  # global, over all devices and hosts
  c.eval_batch_size = 1000
  c.num_epochs = 5
  c.num_train_steps = -1  # > 0 overrides num_epochs
  c.seed = 0
  # Start from another run's params instead of random ones (optimizer state fresh): the workdir
  # of a trained run and its checkpoint step (-1: the newest; 0: that run's initial params). A
  # `fcn` run from a `cnn` or `lcn` run gets its exact eFCN (research/equivalence.cnn_to_fcn).
  c.init_from = ""
  c.init_from_step = -1

  # Execution.
  c.parallelism = "jit"  # "jit" (mesh over all devices), "pmap", or "single" (one device)
  c.steps_per_call = 10  # train steps per compiled call (on CPU at most 10: steps.chunk_plan)
  c.log_every_steps = 500  # a multiple of steps_per_call keeps chunks full; ~10 lines a CNN run
  c.eval_every_epochs = 1
  c.eval_train = True  # score the whole training split at the end (results.json train_accuracy)
  c.debug = False  # NaN checks inside the step, compile logging
  c.stall_timeout = 900  # s a multi-process run may wait for a stalled peer before exiting (0: forever)
  c.xla_cpu_ynnpack = False  # XLA:CPU's YNNPACK conv kernels; off: Eigen's, 1.4-2.6x faster steps here
  c.profile_steps = 0  # > 0: a jax.profiler trace of this many train steps after the first
  #                      (compiling) chunk, in WORKDIR/tensorboard (TensorBoard's profile plugin)

  # Checkpoints (orbax, WORKDIR/checkpoints).
  c.checkpoint_every_steps = 1000
  c.max_checkpoints_to_keep = 2

  # --- Experiment transforms (research/transforms.py) ---
  # Applied deterministically to the dataset before training; the defaults change nothing.
  c.pixel_permutation = "none"  # "train_test": one fixed pixel shuffle; "test": test images only
  c.permutation_seed = 0  # the fixed permutation's own seed (independent of c.seed)
  c.random_labels = 0.0  # fraction of training labels replaced by uniform random classes
  c.random_pixels = False  # a different pixel permutation for every image
  c.gaussian_images = False  # images replaced by Gaussian noise with the data's mean and std
  c.canvas_size = 0  # > 0: digits pasted at random positions of a larger black canvas
  c.clutter_pieces = 0  # > 0 (with canvas_size): cluttered canvas, that many crops of other digits
  c.clutter_size = 8  # side of each clutter crop (px)
  c.validation_size = 0  # > 0: hold out this many training examples as a validation split
  c.test_shift = (0, 0)  # (dy, dx) fixed shift of the test images, zero filled
  c.train_subset = 0  # > 0: train on a fixed random subset of this many examples
  c.transform_seed = 0  # seed of the random labels/pixels/noise/canvas/subset choices
  c.augment_shift = 0  # > 0: random shifts in [-k, k] px of every training batch (on device)
  return c


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
