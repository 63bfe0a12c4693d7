"""Cloud TPU slices as libtpu's compiler sees them, with no TPU attached: slice names, chip
facts, and where libtpu lives on a CPU box. research/tpu/preflight.py compiles for them.

libtpu lives outside the project's site-packages on a CPU box (scripts/env.sh installs it into
$VENV/tpu-compiler with `pip install --target`): importable by every JAX program, it would make
each one probe for a TPU at start and print warnings about TPU_* environment variables. Only
`ensure_libtpu()` (called by the preflight) puts that folder on sys.path.
"""
import os
import sys

from research import UserError

# The folder scripts/env.sh installs libtpu into (`pip install --target`).
LIBTPU_DIR = os.path.join(sys.prefix, "tpu-compiler")

# Slice name -> (topology name, chip config, chips per host bounds) for get_topology_desc.
# v4 slices are named by TensorCores (2 per chip, one "megacore" device per chip); v5e and v6e
# by chips. Checked with jax 0.10.2 / libtpu 0.0.42.1: these give the named chip and host counts.
TOPOLOGIES = {
    "v4-8": ("v4:2x2x1", "megacore", (2, 2, 1)),
    "v4-16": ("v4:2x2x2", "megacore", (2, 2, 1)),
    "v4-32": ("v4:2x2x4", "megacore", (2, 2, 1)),
    "v5e-4": ("v5e:2x2", "default", (2, 2, 1)),
    "v5e-8": ("v5e:2x4", "default", (2, 4, 1)),
    "v5e-16": ("v5e:4x4", "default", (2, 2, 1)),
    "v6e-8": ("v6e:2x4", "default", (2, 4, 1)),
}
ALIASES = {"v5litepod-4": "v5e-4", "v5litepod-8": "v5e-8", "v5litepod-16": "v5e-16"}

# Per chip: HBM bytes and peak dense bf16 FLOP/s, from Google's Cloud TPU system architecture
# pages (cloud.google.com/tpu/docs/v4, /v5e, /v6e): v4 32 GiB, 275 TFLOP/s; v5e 16 GB,
# 197 TFLOP/s; v6e 32 GB, 918 TFLOP/s. float32 matmuls run at most at this rate too (by default
# XLA:TPU multiplies float32 in bf16 passes), so the roofline is an upper bound either way.
CHIPS = {
    "v4": {"hbm_bytes": 32 * 2**30, "peak_flops": 275e12},
    "v5e": {"hbm_bytes": 16 * 10**9, "peak_flops": 197e12},
    "v6e": {"hbm_bytes": 32 * 10**9, "peak_flops": 918e12},
}


def resolve_topology(name: str) -> tuple[str, tuple]:
  name = ALIASES.get(name, name)
  if name not in TOPOLOGIES:
    raise UserError(f"unknown TPU topology {name!r}; choose from "
                    f"{', '.join(list(TOPOLOGIES) + list(ALIASES))}")
  return name, TOPOLOGIES[name]


def _install_hint() -> str:
  import jax
  return (f"libtpu is not installed: run `python -m research.tpu.preflight --install_compiler` "
          f"(installs {_libtpu_requirement()} into {LIBTPU_DIR}), or on a TPU VM "
          f"`pip install 'jax[tpu]=={jax.__version__}'`")


def _libtpu_requirement() -> str:
  """The libtpu that jax[tpu] pins for the installed jax (e.g. 'libtpu==0.0.42.*')."""
  from importlib import metadata
  for req in metadata.requires("jax") or []:
    if req.startswith("libtpu") and "tpu" in req.split(";")[-1]:
      return req.split(";")[0].strip()
  return "libtpu"


def install_libtpu() -> str:
  """Installs the libtpu that jax[tpu] pins into LIBTPU_DIR (its own folder: importable from
  site-packages it would make every JAX program on a CPU machine probe for a TPU at start).
  Returns one line saying what is there; UserError when pip fails."""
  import subprocess
  requirement = _libtpu_requirement()
  stamp = os.path.join(LIBTPU_DIR, ".requirement")
  if libtpu_installed() and os.path.isfile(stamp) and open(stamp).read().strip() == requirement:
    return f"TPU compiler: {requirement} already in {LIBTPU_DIR}"
  proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                         "--disable-pip-version-check", "--upgrade", "--target", LIBTPU_DIR,
                         "--no-deps", requirement], capture_output=True, text=True)
  if proc.returncode != 0:
    lines = [l for l in proc.stderr.splitlines() if l.strip() and "WARNING" not in l]
    raise UserError(f"pip could not install {requirement}: {lines[-1] if lines else proc.returncode}")
  with open(stamp, "w") as f:
    f.write(requirement + "\n")
  return f"TPU compiler: {requirement} installed in {LIBTPU_DIR}"


def ensure_libtpu() -> None:
  """Makes `import libtpu` work (installed normally, or in LIBTPU_DIR), else a UserError."""
  try:
    import libtpu  # noqa: F401
    return
  except ImportError:
    pass
  if os.path.isdir(LIBTPU_DIR) and LIBTPU_DIR not in sys.path:
    sys.path.append(LIBTPU_DIR)
    try:
      import libtpu  # noqa: F401
      return
    except ImportError:
      pass
  raise UserError(_install_hint())


def topology_devices(name: str):
  """The compile-only devices of slice `name` (a key of TOPOLOGIES), all hosts' chips."""
  from jax.experimental import topologies
  topology, chip_config, bounds = TOPOLOGIES[name]
  return list(topologies.get_topology_desc(
      platform="tpu", topology_name=topology, chip_config_name=chip_config,
      chips_per_host_bounds=bounds, num_slices=1).devices)


def libtpu_installed() -> bool:
  """Whether `ensure_libtpu()` would succeed; changes nothing (sys.path stays as it is)."""
  import importlib.util
  if importlib.util.find_spec("libtpu") is not None:
    return True
  return os.path.isfile(os.path.join(LIBTPU_DIR, "libtpu", "__init__.py"))


# A queued resource's states (Cloud TPU's documentation): waiting, running, or gone.
WAITING = {"ACCEPTED", "WAITING_FOR_RESOURCES", "PROVISIONING", "CREATING"}
LOST = {"SUSPENDING", "SUSPENDED", "FAILED", "DELETING", "PREEMPTED", ""}


def decide(state: str, run_status: int | None, retries: int, max_retries: int) -> str:
  """--watch's next move: 'wait' (the slice is not ready), 'run' (ready, the run not started),
  'done' (the run ended well), 'recreate' (the slice was lost; re-queue it), 'give_up' (lost
  once more than max_retries allow), 'failed' (the run itself failed on a live slice).
  `run_status`: None before the run starts on this slice, else the run's exit status."""
  if run_status == 0:
    return "done"
  if state in LOST:
    return "give_up" if retries >= max_retries else "recreate"
  if state in WAITING:
    return "wait"
  if state == "ACTIVE":
    return "run" if run_status is None else "failed"
  return "wait"  # a state this script does not know: look again
