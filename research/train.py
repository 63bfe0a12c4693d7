"""train_and_evaluate(config, workdir): the whole experiment, callable from a notebook.

Data order: epoch e visits the training set in `np.random.default_rng([seed, e])` order and
step s takes batch s % steps_per_epoch of epoch s // steps_per_epoch (the ragged tail of an
epoch is skipped), so a run resumed at any step sees exactly the batches it would have seen.
"""
import json
import os
import shutil
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from research import (UserError, checkpoint, data, equivalence, machine, models, parallel,
                      steps, transforms)
from research.metrics import MetricWriter
from research.watchdog import Watchdog


def create_optimizer(config, total_steps: int) -> optax.GradientTransformation:
  if config.lr_schedule == "constant":
    lr = config.learning_rate
  elif config.lr_schedule == "cosine":
    lr = optax.cosine_decay_schedule(config.learning_rate, max(total_steps, 1))
  else:
    raise UserError(f"unknown lr_schedule {config.lr_schedule!r}; choose 'constant' or 'cosine'")
  if config.optimizer == "adam":
    return optax.adam(lr)
  if config.optimizer == "sgd":
    return optax.sgd(lr, momentum=config.momentum or None)
  raise UserError(f"unknown optimizer {config.optimizer!r}; choose 'adam' or 'sgd'")


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
  if num_devices % num_processes:
    raise UserError(f"{num_devices} devices do not split evenly over {num_processes} processes")
  for field in ("steps_per_call", "log_every_steps", "checkpoint_every_steps", "eval_batch_size"):
    if config[field] <= 0:
      raise UserError(f"{field} must be positive, got {config[field]}")
  models.check_config(config)
  create_optimizer(config, 1)  # unknown optimizer or schedule
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


class _Profile:
  """A jax.profiler trace of `num_steps` train steps after the first (compiling) chunk, written
  to `log_dir` in TensorBoard's profile-plugin layout (plugins/profile/RUN/HOST.xplane.pb).

  Chunks are whole calls, so the trace covers the chunks that hold those steps.
  """

  def __init__(self, num_steps: int, log_dir: str, enabled: bool = True):
    self.num_steps, self.log_dir, self.enabled = num_steps, log_dir, enabled and num_steps > 0
    self.start_step = None  # the first traced step; None: not started

  def before_chunk(self, step: int, compiled: bool) -> None:
    if self.enabled and self.start_step is None and compiled:
      jax.profiler.start_trace(self.log_dir)
      self.start_step = step

  def after_chunk(self, step: int) -> None:
    if self.start_step is not None and step - self.start_step >= self.num_steps:
      self.stop()

  def stop(self) -> None:
    if self.enabled and self.start_step is not None:
      jax.profiler.stop_trace()
      logging.info("profiled steps %d..%d into %s", self.start_step + 1,
                   self.start_step + self.num_steps, self.log_dir)
      self.enabled = False


class _Preemption:
  """Turns SIGTERM into a flag the loop checks between chunks (all processes agree on it)."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread (e.g. a notebook worker): no handler
      self._previous = None
    return self

  def _handle(self, signum, frame):
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)

  def agreed(self) -> bool:
    if jax.process_count() == 1:
      return self.requested
    from jax.experimental import multihost_utils
    return bool(np.any(multihost_utils.process_allgather(np.int32(self.requested))))


def _next_boundary(step, total, config, steps_per_epoch, steps_per_call):
  """End of the chunk that starts at `step`: the next log, eval, checkpoint or the end."""
  ends = [total, step + steps_per_call]
  for every in (config.log_every_steps, config.checkpoint_every_steps,
                steps_per_epoch * config.eval_every_epochs if config.eval_every_epochs > 0 else 0):
    if every > 0:
      ends.append((step // every + 1) * every)
  return min(ends)


# Fields added after runs were made, with the value a saved config without them ran with.
ADDED_FIELDS = {"init_from": "", "init_from_step": -1, "clutter_pieces": 0, "clutter_size": 8,
                "validation_size": 0, "conv_impl": "auto"}

# Fields that may change between a run and its resumption: they do not change the numbers.
RESUMABLE_FIELDS = frozenset({
    "parallelism", "steps_per_call", "log_every_steps", "checkpoint_every_steps",
    "max_checkpoints_to_keep", "eval_batch_size", "eval_every_epochs", "eval_train", "debug",
    "data_dir", "xla_cpu_ynnpack", "stall_timeout", "profile_steps"})


def check_compatible(config, workdir: str) -> None:
  """Refuses a workdir whose saved config would train something else (nothing is written)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    saved = {**ADDED_FIELDS, **json.load(f)}
  current = json.loads(config.to_json_best_effort())
  differing = sorted(k for k in set(saved) | set(current)
                     if k not in RESUMABLE_FIELDS and saved.get(k) != current.get(k))
  if differing:
    detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in differing[:6])
    raise UserError(f"workdir {workdir} holds a run with a different config ({detail}); "
                    "use a new --workdir or the same config")


