"""CPU slots: a Ray worker pinned to cores no other run on its machine holds.

Where several runs share a CPU machine (a run asks for fewer CPUs than the machine has), XLA's
thread flags do not bound XLA:CPU's threads, the affinity does: each run takes a slot of
`num_cpus` cores (a lock file per slot) and pins every thread of its worker to them.
"""
import contextlib
import os
import sys
import tempfile
import time

_ALL_CPUS = None  # the worker's CPUs before any pinning


def _pin(cpus) -> None:
  """Sets the affinity of every thread of this process (XLA's pool threads included)."""
  for tid in os.listdir("/proc/self/task"):
    try:
      os.sched_setaffinity(int(tid), cpus)
    except OSError:  # a thread that just ended
      pass


@contextlib.contextmanager
def cpu_slot(num_cpus: int, wait_s: float = 120.0):
  """Pins this worker to `num_cpus` cores that no other run on this machine holds, while the
  run lasts, when runs share the machine; otherwise changes nothing. Yields the cores or None."""
  global _ALL_CPUS
  if not hasattr(os, "sched_setaffinity") or not os.path.isdir("/proc/self/task"):
    yield None
    return
  if _ALL_CPUS is None:
    _ALL_CPUS = sorted(os.sched_getaffinity(0))
  k = int(num_cpus)
  if k <= 0 or k >= len(_ALL_CPUS):
    yield None
    return
  import fcntl
  lock_dir = os.path.join(tempfile.gettempdir(), f"dvc-cpu-slots-{os.getuid()}")
  os.makedirs(lock_dir, exist_ok=True)
  n_slots = len(_ALL_CPUS) // k
  deadline = time.time() + wait_s
  while True:
    for i in range(n_slots):
      handle = open(os.path.join(lock_dir, f"slot{i}-of-{n_slots}.lock"), "w")
      try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        handle.close()
        continue
      cores = _ALL_CPUS[i * k:(i + 1) * k]
      _pin(cores)
      try:
        yield cores
      finally:
        handle.close()  # releases the lock
      return
    if time.time() > deadline:  # more runs than slots on this machine: run unpinned
      print(f"warning: no free CPU slot of {k} cores after {wait_s:.0f}s; running unpinned",
            file=sys.stderr)
      yield None
      return
    time.sleep(0.5)
