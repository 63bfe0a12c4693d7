"""train_and_evaluate(config, workdir): the whole experiment, callable from a notebook.

Data order: epoch e visits the training set in `np.random.default_rng([seed, e])` order and
step s takes batch s % steps_per_epoch of epoch s // steps_per_epoch (the ragged tail of an
epoch is skipped), so a run resumed at any step sees exactly the batches it would have seen.
"""
import json
import os
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from research import UserError, checkpoint, data, models, parallel, steps
from research.metrics import MetricWriter


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


def create_train_state(config, model, image_shape, total_steps: int) -> steps.TrainState:
  """The initial state, as host (numpy) arrays, for `config.seed`."""
  key = jax.random.PRNGKey(config.seed)
  init_key, rng = jax.random.split(key)
  params = jax.jit(model.init)(init_key, jnp.zeros((1,) + tuple(image_shape), jnp.float32))
  state = steps.TrainState.create(apply_fn=model.apply, params=params["params"],
                                  tx=create_optimizer(config, total_steps), rng=rng)
  return jax.tree.map(np.asarray, state)


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
  if config.batch_size <= 0 or config.batch_size % num_devices:
    raise UserError(f"batch_size {config.batch_size} must be a positive multiple of the "
                    f"{num_devices} devices")
  if num_devices % num_processes:
    raise UserError(f"{num_devices} devices do not split evenly over {num_processes} processes")
  for field in ("steps_per_call", "log_every_steps", "checkpoint_every_steps", "eval_batch_size"):
    if config[field] <= 0:
      raise UserError(f"{field} must be positive, got {config[field]}")


