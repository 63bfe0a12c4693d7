"""Orbax checkpoints of the whole train state in WORKDIR/checkpoints.

The state is saved unreplicated, as host arrays (params, optimizer state, step, rng), so a
checkpoint written by any parallel flavour or device count restores into any other. The data
order is a pure function of (seed, epoch, step), so the step is all it takes to resume it.

Multi-process runs: orbax's barriers between processes default to device collectives
(`sync_global_devices`), and the async commit runs them from a background thread while the
training loop runs its own collectives (evaluations) on the main thread. Two processes can then
enter the same two collectives in different orders and wait for each other forever (seen as a
hang at the end of a two-process run on a loaded CPU box). `_use_distributed_barriers` makes
orbax use the jax.distributed key-value barriers instead: they are safe from any thread and
time out.
"""
import contextlib
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import serialization

from research import UserError


class Checkpointer:

  def __init__(self, workdir: str, max_to_keep: int = 2, async_save: bool = True):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    if jax.process_count() > 1:
      _use_distributed_barriers()
    with self._clear_errors():
      self._manager = ocp.CheckpointManager(
          self.directory,
          options=ocp.CheckpointManagerOptions(
              max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save))

  @contextlib.contextmanager
  def _clear_errors(self):
    """One line for what really failed: the disk, or the other processes of the run."""
    try:
      yield
    except (OSError, ValueError, RuntimeError) as e:
      reason = " ".join(str(e).split())
      if any(word in reason for word in _PEER_ERRORS):
        raise UserError(f"checkpointing in {self.directory} needs every process of the run, and "
                        f"one did not take part in time ({reason[:200]})") from None
      for known in ("No space left on device", "Read-only file system", "Permission denied"):
        if known in reason:
          reason = known
      raise UserError(f"cannot write checkpoints to {self.directory}: {reason[:300]}") from None

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, host_state) -> None:
    """Starts writing `host_state` (numpy leaves); returns before the write is committed."""
    with self._clear_errors():
      self._manager.save(int(step), args=ocp.args.StandardSave(
          serialization.to_state_dict(host_state)))

  def wait(self) -> None:
    """Blocks until every started save is committed (or raises its error)."""
    with self._clear_errors():
      self._manager.wait_until_finished()

  def restore(self, template, step: int | None = None):
    """Restores `step` (default: the newest that reads back whole) into `template`'s structure.

    Returns (state, step), or (None, None) when there is no checkpoint. A newest checkpoint that
    is truncated or corrupt is skipped with a warning; if none reads back, UserError.
    """
    steps = self.steps()
    if step is not None:
      if step not in steps:
        raise UserError(f"no checkpoint for step {step} in {self.directory}; have {steps or 'none'}")
      steps = [step]
    target = jax.tree.map(lambda x: np.zeros(np.shape(x), np.asarray(x).dtype),
                          serialization.to_state_dict(template))
    for s in reversed(steps):
      try:
        restored = self._manager.restore(s, args=ocp.args.StandardRestore(target))
        restored = jax.tree.map(np.asarray, restored)
        _check_shapes(target, restored)
        return serialization.from_state_dict(template, restored), s
      except Exception as e:  # truncated, files removed, unreadable metadata ...
        logging.warning("checkpoint at step %d in %s is unreadable (%s: %s); trying an older one",
                        s, self.directory, type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "")
    if steps:
      raise UserError(f"no readable checkpoint in {self.directory} (tried steps {steps})")
    return None, None

  def close(self):
    self.wait()
    self._manager.close()


# Errors of the barriers and collectives between processes (not of the disk).
_PEER_ERRORS = ("DEADLINE_EXCEEDED", "Gloo", "Barrier", "barrier", "coordination service",
                "another task died", "UNAVAILABLE")


def _use_distributed_barriers():
  """Orbax's jax.distributed barriers instead of device collectives (see the module doc)."""
  from absl import flags
  name = "experimental_orbax_use_distributed_barrier"
  if name not in flags.FLAGS:  # an orbax without the switch: its default barriers
    return
  if not flags.FLAGS.is_parsed():  # called from a notebook: no command line to parse
    flags.FLAGS.mark_as_parsed()
  flags.FLAGS[name].value = True


def _check_shapes(target, restored):
  flat_t = jax.tree_util.tree_flatten_with_path(target)[0]
  flat_r = jax.tree_util.tree_flatten_with_path(restored)[0]
  if len(flat_t) != len(flat_r):
    raise ValueError("checkpoint has a different structure")
  for (path, t), (_, r) in zip(flat_t, flat_r):
    if np.shape(t) != np.shape(r):
      raise ValueError(f"{jax.tree_util.keystr(path)}: shape {np.shape(r)} != {np.shape(t)}")
