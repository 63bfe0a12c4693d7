"""What a run is before it trains: the model and its compiled program (Program), the data on
the devices and the initial state (Experiment), the data order, the checks of a config and of a
workdir, and a finished run read back (load_model). research/train.py runs the loop.

Data order: epoch e visits the training set in `np.random.default_rng([seed, e])` order and
step s takes batch s % steps_per_epoch of epoch s // steps_per_epoch (the ragged tail of an
epoch is skipped), so a run resumed at any step sees exactly the batches it would have seen.
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import common
from research import UserError, checkpoint, data, equivalence, models, parallel, steps, transforms


def learning_rate(config, total_steps: int):
  """The learning rate (a float, or an optax schedule of the step): `lr_schedule` over the run,
  after a linear warmup from 0 over `warmup_steps` when that is > 0."""
  peak, warmup = config.learning_rate, config.warmup_steps
  if config.lr_schedule == "constant":
    main = peak
  elif config.lr_schedule == "cosine":
    main = optax.cosine_decay_schedule(peak, max(total_steps - warmup, 1))
  else:
    raise UserError(f"unknown lr_schedule {config.lr_schedule!r}; choose 'constant' or 'cosine'")
  if warmup <= 0:
    return main
  main = optax.constant_schedule(peak) if isinstance(main, float) else main
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], [warmup])


def create_optimizer(config, total_steps: int) -> optax.GradientTransformation:
  """The config's optimizer; with `weight_decay` > 0, decoupled weight decay (AdamW, or SGD
  with the decayed weights added to the update)."""
  lr, decay = learning_rate(config, total_steps), config.weight_decay
  if config.optimizer == "adam":
    return optax.adamw(lr, weight_decay=decay) if decay > 0 else optax.adam(lr)
  if config.optimizer == "sgd":
    sgd = optax.sgd(lr, momentum=config.momentum or None)
    return optax.chain(optax.add_decayed_weights(decay), sgd) if decay > 0 else sgd
  if config.optimizer == "beta_lasso":  # Neyshabur 2020: L1 step + threshold on the kernels
    from research import optimizers
    if decay > 0:
      raise UserError("beta_lasso has its own L1 penalty (lasso_lambda); set weight_decay=0")
    return optimizers.beta_lasso(lr, config.lasso_lambda, config.lasso_beta,
                                 momentum=config.momentum)
  raise UserError(f"unknown optimizer {config.optimizer!r}; choose 'adam', 'sgd' or "
                  "'beta_lasso'")


def _init_state(config, model, image_shape, total_steps: int) -> steps.TrainState:
  key = jax.random.PRNGKey(config.seed)
  init_key, rng = jax.random.split(key)
  params = jax.jit(model.init)(init_key, jnp.zeros((1,) + tuple(image_shape), jnp.float32))
  return steps.TrainState.create(apply_fn=model.apply, params=params["params"],
                                 tx=create_optimizer(config, total_steps), rng=rng)


def create_train_state(config, model, image_shape, total_steps: int) -> steps.TrainState:
  """The initial state, as host (numpy) arrays, for `config.seed`; with `config.init_from`,
  the params come from that run (`initial_params_from`) and the optimizer state is fresh."""
  state = jax.tree.map(np.asarray, _init_state(config, model, image_shape, total_steps))
  if not config.get("init_from"):
    return state
  params = initial_params_from(config, model, image_shape, state.params)
  return state.replace(params=params, opt_state=jax.tree.map(
      np.asarray, create_optimizer(config, total_steps).init(params)))


def initial_params_from(config, model, image_shape, template) -> dict:
  """The params of run `config.init_from` at checkpoint `config.init_from_step`, for `model`.

  Same model: its params as they are. A `fcn` model from a `cnn` or `lcn` run: the run's CNN
  mapped to its exact eFCN (equivalence.cnn_to_fcn), so training starts from the same function.
  """
  step = None if config.init_from_step < 0 else int(config.init_from_step)
  source, params, source_config = load_model(config.init_from, step)
  if source_config.model != config.model:
    if not (config.model == "fcn" and source_config.model in ("cnn", "lcn")):
      raise UserError(f"init_from: cannot start a {config.model!r} from a "
                      f"{source_config.model!r} run ({config.init_from}); a 'fcn' starts from "
                      "a 'cnn' or 'lcn' run, any other model from a run of the same model")
    _, params = equivalence.cnn_to_fcn(source, params, image_shape)
  want, got = jax.tree.map(np.shape, template), jax.tree.map(np.shape, params)
  if want != got:
    raise UserError(f"init_from: the params of {config.init_from} do not fit this model "
                    f"(widths or image shape differ): {got} vs {want}")
  return jax.tree.map(lambda p, t: np.asarray(p, np.asarray(t).dtype), params, template)


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int32)


def batch_indices(seed: int, start: int, count: int, steps_per_epoch: int, n: int,
                  batch_size: int) -> np.ndarray:
  """Example indices [count, batch_size] of the global batches of steps start..start+count-1."""
  out = np.empty((count, batch_size), np.int32)
  order, order_epoch = None, None
  for i, s in enumerate(range(start, start + count)):
    epoch, pos = divmod(s, steps_per_epoch)
    if epoch != order_epoch:
      order, order_epoch = epoch_order(seed, epoch, n), epoch
    out[i] = order[pos * batch_size:(pos + 1) * batch_size]
  return out


def eval_indices(n: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Every example once, padded to whole batches: indices and a 0/1 mask, [nb, batch_size]."""
  nb = -(-n // batch_size)
  idx = np.zeros(nb * batch_size, np.int32)
  idx[:n] = np.arange(n)
  mask = (np.arange(nb * batch_size) < n).astype(np.int32)
  return idx.reshape(nb, batch_size), mask.reshape(nb, batch_size)


def validate(config, num_devices: int, num_processes: int) -> None:
  """Refuses, before any data is loaded, a config that cannot run on these devices."""
  if config.parallelism not in parallel.FLAVOURS:
    raise UserError(f"unknown parallelism {config.parallelism!r}; choose 'jit', 'pmap' or 'single'")
  if config.batch_size <= 0 or config.batch_size % num_devices:
    raise UserError(f"batch_size {config.batch_size} must be a positive multiple of the "
                    f"{num_devices} devices")
  if config.grad_accum_steps > 1 and config.batch_size % (num_devices * config.grad_accum_steps):
    raise UserError(f"batch_size {config.batch_size} must split into grad_accum_steps="
                    f"{config.grad_accum_steps} equal micro-batches on each of the {num_devices} "
                    "devices")
  if num_devices % num_processes:
    raise UserError(f"{num_devices} devices do not split evenly over {num_processes} processes")
  for field in ("steps_per_call", "log_every_steps", "checkpoint_every_steps", "eval_batch_size"):
    if config[field] <= 0:
      raise UserError(f"{field} must be positive, got {config[field]}")
  models.check_config(config)
  try:
    common.check(config)  # every field's valid values (configs/common.py)
  except ValueError as e:
    raise UserError(str(e)) from None
  if config.num_train_steps == -1 and config.num_epochs <= 0:
    raise UserError(f"num_epochs must be > 0 when num_train_steps is -1; got {config.num_epochs}")
  if config.get("init_from") and not os.path.isfile(os.path.join(config.init_from, "config.json")):
    raise UserError(f"init_from {config.init_from} is not a run directory (no config.json)")


def prepare_workdir(workdir: str) -> tuple[str, bool]:
  """(absolute workdir, whether this call created it), after checking that it is writable."""
  workdir = os.path.abspath(workdir)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UserError(f"workdir {workdir} exists and is not a directory")
  created = not os.path.exists(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test.{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise UserError(f"workdir {workdir} is not writable: {e.strerror or e}") from None
  return workdir, created


def read_config(workdir: str):
  """The ConfigDict a run was made with (WORKDIR/config.json); a field the file lacks (added to
  configs/common.py after the run) takes its default, which is what the run ran with."""
  import ml_collections
  path = os.path.join(os.path.abspath(workdir), "config.json")
  try:
    with open(path) as f:
      saved = json.load(f)
  except FileNotFoundError:
    raise UserError(f"{workdir} is not a run directory ({path} is missing)") from None
  except (OSError, ValueError) as e:
    raise UserError(f"cannot read {path}: {e}") from None
  defaults = {name: f.default for name, f in common.FIELDS.items()}
  return ml_collections.ConfigDict({**defaults, **saved})


def check_compatible(config, workdir: str) -> None:
  """Refuses a workdir whose saved config would train something else (nothing is written)."""
  if not os.path.exists(os.path.join(workdir, "config.json")):
    return
  saved = json.loads(read_config(workdir).to_json_best_effort())
  current = json.loads(config.to_json_best_effort())
  differing = sorted(k for k in set(saved) | set(current)
                     if not (k in common.FIELDS and common.FIELDS[k].resumable)
                     and saved.get(k) != current.get(k))
  if differing:
    detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in differing[:6])
    raise UserError(f"workdir {workdir} holds a run with a different config ({detail}); "
                    "use a new --workdir (WORKDIR= for scripts/train.sh) or the same config")


class Program:
  """What a run compiles, from the config and the dataset's shapes; no devices, no data on them.

  Experiment runs it; research/tpu/preflight.py compiles the same program for a TPU topology.
  `platform` ('cpu', 'gpu', 'tpu') picks how a chunk of steps is compiled (steps.chunk_plan).
  """

  def __init__(self, config, ds: data.Dataset, platform: str, num_devices: int):
    self.config = config
    self.image_shape = ds.image_shape
    models.check_input(config, ds.image_shape)
    # The conv block for this machine, chosen once; results.json records its name (for models
    # without convolutions: what a CNN would have used).
    self.block = models.conv_block(config, platform, num_devices)
    self.model = models.create_model(config, ds.num_classes, self.block)
    self.n_train = len(ds.train_labels)
    self.steps_per_epoch = self.n_train // config.batch_size
    if self.steps_per_epoch == 0:
      raise UserError(f"batch_size {config.batch_size} exceeds the {self.n_train} training examples")
    self.total_steps = (config.num_train_steps if config.num_train_steps > 0
                        else config.num_epochs * self.steps_per_epoch)
    self.steps_per_call, self.rolled = steps.chunk_plan(platform, config.steps_per_call)
    train_step = steps.make_train_step(transforms.make_augment(config),
                                       config.grad_accum_steps)
    self.train_chunk = steps.make_train_chunk(train_step, self.steps_per_call, self.rolled)
    self.eval_step = steps.make_eval_step(self.model.apply)
    self.eval_batch = -(-config.eval_batch_size // num_devices) * num_devices
    # params -> {name: value} logged at each evaluation (the eFCN's subspace fractions), or None.
    self.weight_metrics = models.weight_metrics_fn(self.model, self.image_shape)

  def initial_state(self) -> steps.TrainState:
    """Host (numpy) arrays."""
    return create_train_state(self.config, self.model, self.image_shape, self.total_steps)

  def abstract_state(self) -> steps.TrainState:
    """Shapes and dtypes only (nothing is computed or allocated)."""
    return jax.eval_shape(lambda: _init_state(self.config, self.model, self.image_shape,
                                              self.total_steps))

  def make_runner(self, devices=None):
    return parallel.make_runner(self.config.parallelism, self.train_chunk, self.eval_step,
                                ynnpack=self.config.xla_cpu_ynnpack, devices=devices,
                                ynnpack_dots=self.block.name == "im2col_bf16")


class Experiment:
  """Everything a run needs, built once: data on the devices, model, initial state, runner."""

  def __init__(self, config, workdir: str):
    self.config = config
    self.workdir = workdir
    if config.debug:
      jax.config.update("jax_debug_nans", True)
      jax.config.update("jax_log_compiles", True)
    num_devices = 1 if config.parallelism == "single" else jax.device_count()
    validate(config, num_devices, jax.process_count())
    ds = data.load_dataset(config)
    ds = transforms.apply(config, ds)
    self.dataset = ds
    self.program = Program(config, ds, jax.default_backend(), num_devices)
    self.initial_state = self.program.initial_state()
    self.num_params = models.count_params(self.initial_state.params)
    self.runner = self.program.make_runner()
    self.train_data = self.runner.put_replicated((ds.train_images, ds.train_labels))
    self.test_data = self.runner.put_replicated((ds.test_images, ds.test_labels))
    self.val_data = None if ds.val_labels is None else self.runner.put_replicated(
        (ds.val_images, ds.val_labels))

  def evaluate(self, params, split: str = "test") -> dict:
    """Loss and accuracy of `params` (on the devices) over every example of `split` ('test',
    'train' or 'validation')."""
    data_, labels = {"test": (self.test_data, self.dataset.test_labels),
                     "train": (self.train_data, self.dataset.train_labels),
                     "validation": (self.val_data, self.dataset.val_labels)}[split]
    n = len(labels)
    totals = self.runner.get(self.runner.evaluate(params, data_, *eval_indices(n, self.program.eval_batch)))
    count = int(totals["count"])
    return {"accuracy": int(totals["correct"]) / count, "loss": float(totals["loss_sum"]) / count,
            "count": count}


def load_model(workdir: str, step: int | None = None):
  """Notebook API: (model, params, config) of a trained workdir, params as numpy arrays.

      model, params, config = load_model("runs/mnist_cnn")
      logits = model.apply({"params": params}, images_float_0_to_1)

  `step`: a checkpoint's step (default the newest); 0 is the run's initial params, which its
  config determines (no checkpoint needed).
  """
  workdir = os.path.abspath(workdir)
  config = read_config(workdir)
  try:
    with open(os.path.join(workdir, "model_info.json")) as f:
      info = json.load(f)
  except FileNotFoundError as e:
    raise UserError(f"{workdir} is not a run directory ({e.filename} is missing)") from None
  model = models.create_model(config, info["num_classes"])
  if step == 0:  # with init_from: the params it started from
    return model, create_train_state(config, model, info["image_shape"], 1).params, config
  template = jax.tree.map(np.asarray, _init_state(config, model, info["image_shape"], 1))
  state, _ = checkpoint.Checkpointer(workdir, config.max_checkpoints_to_keep).restore(template, step)
  if state is None:
    raise UserError(f"no checkpoints in {workdir}")
  return model, state.params, config