def prepare_workdir(workdir: str) -> str:
  workdir = os.path.abspath(workdir)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UserError(f"workdir {workdir} exists and is not a directory")
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test.{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise UserError(f"workdir {workdir} is not writable: {e.strerror or e}") from None
  return workdir


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


def _next_boundary(step, total, config, steps_per_epoch):
  """End of the chunk that starts at `step`: the next log, eval, checkpoint or the end."""
  ends = [total, step + config.steps_per_call]
  for every in (config.log_every_steps, config.checkpoint_every_steps,
                steps_per_epoch * config.eval_every_epochs if config.eval_every_epochs > 0 else 0):
    if every > 0:
      ends.append((step // every + 1) * every)
  return min(ends)


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains `config`'s model, evaluating and checkpointing into `workdir`; returns results."""
  workdir = prepare_workdir(workdir)
  if config.debug:
    jax.config.update("jax_debug_nans", True)
    jax.config.update("jax_log_compiles", True)
  num_devices = 1 if config.parallelism == "single" else jax.device_count()
  validate(config, num_devices, jax.process_count())
  ds = data.load_dataset(config)
  model = models.create_model(config, ds.num_classes)

  n_train = len(ds.train_labels)
  steps_per_epoch = n_train // config.batch_size
  if steps_per_epoch == 0:
    raise UserError(f"batch_size {config.batch_size} exceeds the {n_train} training examples")
  total = config.num_train_steps if config.num_train_steps > 0 else config.num_epochs * steps_per_epoch

  host_state = create_train_state(config, model, ds.image_shape, total)
  num_params = models.count_params(host_state.params)
  train_step = steps.make_train_step()
  runner = parallel.make_runner(
      config.parallelism, steps.make_train_chunk(train_step, config.steps_per_call),
      steps.make_eval_step(model.apply))
  eval_batch = -(-config.eval_batch_size // runner.num_devices) * runner.num_devices

  writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
  writer.write_config(config)
  ckpt = checkpoint.Checkpointer(workdir, config.max_checkpoints_to_keep)
  restored, start = ckpt.restore(host_state)
  if restored is not None:
    host_state = restored
    logging.info("resumed from the checkpoint at step %d in %s", start, ckpt.directory)
  start = int(host_state.step)

  state = runner.put_replicated(host_state)
  train_data = runner.put_replicated((ds.train_images, ds.train_labels))
  test_data = runner.put_replicated((ds.test_images, ds.test_labels))
  test_idx = eval_indices(len(ds.test_labels), eval_batch)

  def evaluate(data_, idx_mask):
    totals = runner.get(runner.evaluate(state.params, data_, *idx_mask))
    count = int(totals["count"])
    return {"accuracy": int(totals["correct"]) / count, "loss": float(totals["loss_sum"]) / count,
            "count": count}

  logging.info("model %s (%d params) on %s: %d steps of batch %d (%d/epoch), %s over %d devices",
               config.model, num_params, config.dataset, total, config.batch_size,
               steps_per_epoch, config.parallelism, runner.num_devices)
  step, seconds, window = start, 0.0, []
  t_log, steps_at_log = time.time(), start
  with _Preemption() as preemption:
    while step < total:
      end = _next_boundary(step, total, config, steps_per_epoch)
      idx = batch_indices(config.seed, step, end - step, steps_per_epoch, n_train, config.batch_size)
      padded = np.zeros((config.steps_per_call, config.batch_size), np.int32)
      padded[:end - step] = idx
      t0 = time.time()
      state, metrics = runner.train(state, train_data, padded, end - step)
      metrics = {k: v[:end - step] for k, v in runner.get(metrics).items()}  # waits for the chunk
      seconds += time.time() - t0
      _check_finite(metrics, step)
      window.append(metrics)
      step = end
      if step % config.log_every_steps == 0 or step == total:
        now = time.time()
        rate = (step - steps_at_log) / max(now - t_log, 1e-9)
        summary = {k: float(np.mean(np.concatenate([w[k] for w in window]))) for k in window[0]}
        writer.write("train", step, {**summary, "steps_per_second": rate})
        logging.info("step %d/%d  loss %.4f  acc %.4f  %.1f steps/s  ETA %.0fs", step, total,
                     summary["loss"], summary["accuracy"], rate, (total - step) / max(rate, 1e-9))
        window, t_log, steps_at_log = [], now, step
      epoch_done = step % steps_per_epoch == 0 and config.eval_every_epochs > 0 and (
          (step // steps_per_epoch) % config.eval_every_epochs == 0)
      if epoch_done and step != total:
        test = evaluate(test_data, test_idx)
        writer.write("test", step, {"accuracy": test["accuracy"], "loss": test["loss"]})
        logging.info("step %d  epoch %d  test accuracy %.4f  loss %.4f", step,
                     step // steps_per_epoch, test["accuracy"], test["loss"])
      stop = preemption.agreed()
      if step % config.checkpoint_every_steps == 0 or step == total or stop:
        ckpt.save(step, runner.get(state))
      if stop and step < total:
        ckpt.wait()
        ckpt.close()
        writer.close()
        logging.warning("SIGTERM: checkpoint at step %d committed to %s; exiting", step,
                        ckpt.directory)
        print(f"preempted: checkpoint at step {step} saved in {ckpt.directory}", flush=True)
        raise SystemExit(143)

  test = evaluate(test_data, test_idx)
  writer.write("test", step, {"accuracy": test["accuracy"], "loss": test["loss"]})
  results = {
      "model": config.model, "dataset": config.dataset, "seed": config.seed,
      "test_accuracy": test["accuracy"], "test_loss": test["loss"], "test_count": test["count"],
      "num_params": num_params, "steps": step, "train_seconds": seconds,
      "parallelism": config.parallelism, "num_devices": runner.num_devices,
      "num_processes": jax.process_count(), "batch_size": config.batch_size,
  }
  if config.eval_train:
    train_eval = evaluate(train_data, eval_indices(n_train, eval_batch))
    results.update(train_accuracy=train_eval["accuracy"], train_loss=train_eval["loss"])
  ckpt.close()
  writer.write_results(results)
  writer.close()
  logging.info("done: %s", json.dumps(results))
  return results


def _check_finite(metrics, first_step):
  for name, values in metrics.items():
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
      raise FloatingPointError(
          f"{name} is {values[bad[0]]} at step {first_step + int(bad[0]) + 1}; stopping "
          "(try a lower learning_rate, or --config.debug=True to find the first bad op)")
