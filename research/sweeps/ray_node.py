"""Ray's own processes, as a sweep sees them: a node that died, and what a dead node leaves.

A local Ray instance is a few processes the driver starts: gcs_server and the raylet, and the
raylet's agents (ray::DashboardAgent, ray::RuntimeEnvAgent), which share its fate. When one of
them dies the raylet goes with it, and every task of the node fails with LocalRayletDiedError:
the runs did nothing wrong. `LocalNode` watches those processes (a dead one is seen within a
second, instead of after Ray's heartbeat timeout) and names the one that died; `end_leftovers`
ends the workers a dead raylet leaves behind, which would otherwise go on training a run while
its retry trains it too. In every worker, `exit_with_raylet` does the same from the inside (on
a remote cluster the driver cannot reach the worker's machine).

`check_reachable` turns a cluster address nobody answers at into one error line.
`RayNodeLost` is the error of a sweep that lost its Ray node for good: on a remote cluster at
once, on the local one after the executor's restarts. It names Ray's failure and the runs it
interrupted; it never blames the runs.
"""
import os
import threading
import time

# Ray's errors that mean a node (not a run, not a worker) is gone.
NODE_ERRORS = ("LocalRayletDiedError", "NodeDiedError", "RaySystemError", "RayletDiedError")
_NODE_PROCESSES = ("gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent")


class RayNodeLost(Exception):
  """The sweep's Ray node died (and was not, or could no longer be, restarted). Runs that
  finished are kept (results.json, the run records); interrupted ones keep their checkpoints."""


def is_node_error(e: BaseException) -> bool:
  return type(e).__name__ in NODE_ERRORS


def describe(e: BaseException) -> str:
  """`LocalRayletDiedError` (with the first line of its message when it says more)."""
  first = " ".join(str(e).split())[:160]
  return f"{type(e).__name__}: {first}" if first else type(e).__name__


class LocalNode:
  """The node processes of the local Ray instance this driver started (its descendants)."""

  def __init__(self):
    import psutil
    self.procs = {}  # pid -> (name, psutil.Process)
    self.raylet_pid = None
    for p in psutil.Process().children(recursive=True):
      try:
        name = p.name()
      except psutil.Error:
        continue
      if name in _NODE_PROCESSES:
        self.procs[p.pid] = (name, p)
        if name == "raylet":
          self.raylet_pid = p.pid

  def dead(self) -> list[str]:
    """'ray::RuntimeEnvAgent (pid 123)' for each node process that is no longer running."""
    import psutil
    out = []
    for pid, (name, p) in sorted(self.procs.items()):
      try:
        alive = p.is_running() and p.status() != psutil.STATUS_ZOMBIE
      except psutil.Error:
        alive = False
      if not alive:
        out.append(f"{name} (pid {pid})")
    return out

  def end_leftovers(self, timeout_s: float = 15.0) -> list[int]:
    """SIGKILLs the dead node's workers (processes whose environment names its raylet) and its
    agents still running; waits until they are gone. Returns their pids. gcs_server is left to
    ray.shutdown(): without it the driver's disconnect waits seconds for an answer."""
    import psutil
    victims = [p for name, p in self.procs.values() if name.startswith("ray::")]
    if self.raylet_pid:
      for p in psutil.process_iter(["name"]):
        try:
          if p.pid != os.getpid() and (p.info["name"] or "").startswith("ray::") and (
              p.environ().get("RAY_RAYLET_PID") == str(self.raylet_pid)):
            victims.append(p)
        except psutil.Error:
          continue
    alive = []
    for p in victims:
      try:
        if p.is_running():
          p.kill()
          alive.append(p)
      except psutil.Error:
        pass
    psutil.wait_procs(alive, timeout=timeout_s)
    return [p.pid for p in alive]


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
  """A HOST:PORT (or ray://HOST:PORT) nobody listens on: one error line now, not ray.init's
  minutes of retries."""
  import socket

  from research import UserError
  hostport = address.split("://", 1)[-1]
  host, _, port = hostport.rpartition(":")
  if address == "auto" or not host or not port.isdigit():
    return
  try:
    socket.create_connection((host, int(port)), timeout=timeout_s).close()
  except OSError as e:
    raise UserError(f"cannot join the Ray cluster at {address}: nothing answers there "
                    f"({e.strerror or e}); start one with `ray start --head` or check "
                    "--ray_address") from None


_watching = False


def exit_with_raylet() -> None:
  """In a Ray worker: a thread that ends this process within half a second of its raylet's
  death (the worker is the raylet's child; a new parent means the raylet is gone), saying so on
  stderr (the run's train.log while a run lasts). The run is then retried and resumes from its
  checkpoint. Once per process; nothing where this process is not a raylet's worker."""
  global _watching
  raylet = os.getppid()
  if _watching or os.environ.get("RAY_RAYLET_PID") != str(raylet):
    return
  _watching = True

  def watch():
    while os.getppid() == raylet:
      time.sleep(0.5)
    line = (f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} the Ray node's raylet (pid {raylet}) "
            f"died: this attempt (pid {os.getpid()}) stops; the run resumes from its checkpoint\n")
    try:
      os.write(2, line.encode())
    except OSError:
      pass
    os._exit(1)

  threading.Thread(target=watch, name="exit-with-raylet", daemon=True).start()
