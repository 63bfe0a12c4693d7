"""Pure step functions: no flags, no devices, no I/O. research/parallel.py places them.

A train "chunk" runs up to `steps_per_call` train steps in one compiled call.
Batches are gathered on the device from the uint8 dataset by their int32 example indices.
"""
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state


class TrainState(train_state.TrainState):
  rng: jax.Array  # raw uint32[2] key; step s draws its randomness from fold_in(rng, s)


def normalize(images):
  """uint8 images -> float32 in [0, 1]; float inputs (tabular data, Gaussian images) as they are."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def make_train_step(augment=None, accum_steps: int = 1):
  """One optimizer step on a uint8 batch. `augment(key, x)` transforms the float batch.

  `accum_steps` > 1: the batch is split into that many equal micro-batches whose gradients are
  computed one after another (a `lax.scan`: one micro-batch's activations in memory at a time)
  and averaged, then applied once: the step of the whole batch, to float32 rounding.
  """

  def grads(params, apply_fn, x, labels):
    def loss_fn(params):
      logits = apply_fn({"params": params}, x)
      return cross_entropy(logits, labels).mean(), logits

    (loss, logits), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return g, loss, (logits.argmax(-1) == labels).mean()

  def train_step(state, images, labels, axis_name=None):
    x = normalize(images)
    if augment is not None:
      x = augment(jax.random.fold_in(state.rng, state.step), x)
    if accum_steps == 1:
      g, loss, accuracy = grads(state.params, state.apply_fn, x, labels)
    else:
      micro = lambda a: a.reshape((accum_steps, a.shape[0] // accum_steps) + a.shape[1:])

      def body(sums, batch):
        return jax.tree.map(jnp.add, sums, grads(state.params, state.apply_fn, *batch)), None

      zeros = (jax.tree.map(jnp.zeros_like, state.params), jnp.float32(0), jnp.float32(0))
      sums, _ = jax.lax.scan(body, zeros, (micro(x), micro(labels)))
      g, loss, accuracy = jax.tree.map(lambda s: s / accum_steps, sums)
    if axis_name is not None:  # pmap: every device holds an equal share of the global batch
      g, loss, accuracy = jax.lax.pmean((g, loss, accuracy), axis_name)
    return state.apply_gradients(grads=g), {"loss": loss, "accuracy": accuracy}

  return train_step


def make_train_chunk(train_step, steps_per_call, rolled=False):
  """(state, images, labels, idx[steps_per_call, B], num_steps) -> (state, metrics[steps_per_call]).

  Unrolled (the default), the steps are one straight-line program; `rolled=True` runs them as a
  `lax.scan`, one step per loop iteration. `chunk_plan` picks per backend. Steps i >= num_steps
  compute but keep the old state (a select), so a short last chunk before an epoch end or a
  checkpoint reuses the same compiled program.
  """

  def step_or_keep(state, images, labels, batch, i, num_steps, axis_name):
    new_state, metrics = train_step(state, images[batch], labels[batch], axis_name)
    active = i < num_steps
    return jax.tree.map(lambda new, old: jnp.where(active, new, old), new_state, state), metrics

  if rolled:

    def train_chunk(state, images, labels, idx, num_steps, axis_name=None):
      def body(state, xs):
        batch, i = xs
        return step_or_keep(state, images, labels, batch, i, num_steps, axis_name)

      xs = (idx, jnp.arange(steps_per_call, dtype=jnp.int32))
      state, metrics = jax.lax.scan(body, state, xs)
      return state, jax.tree.map(lambda m: m.astype(jnp.float32), metrics)

  else:

    def train_chunk(state, images, labels, idx, num_steps, axis_name=None):
      all_metrics = []
      for i in range(steps_per_call):
        state, metrics = step_or_keep(state, images, labels, idx[i], i, num_steps, axis_name)
        all_metrics.append(metrics)
      return state, jax.tree.map(lambda *m: jnp.stack(m).astype(jnp.float32), *all_metrics)

  return train_chunk


# How a chunk of `steps_per_call` steps is compiled, per backend: the one place that decides.
# - CPU: straight-line (unrolled) steps, at most CPU_MAX_STEPS_PER_CALL in one program. XLA:CPU
#   can run a step in a rolled loop's body several times slower than as straight-line code, and
#   straight-line code compiles in time that grows with its length, so a longer
#   `steps_per_call` runs as several calls of the 10-step program (the same steps on the same
#   batches, grouped differently: equal to float32 rounding, tests/test_fast_paths.py).
# - TPU and GPU: the whole chunk as one rolled `lax.scan`, which libtpu compiles about as fast as
#   one step (research/tpu/preflight.py reports compile times for a slice).
CPU_MAX_STEPS_PER_CALL = 10


def chunk_plan(platform: str, steps_per_call: int) -> tuple[int, bool]:
  """(steps per compiled call, rolled) for `config.steps_per_call` on 'cpu', 'gpu' or 'tpu'."""
  if platform == "cpu":
    return min(steps_per_call, CPU_MAX_STEPS_PER_CALL), False
  return steps_per_call, True


def make_eval_step(apply_fn):
  """(params, images, labels, idx[eb], mask[eb]) -> summed loss, correct and count of a batch.

  Padding examples carry mask 0, so every real example is counted exactly once.
  """

  def eval_step(params, images, labels, idx, mask, axis_name=None):
    logits = apply_fn({"params": params}, normalize(images[idx]))
    y = labels[idx]
    totals = {
        "loss_sum": (cross_entropy(logits, y) * mask).sum(),
        "correct": ((logits.argmax(-1) == y) * mask).sum(dtype=jnp.int32),
        "count": mask.sum(dtype=jnp.int32),
    }
    if axis_name is not None:
      totals = jax.lax.psum(totals, axis_name)
    return totals

  return eval_step