class Program:
  """What a run compiles, from the config and the dataset's shapes; no devices, no data on them.

  Experiment runs it; research/tpu/preflight.py compiles the same program for a TPU topology.
  `platform` ('cpu', 'gpu', 'tpu') picks how a chunk of steps is compiled (steps.chunk_plan).
  """

  def __init__(self, config, ds: data.Dataset, platform: str, num_devices: int):
    self.config = config
    self.image_shape = ds.image_shape
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
    train_step = steps.make_train_step(transforms.make_augment(config))
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
    self.model = self.program.model
    self.n_train = self.program.n_train
    self.steps_per_epoch = self.program.steps_per_epoch
    self.total_steps = self.program.total_steps
    self.steps_per_call = self.program.steps_per_call
    self.initial_state = self.program.initial_state()
    self.num_params = models.count_params(self.initial_state.params)
    self.runner = self.program.make_runner()
    self.eval_batch = self.program.eval_batch
    self.weight_metrics = self.program.weight_metrics
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
    totals = self.runner.get(self.runner.evaluate(params, data_, *eval_indices(n, self.eval_batch)))
    count = int(totals["count"])
    return {"accuracy": int(totals["correct"]) / count, "loss": float(totals["loss_sum"]) / count,
            "count": count}


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains `config`'s model, evaluating and checkpointing into `workdir`; returns results.

  A workdir with checkpoints is resumed from its newest readable one. A workdir this call
  created is removed again when the run is refused before it starts (bad input).
  """
  workdir, created = prepare_workdir(workdir)
  try:
    check_compatible(config, workdir)
    exp = Experiment(config, workdir)
  except BaseException:
    if created and jax.process_index() == 0:  # process 0 owns the workdir's files
      shutil.rmtree(workdir, ignore_errors=True)
    raise
  watchdog = Watchdog(config.stall_timeout if jax.process_count() > 1 else 0,
                      jax.process_index(), jax.process_count())
  try:
    return _train(config, workdir, exp, watchdog)
  finally:
    watchdog.close()


def _train(config, workdir: str, exp: Experiment, watchdog: Watchdog) -> dict:
  total, steps_per_epoch = exp.total_steps, exp.steps_per_epoch
  runner = exp.runner
  bounded = watchdog.phase  # every wait on the other processes of a multi-process run

  writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
  writer.write_config(config)
  writer.write_json("model_info.json", {"num_classes": exp.dataset.num_classes,
                                        "image_shape": list(exp.dataset.image_shape)})
  with bounded("setting up checkpoints"):
    ckpt = checkpoint.Checkpointer(workdir, config.max_checkpoints_to_keep)
    host_state, start = ckpt.restore(exp.initial_state)
  if host_state is None:
    host_state = exp.initial_state
  else:
    logging.info("resumed from the checkpoint at step %d in %s", start, ckpt.directory)
  state = runner.put_replicated(host_state)
  step = int(host_state.step)
  # A run killed after its last checkpoint logged steps it will now redo: drop them, and carry
  # on the training time it had spent up to the checkpoint.
  writer.drop_after(step, redo_final=step == total)
  seconds = _seconds_at(workdir, step)

  logging.info("model %s (%d params) on %s: %d steps of batch %d (%d/epoch), %s over %d devices",
               config.model, exp.num_params, config.dataset, total, config.batch_size,
               steps_per_epoch, config.parallelism, runner.num_devices)
  if exp.weight_metrics and step == 0:
    writer.write("weights", 0, exp.weight_metrics(host_state.params))
  window = []
  # Rates (and the ETA) count from the end of the first call, which includes compilation.
  t_log, steps_at_log, compiled, start_step = time.time(), step, False, step
  profile = _Profile(config.profile_steps, os.path.join(workdir, "tensorboard"),
                     enabled=jax.process_index() == 0)
  with _Preemption() as preemption:
    while step < total:
      profile.before_chunk(step, compiled)
      end = _next_boundary(step, total, config, steps_per_epoch, exp.steps_per_call)
      padded = np.zeros((exp.steps_per_call, config.batch_size), np.int32)
      padded[:end - step] = batch_indices(config.seed, step, end - step, steps_per_epoch,
                                          exp.n_train, config.batch_size)
      t0 = time.time()
      try:
        with bounded(f"train steps {step + 1}..{end}"):
          state, metrics = runner.train(state, exp.train_data, padded, end - step)
          metrics = {k: v[:end - step] for k, v in runner.get(metrics).items()}  # waits for it
      except FloatingPointError as e:  # config.debug: jax_debug_nans found the first bad op
        raise FloatingPointError(f"NaN/inf in steps {step + 1}..{end}: {e}") from None
      seconds += time.time() - t0
      _check_finite(metrics, step)
      window.append(metrics)
      step = end
      if not compiled:  # the rate window starts after the compiling call
        compiled = True
        logging.info("first call (to step %d) took %.1f s, compilation included", step,
                     time.time() - t0)
        if step % config.log_every_steps and step < total:
          t_log, steps_at_log = time.time(), step
      profile.after_chunk(step)
      if step % config.log_every_steps == 0 or step == total:
        now = time.time()
        rate = (step - steps_at_log) / max(now - t_log, 1e-9)
        summary = {k: float(np.mean(np.concatenate([w[k] for w in window]))) for k in window[0]}
        writer.write("train", step, {**summary, "steps_per_second": rate})
        eta = f"ETA {(total - step) / max(rate, 1e-9):.0f}s" if steps_at_log > start_step else (
            "ETA after the next log")  # this window's rate includes compilation
        logging.info("step %d/%d  loss %.4f  acc %.4f  %.1f steps/s  %s", step, total,
                     summary["loss"], summary["accuracy"], rate, eta)
        window, t_log, steps_at_log = [], now, step
      epoch_done = step % steps_per_epoch == 0 and config.eval_every_epochs > 0 and (
          (step // steps_per_epoch) % config.eval_every_epochs == 0)
      if epoch_done and step != total:
        with bounded(f"the test evaluation at step {step}"):
          test = exp.evaluate(state.params)
          val = _evaluate_validation(exp, writer, state.params, step)
        writer.write("test", step, {"accuracy": test["accuracy"], "loss": test["loss"],
                                    "train_seconds": seconds})
        logging.info("step %d  epoch %d  test accuracy %.4f  loss %.4f%s", step,
                     step // steps_per_epoch, test["accuracy"], test["loss"],
                     f"  validation accuracy {val['accuracy']:.4f}" if val else "")
        if exp.weight_metrics:
          writer.write("weights", step, exp.weight_metrics(runner.get(state.params)))
      with bounded(f"agreeing on preemption at step {step}"):
        stop = preemption.agreed()
      if step % config.checkpoint_every_steps == 0 or step == total or stop:
        with bounded(f"saving the checkpoint at step {step}"):
          ckpt.save(step, runner.get(state))
        _record_seconds(writer, workdir, step, seconds)
      if stop and step < total:
        profile.stop()
        with bounded(f"committing the checkpoint at step {step}"):
          ckpt.close()  # waits until the checkpoint is committed
        writer.close()
        logging.warning("SIGTERM: checkpoint at step %d committed to %s; exiting", step,
                        ckpt.directory)
        print(f"preempted: checkpoint at step {step} saved in {ckpt.directory}", flush=True)
        raise SystemExit(143)

  profile.stop()  # a run shorter than the profile
  with bounded(f"the final test evaluation at step {step}"):
    test = exp.evaluate(state.params)
    val = _evaluate_validation(exp, writer, state.params, step)
  writer.write("test", step, {"accuracy": test["accuracy"], "loss": test["loss"],
                              "train_seconds": seconds})
  if exp.weight_metrics:
    writer.write("weights", step, exp.weight_metrics(runner.get(state.params)))
  results = {
      "model": config.model, "dataset": config.dataset, "seed": config.seed,
      "test_accuracy": test["accuracy"], "test_loss": test["loss"], "test_count": test["count"],
      "num_params": exp.num_params, "steps": step, "train_seconds": seconds,
      "parallelism": config.parallelism, "num_devices": runner.num_devices,
      "num_processes": jax.process_count(), "batch_size": config.batch_size,
      "learning_rate": config.learning_rate, "optimizer": config.optimizer,
      "conv_impl": exp.program.block.name, "cpu": machine.cpu_name(),
  }
  if val:
    results.update(validation_accuracy=val["accuracy"], validation_loss=val["loss"],
                   validation_count=val["count"])
  if config.eval_train:
    with bounded(f"the final train-split evaluation at step {step}"):
      train_eval = exp.evaluate(state.params, "train")
    results.update(train_accuracy=train_eval["accuracy"], train_loss=train_eval["loss"])
  with bounded(f"committing the checkpoint at step {step}"):
    ckpt.close()
  writer.write_json("results.json", results)
  writer.close()
  logging.info("done: %s", json.dumps(results))
  return results


def _evaluate_validation(exp: Experiment, writer, params, step: int) -> dict | None:
  """Scores the validation split (when the config holds one out) and logs it; else None."""
  if exp.val_data is None:
    return None
  val = exp.evaluate(params, "validation")
  writer.write("validation", step, {"accuracy": val["accuracy"], "loss": val["loss"]})
  return val


def evaluate_checkpoint(config, workdir: str, step: int | None = None) -> dict:
  """Scores a checkpoint of `workdir` (default: the newest) on the test split; no training."""
  workdir = os.path.abspath(workdir)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(ckpt_dir):
    raise UserError(f"no checkpoints in {workdir}: nothing to evaluate (train there first)")
  check_compatible(config, workdir)
  exp = Experiment(config, workdir)
  ckpt = checkpoint.Checkpointer(workdir, config.max_checkpoints_to_keep)
  host_state, step = ckpt.restore(exp.initial_state, step)
  if host_state is None:
    raise UserError(f"no checkpoints in {ckpt_dir}: nothing to evaluate")
  test = exp.evaluate(exp.runner.put_replicated(host_state.params))
  results = {"step": step, "test_accuracy": test["accuracy"], "test_loss": test["loss"],
             "test_count": test["count"], "model": config.model, "dataset": config.dataset}
  if jax.process_index() == 0:
    MetricWriter(workdir, enabled=False).write_json(f"eval_step_{step}.json", results, force=True)
    print(json.dumps(results), flush=True)
  return results


def load_model(workdir: str, step: int | None = None):
  """Notebook API: (model, params, config) of a trained workdir, params as numpy arrays.

      model, params, config = load_model("runs/mnist_cnn")
      logits = model.apply({"params": params}, images_float_0_to_1)

  `step`: a checkpoint's step (default the newest); 0 is the run's initial params, which its
  config determines (no checkpoint needed).
  """
  import ml_collections
  workdir = os.path.abspath(workdir)
  try:
    with open(os.path.join(workdir, "config.json")) as f:
      config = ml_collections.ConfigDict({**ADDED_FIELDS, **json.load(f)})
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


SECONDS_FILE = "train_seconds.json"  # {step: training seconds up to it}, one per checkpoint


def _seconds_at(workdir: str, step: int) -> float:
  """The training seconds spent up to the checkpoint at `step` (0 for a fresh run)."""
  try:
    with open(os.path.join(workdir, SECONDS_FILE)) as f:
      return float(json.load(f).get(str(step), 0.0))
  except (OSError, ValueError):
    return 0.0


def _record_seconds(writer, workdir: str, step: int, seconds: float, keep: int = 8) -> None:
  """Adds `step`'s training seconds to SECONDS_FILE (the newest `keep` checkpoints' steps)."""
  path = os.path.join(workdir, SECONDS_FILE)
  try:
    with open(path) as f:
      table = json.load(f)
  except (OSError, ValueError):
    table = {}
  table[str(step)] = seconds
  newest = sorted(table, key=int)[-keep:]
  writer.write_json(SECONDS_FILE, {k: table[k] for k in newest})


def _check_finite(metrics, first_step):
  for name, values in metrics.items():
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
      raise FloatingPointError(
          f"{name} is {values[bad[0]]} at step {first_step + int(bad[0]) + 1}; stopping "
          "(try a lower learning_rate, or --config.debug=True to find the first bad op)")
