"""train_and_evaluate(config, workdir): the whole experiment, callable from a notebook; and
evaluate_checkpoint. The loop: chunks of steps between log, evaluation and checkpoint
boundaries, resumption from the newest checkpoint, SIGTERM as a preemption.
research/experiment.py builds what a run needs (model, program, data, state).
"""
import json
import os
import shutil
import signal
import time

import jax
import numpy as np
from absl import logging

from research import UserError, checkpoint, machine
from research.experiment import Experiment, batch_indices, check_compatible, prepare_workdir
from research.metrics import MetricWriter
from research.watchdog import Watchdog


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
  total, steps_per_epoch = exp.program.total_steps, exp.program.steps_per_epoch
  runner = exp.runner
  bounded = watchdog.phase  # every wait on the other processes of a multi-process run

  writer = MetricWriter(workdir, enabled=jax.process_index() == 0,
                        wandb_project=config.wandb_project)
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
  if exp.program.weight_metrics and step == 0:
    writer.write("weights", 0, exp.program.weight_metrics(host_state.params))
  window = []
  # Rates (and the ETA) count from the end of the first call, which includes compilation.
  t_log, steps_at_log, compiled, start_step = time.time(), step, False, step
  profile = _Profile(config.profile_steps, os.path.join(workdir, "tensorboard"),
                     enabled=jax.process_index() == 0)
  with _Preemption() as preemption:
    while step < total:
      profile.before_chunk(step, compiled)
      end = _next_boundary(step, total, config, steps_per_epoch, exp.program.steps_per_call)
      padded = np.zeros((exp.program.steps_per_call, config.batch_size), np.int32)
      padded[:end - step] = batch_indices(config.seed, step, end - step, steps_per_epoch,
                                          exp.program.n_train, config.batch_size)
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
        logging.info("step %d/%d  loss %.4f  acc %.4f  %.1f steps/s  %.0f images/s  %s", step,
                     total, summary["loss"], summary["accuracy"], rate, rate * config.batch_size,
                     eta)
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
        if exp.program.weight_metrics:
          writer.write("weights", step, exp.program.weight_metrics(runner.get(state.params)))
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
  if exp.program.weight_metrics:
    writer.write("weights", step, exp.program.weight_metrics(runner.get(state.params)))
  results = {
      "model": config.model, "dataset": config.dataset, "seed": config.seed,
      "test_accuracy": test["accuracy"], "test_loss": test["loss"], "test_count": test["count"],
      "num_params": exp.num_params, "steps": step, "train_seconds": seconds,
      "parallelism": config.parallelism, "num_devices": runner.num_devices,
      "num_processes": jax.process_count(), "batch_size": config.batch_size,
      "learning_rate": config.learning_rate, "optimizer": config.optimizer,
      "grad_accum_steps": config.grad_accum_steps, "warmup_steps": config.warmup_steps,
      "weight_decay": config.weight_decay,
      "conv_impl": exp.program.block.name, "cpu": machine.cpu_name(),
      "xla_threads": machine.xla_threads(jax.local_device_count("cpu")),
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
