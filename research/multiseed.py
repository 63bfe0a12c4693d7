"""K seeds of one model trained by one compiled program (`jax.vmap` over the train state).

Each seed keeps its own init and its own data order (batch_indices(seed, ...)), exactly as K
separate runs would; the K updates of a step are batched into the same matmuls/convolutions,
which is what makes small models fast. Used by ablation sweeps and scripts/benchmark.py.
"""
import time

import jax
import numpy as np

from research import data, models, parallel, steps, train, transforms


def train_seeds(config, seeds) -> list[dict]:
  """Trains `config` once per seed, all seeds at once on the default device; returns results."""
  seeds = [int(s) for s in seeds]
  ds = transforms.apply(config, data.load_dataset(config))
  model = models.create_model(config, ds.num_classes)
  n_train = len(ds.train_labels)
  steps_per_epoch = n_train // config.batch_size
  total = config.num_train_steps if config.num_train_steps > 0 else config.num_epochs * steps_per_epoch
  states = []
  for seed in seeds:
    c = config.copy_and_resolve_references()
    c.seed = seed
    states.append(train.create_train_state(c, model, ds.image_shape, total))
  # Stack leaf by leaf under the first state's tree (the K optimizers are equal but not `==`).
  treedef = jax.tree.structure(states[0])
  state = treedef.unflatten([np.stack(xs) for xs in zip(*map(jax.tree.leaves, states))])
  steps_per_call, rolled = steps.chunk_plan(jax.default_backend(), config.steps_per_call)
  chunk = steps.make_train_chunk(steps.make_train_step(transforms.make_augment(config)),
                                 steps_per_call, rolled)
  options = parallel.compiler_options(config.xla_cpu_ynnpack)
  vchunk = jax.jit(jax.vmap(chunk, in_axes=(0, None, None, 0, None)), donate_argnums=0,
                   compiler_options=options)
  veval = jax.jit(jax.vmap(steps.make_eval_step(model.apply), in_axes=(0, None, None, None, None)),
                  compiler_options=options)
  images, labels = jax.device_put((ds.train_images, ds.train_labels))
  state = jax.device_put(state)

  step, seconds, losses = 0, 0.0, []
  first_call = None  # (steps, seconds) of the first call, which holds the compilation
  while step < total:
    n = min(steps_per_call, total - step)
    idx = np.zeros((len(seeds), steps_per_call, config.batch_size), np.int32)
    for k, seed in enumerate(seeds):
      idx[k, :n] = train.batch_indices(seed, step, n, steps_per_epoch, n_train, config.batch_size)
    t0 = time.time()
    state, metrics = vchunk(state, images, labels, idx, n)
    losses.append(np.asarray(metrics["loss"])[:, :n])  # waits for the chunk
    seconds += time.time() - t0
    step += n
    if first_call is None:
      first_call = (step, seconds)

  test_images, test_labels = jax.device_put((ds.test_images, ds.test_labels))
  idx, mask = train.eval_indices(len(ds.test_labels), config.eval_batch_size)
  totals = [veval(state.params, test_images, test_labels, idx[b], mask[b]) for b in range(len(idx))]
  totals = jax.tree.map(lambda *x: np.sum(np.stack(x), axis=0), *totals)
  params = jax.device_get(state.params)
  return [{
      "seed": seed, "steps": step, "train_seconds": seconds, "model": config.model,
      # after the first (compiling) call; 0 when there was only one call
      "steady_steps": step - first_call[0], "steady_seconds": seconds - first_call[1],
      "test_accuracy": float(totals["correct"][k]) / float(totals["count"][k]),
      "test_loss": float(totals["loss_sum"][k]) / float(totals["count"][k]),
      "final_train_loss": float(losses[-1][k, -1]),
      "params": jax.tree.map(lambda x: x[k], params),
  } for k, seed in enumerate(seeds)]
