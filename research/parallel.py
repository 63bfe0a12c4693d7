"""Where the steps run: one device, `jax.jit` over a 1-D 'data' mesh, or `jax.pmap`.

Every flavour runs the same pure functions from research/train.py and sees the same global
batches, so they agree to float32 rounding (tests/test_parallel.py). The datasets live on the
devices as uint8 (replicated); the host sends only the int32 example indices of each batch, and
each process sends only its own share of those indices (its slice of the global batch).

Pick `jit` (the default) for new work: it is JAX's recommended path, works unchanged from one
CPU to a TPU pod, and lets XLA place the collectives. Pick `pmap` when you want the explicit
per-device program (`lax.pmean` over a named axis) that older code and papers use; JAX keeps it
in maintenance mode and, since 0.10, builds it on jit + shard_map.
"""
import functools

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from research import UserError

AXIS = "data"
FLAVOURS = ("jit", "pmap", "single")

# XLA:CPU hands convolutions (and their gradients) to YNNPACK by default; jitted steps on CPU
# use Eigen's kernels instead unless `config.xla_cpu_ynnpack` is set (scripts/profile_step.py
# times both; docs/performance.md). A per-compile option, probed once: jaxlib versions without it
# compile as usual.
_YNNPACK_OFF = {"xla_cpu_experimental_ynn_fusion_type": ""}
# YNNPACK for dots only (Eigen keeps the convolutions): its kernels run bfloat16 x bfloat16 ->
# float32 dots on AVX-512 BF16 / AMX, where Eigen's cannot; conv_impl='im2col_bf16' asks for it
# (research/cpu/convdot.py).
_YNNPACK_DOTS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


@functools.lru_cache(maxsize=None)
def _ynnpack_option_exists() -> bool:
  try:
    jax.jit(lambda x: x + 1, compiler_options=_YNNPACK_OFF)(np.float32(0))
    return True
  except Exception:  # an unknown option (jaxlib) or argument (jax)
    return False


def compiler_options(ynnpack: bool = False, platform: str | None = None,
                     ynnpack_dots: bool = False) -> dict | None:
  """`jax.jit(..., compiler_options=...)` for the train and eval steps on `platform` (default:
  JAX's default backend): YNNPACK off, or (`ynnpack_dots`) on for dots only."""
  if ynnpack or (platform or jax.default_backend()) != "cpu" or not _ynnpack_option_exists():
    return None
  return dict(_YNNPACK_DOTS if ynnpack_dots else _YNNPACK_OFF)


def host_slice(global_idx: np.ndarray) -> np.ndarray:
  """This process's contiguous share of the batch axis (the last axis) of `global_idx`."""
  per = global_idx.shape[-1] // jax.process_count()
  start = jax.process_index() * per
  return global_idx[..., start:start + per]


def _local_copy(x):
  """A numpy copy of a replicated (possibly multi-host) array: this process's first shard.

  Reading a shard runs no computation. Indexing or adding arrays that span several processes
  would: each such op is a program every process must run, outside the compiled steps, and
  two processes waiting in them hung at the end of two-process runs (seen with jit and pmap).
  """
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    x = x.addressable_data(0)
  return np.asarray(jax.device_get(x))


def _sum_on_host(trees):
  """Sums per-batch eval totals on the host, in batch order.

  The evaluators fetch each batch's totals before they start the next batch: with several
  programs that hold collectives in flight at once, two processes' CPU runtimes can run them
  in different orders and wait for each other forever (see _local_copy).
  """
  return jax.tree.map(lambda *xs: sum(xs[1:], xs[0]), *trees)


class MeshRunner:
  """`jax.jit` over a 1-D mesh: state and data replicated, batch indices split over 'data'.

  With one device this is the plain single-device jit step (`parallelism='single'`).
  """

  def __init__(self, devices, train_chunk, eval_step, options=None):
    self.mesh = Mesh(np.asarray(devices), (AXIS,))
    self.num_devices = len(devices)
    self._repl = NamedSharding(self.mesh, P())
    self._split = NamedSharding(self.mesh, P(None, AXIS))
    self._split_batch = NamedSharding(self.mesh, P(AXIS))
    self._train = jax.jit(train_chunk, donate_argnums=0, out_shardings=self._repl,
                          compiler_options=options)
    self._eval = jax.jit(eval_step, out_shardings=self._repl, compiler_options=options)

  def _global(self, sharding, local):
    return jax.make_array_from_process_local_data(sharding, np.asarray(local))

  def put_replicated(self, tree):
    return jax.tree.map(lambda x: self._global(self._repl, x), tree)

  def get(self, tree):
    return jax.tree.map(_local_copy, tree)

  def _indices(self, global_idx):
    return self._global(self._split, host_slice(global_idx))

  def train(self, state, data, global_idx, num_steps):
    n = self._global(self._repl, np.int32(num_steps))
    return self._train(state, *data, self._indices(global_idx), n)

  def lower(self, state, data, steps_per_call, batch_size, eval_batch):
    """The train chunk and eval step lowered for abstract `state` and `data` (pytrees of
    ShapeDtypeStruct): what `train` and `evaluate` run, compilable for devices not attached."""
    repl = lambda tree: jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=self._repl), tree)
    state, data = repl(state), repl(data)
    idx = jax.ShapeDtypeStruct((steps_per_call, batch_size), np.int32, sharding=self._split)
    n = jax.ShapeDtypeStruct((), np.int32, sharding=self._repl)
    eval_idx = jax.ShapeDtypeStruct((eval_batch,), np.int32,
                                    sharding=NamedSharding(self.mesh, P(AXIS)))
    return (self._train.lower(state, *data, idx, n),
            self._eval.lower(state.params, *data, eval_idx, eval_idx))

  def evaluate(self, params, data, global_idx, global_mask):
    """Sums of the eval step over batches idx[b], mask[b] ([num_batches, eval_batch])."""
    batch = lambda x: self._global(self._split_batch, host_slice(x))  # sliced on the host
    return _sum_on_host([self.get(self._eval(params, *data, batch(global_idx[b]),
                                             batch(global_mask[b])))
                         for b in range(global_idx.shape[0])])


