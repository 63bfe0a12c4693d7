"""A bound on how long a multi-process run may wait for its peers.

In a multi-process run every collective (a train chunk, an evaluation, a checkpoint barrier)
waits until all processes take part. jax.distributed's heartbeat catches a peer that died, but
not one that is alive and stuck (a deadlock, a hung filesystem, a process stopped by a
debugger): the others then wait forever and the slice burns. `Watchdog.phase` bounds each
blocking phase of the loop; a phase that outlasts the bound prints one line and ends the
process. It exits with os._exit because the main thread is blocked inside XLA and cannot be
interrupted; checkpoints already committed stay intact.
"""
import contextlib
import threading
import time

import jax

from research import cli

STALL_EXIT_CODE = 4


class Watchdog:

  def __init__(self, timeout_s: float, process: int = 0, num_processes: int = 1):
    self.timeout_s = float(timeout_s)
    self._who = f"process {process} of {num_processes}"
    self._phase = None
    self._deadline = None
    self._lock = threading.Lock()
    self._stop = threading.Event()
    self._thread = None
    if self.timeout_s > 0:
      self._thread = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)
      self._thread.start()

  @contextlib.contextmanager
  def phase(self, name: str):
    """Bounds the block: if it runs longer than the timeout, the process exits. A collective
    that fails because a peer went away (the peer's own bound ended it, say) ends this process
    too, with one line instead of a runtime traceback."""
    with self._lock:
      outer = (self._phase, self._deadline)
      self._phase, self._deadline = name, time.monotonic() + self.timeout_s
    try:
      yield
    except jax.errors.JaxRuntimeError as e:
      if self._thread is None:  # one process, or no bound asked for: the caller's business
        raise
      reason = " ".join(str(e).split())[:200]
      self._exit(f"{self._who} lost a peer in {name} ({reason}); exiting")
    finally:
      with self._lock:
        self._phase, self._deadline = outer

  @staticmethod
  def _exit(message: str):
    # cli.fail exits with os._exit: the main thread is blocked inside XLA, and jax.distributed's
    # shutdown barrier at exit would wait for the missing peer and then abort with a crash report.
    cli.fail(message, STALL_EXIT_CODE)

  def _watch(self):
    poll = min(1.0, self.timeout_s / 10)
    while not self._stop.wait(poll):
      with self._lock:
        phase, deadline = self._phase, self._deadline
      if deadline is not None and time.monotonic() > deadline:
        self._exit(f"{self._who} waited over {self.timeout_s:.0f} s in {phase}; a peer "
                   "is stalled or unreachable (bound: config.stall_timeout); exiting")

  def close(self):
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=5)