class PmapRunner:
  """`jax.pmap` over this process's devices; the steps `lax.pmean`/`psum` over axis 'data'.

  State and data carry a leading local-device axis; batch indices are laid out per device.
  `jax.pmap` takes no compiler options, so on CPU it runs with XLA's default (YNNPACK) kernels.
  """

  def __init__(self, train_chunk, eval_step, devices=None):
    """`devices`: every device of every process (default: jax.devices())."""
    devices = list(jax.devices() if devices is None else devices)
    self.local_devices = [d for d in devices if d.process_index == jax.process_index()]
    self.num_devices = len(devices)
    self._local_mesh = Mesh(np.asarray(self.local_devices), (AXIS,))
    self._stacked = NamedSharding(self._local_mesh, P(AXIS))
    pmap_devices = None if devices == jax.devices() else devices
    self._train = jax.pmap(functools.partial(train_chunk, axis_name=AXIS), axis_name=AXIS,
                           donate_argnums=0, devices=pmap_devices)
    self._eval = jax.pmap(functools.partial(eval_step, axis_name=AXIS), axis_name=AXIS,
                          devices=pmap_devices)

  def put_replicated(self, tree):
    n = len(self.local_devices)
    return jax.tree.map(
        lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (n,) + np.shape(x)),
                                 self._stacked), tree)

  def get(self, tree):
    """Numpy copies of the first local device's values (every device holds the same)."""
    def first(x):
      if not isinstance(x, jax.Array):  # already on the host
        return np.asarray(x)
      return np.asarray(x.addressable_data(0)).reshape(np.shape(x)[1:])
    return jax.tree.map(first, tree)

  def _per_device(self, global_idx):
    """[..., B] -> [local devices, ..., B / devices], device d of this process gets slice d."""
    local = host_slice(global_idx)
    n = len(self.local_devices)
    local = local.reshape(local.shape[:-1] + (n, local.shape[-1] // n))
    return jax.device_put(np.moveaxis(local, -2, 0), self._stacked)

  def train(self, state, data, global_idx, num_steps):
    n = np.full((len(self.local_devices),), num_steps, np.int32)
    return self._train(state, *data, self._per_device(global_idx), n)

  def lower(self, state, data, steps_per_call, batch_size, eval_batch):
    """As MeshRunner.lower: this process's view, a leading axis of its local devices."""
    n = len(self.local_devices)
    stack = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct((n,) + x.shape, x.dtype), tree)
    state, data = stack(state), stack(data)
    idx = jax.ShapeDtypeStruct((n, steps_per_call, batch_size // self.num_devices), np.int32)
    eval_idx = jax.ShapeDtypeStruct((n, eval_batch // self.num_devices), np.int32)
    steps = jax.ShapeDtypeStruct((n,), np.int32)
    return (self._train.lower(state, *data, idx, steps),
            self._eval.lower(state.params, *data, eval_idx, eval_idx))

  def evaluate(self, params, data, global_idx, global_mask):
    return _sum_on_host([self.get(self._eval(params, *data, self._per_device(global_idx[b]),
                                             self._per_device(global_mask[b])))
                         for b in range(global_idx.shape[0])])


def make_runner(parallelism: str, train_chunk, eval_step, ynnpack: bool = False, devices=None,
                ynnpack_dots: bool = False):
  """The runner over `devices` (default: jax.devices(); research/tpu/preflight.py passes the devices
  of a TPU topology description, to compile for them without them)."""
  devices = list(jax.devices() if devices is None else devices)
  options = compiler_options(ynnpack, devices[0].platform, ynnpack_dots)
  if parallelism == "jit":
    return MeshRunner(devices, train_chunk, eval_step, options)
  if parallelism == "single":
    if jax.process_count() > 1:
      raise UserError("parallelism='single' runs on one device; use 'jit' or 'pmap' with "
                      f"{jax.process_count()} processes")
    return MeshRunner(devices[:1], train_chunk, eval_step, options)
  if parallelism == "pmap":
    return PmapRunner(train_chunk, eval_step, devices)
  raise UserError(f"unknown parallelism {parallelism!r}; choose 'jit', 'pmap' or 'single'")
