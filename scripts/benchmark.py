"""This project vs the seeds' Keras code, side by side in one run, on real MNIST.

  python scripts/benchmark.py --epochs=10 --output_dir=runs/benchmark

Both train the seed CNN and the seed MLP on the same uint8 arrays (TFDS), batch 128, Adam 1e-3
(constant), same epochs, testing after every epoch. Each framework runs in its own subprocess
(so peak memory is its own). Reported per model and framework:
  images/s      steady-state training throughput (epochs after the first)
  compile s     first epoch's extra time over a steady epoch (tracing + XLA compilation)
  to target     training seconds until the test accuracy first reaches 99.0% (CNN) / 97.5% (MLP)
  peak RSS      the subprocess's maximum resident memory
and the ratios project/Keras; and the roofline of the project's train step (XLA's FLOP count
over this machine's measured matmul rate: the images/s no implementation of the same math can
pass). A benchmark prints numbers; it asserts nothing. Sweeps, inline vs Ray:
scripts/benchmark_sweep.py.
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = {"cnn": 0.99, "mlp": 0.975}


def _peak_mb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _summary(epoch_seconds, accuracies, model):
  steady = sorted(epoch_seconds[1:])[len(epoch_seconds[1:]) // 2] if len(epoch_seconds) > 1 else epoch_seconds[0]
  elapsed, to_target = 0.0, None
  for sec, acc in zip(epoch_seconds, accuracies):
    elapsed += sec
    if to_target is None and acc >= TARGET[model]:
      to_target = elapsed
  return {"images_per_s": 60000 // 128 * 128 / steady, "compile_s": max(epoch_seconds[0] - steady, 0.0),
          "to_target_s": to_target, "final_accuracy": accuracies[-1], "epoch_seconds": epoch_seconds,
          "accuracies": accuracies, "peak_mb": _peak_mb()}


def run_project(model, epochs, conv_impl="auto"):
  from configs import mnist_cnn, mnist_mlp
  from research import metrics, train
  c = (mnist_cnn if model == "cnn" else mnist_mlp).get_config()
  c.num_epochs, c.lr_schedule, c.parallelism = epochs, "constant", "single"
  c.conv_impl = conv_impl
  c.checkpoint_every_steps, c.eval_train = 10**9, False
  before = _matmul_gflop_per_s()
  with tempfile.TemporaryDirectory() as workdir:
    results = train.train_and_evaluate(c, workdir)
    tests = [m for m in metrics.read_jsonl(os.path.join(workdir, "metrics.jsonl")) if m["split"] == "test"]
  cumulative = [m["train_seconds"] for m in tests]
  epoch_seconds = [b - a for a, b in zip([0.0] + cumulative, cumulative)]
  out = _summary(epoch_seconds, [m["accuracy"] for m in tests], model)
  # The machine's matmul rate just before and after this training: these boxes' speed drifts
  # over a run, so the ceiling (run_roofline) takes the highest rate seen around it too.
  return {**out, "conv_impl": results["conv_impl"], "cpu": results["cpu"],
          "matmul_gflop_per_s": [before, _matmul_gflop_per_s()]}


def _matmul_gflop_per_s():
  """This machine's float32 matmul rate now: the best of 5 2048^3 products (XLA:CPU's best case)."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  a = jnp.asarray(np.random.default_rng(0).normal(size=(2048, 2048)), jnp.float32)
  matmul = jax.jit(lambda a: a @ a)
  jax.block_until_ready(matmul(a))
  best = min(_timed(lambda: jax.block_until_ready(matmul(a))) for _ in range(5))
  return 2 * 2048**3 / best / 1e9


def run_keras(model, epochs):
  os.environ.setdefault("KERAS_BACKEND", "tensorflow")
  os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"  # the peer at its best: TF's oneDNN kernels on x86
  from research import data
  import numpy as np
  import tensorflow as tf
  from tensorflow import keras
  ds = data.load_tfds("mnist")
  x_train, x_test = ds.train_images.astype("float32") / 255.0, ds.test_images.astype("float32") / 255.0
  if model == "cnn":  # the seed's Example 2, verbatim layers
    net = keras.models.Sequential([
        keras.layers.Input((28, 28, 1)),
        keras.layers.Conv2D(32, (3, 3), activation="relu"),
        keras.layers.MaxPooling2D((2, 2)),
        keras.layers.Conv2D(64, (3, 3), activation="relu"),
        keras.layers.MaxPooling2D((2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax")])
  else:  # the seed's Dense(128) on the flat 784-vector
    net = keras.models.Sequential([keras.layers.Input((28, 28, 1)), keras.layers.Flatten(),
                                   keras.layers.Dense(128, activation="relu"),
                                   keras.layers.Dense(10, activation="softmax")])
  net.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
  tf.keras.utils.set_random_seed(0)
  epoch_seconds, accuracies = [], []
  for _ in range(epochs):  # one epoch per fit call, so evaluation stays outside the timing
    t0 = time.time()
    net.fit(x_train, ds.train_labels, batch_size=128, epochs=1, shuffle=True, verbose=0)
    epoch_seconds.append(time.time() - t0)
    accuracies.append(float(net.evaluate(x_test, ds.test_labels, batch_size=1000, verbose=0)[1]))
  return _summary(epoch_seconds, accuracies, model)


def run_roofline(model):
  """The project's compiled train step: XLA's FLOP count, and the fastest it could run here.

  The ceiling divides the step's FLOPs by this machine's measured float32 matmul rate (a
  2048^3 product, the best case for XLA:CPU), so it bounds any implementation of the same math.
  The FLOPs are counted on the `xla` formulation: XLA counts none inside a custom call, so the
  step that `auto` picks (`fused`, research/cpu/fused.py) would hide its first layer's.
  """
  import jax
  import jax.numpy as jnp
  import numpy as np
  from configs import mnist_cnn, mnist_mlp
  from research import experiment, models, parallel, steps
  c = (mnist_cnn if model == "cnn" else mnist_mlp).get_config()
  c.conv_impl = "xla"  # every convolution visible to XLA's cost analysis
  net = models.create_model(c, 10)
  state = experiment.create_train_state(c, net, (28, 28, 1), 1000)
  images = jnp.zeros((c.batch_size, 28, 28, 1), jnp.uint8)
  labels = jnp.zeros((c.batch_size,), jnp.int32)
  compiled = jax.jit(steps.make_train_step(), compiler_options=parallel.compiler_options()).lower(
      state, images, labels).compile()
  cost = compiled.cost_analysis()
  flops = float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])
  return {"step_gflop": flops / 1e9, "matmul_gflop_per_s": _matmul_gflop_per_s(),
          "batch_size": c.batch_size}


def _timed(fn):
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def _worker(args):
  if args.worker == "project":
    out = run_project(args.model, args.epochs, args.conv_impl)
  elif args.worker == "keras":
    out = run_keras(args.model, args.epochs)
  else:
    out = run_roofline(args.model)
  print("RESULT " + json.dumps(out), flush=True)


def _spawn(worker, model, args, conv_impl="auto"):
  cmd = [sys.executable, os.path.abspath(__file__), f"--worker={worker}", f"--model={model}",
         f"--epochs={args.epochs}", f"--conv_impl={conv_impl}"]
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  if proc.returncode or not lines:
    sys.exit(f"error: {worker} {model} failed:\n{proc.stderr[-3000:]}")
  return json.loads(lines[-1][7:])


def _fmt(x, spec):
  return "not reached" if x is None else format(x, spec) + " s"


FLAGS = flags.FLAGS
flags.DEFINE_integer("epochs", 10, "Epochs per framework and model (>= 2: the first compiles).")
flags.DEFINE_list("models", ["cnn", "mlp"], "Seed models to compare.")
flags.DEFINE_string("output_dir", "runs/benchmark", "benchmark.md and benchmark.json.")
flags.DEFINE_enum("worker", None, ["project", "keras", "roofline"], "Internal: one measurement.")
flags.DEFINE_string("model", "cnn", "Internal: the worker's model.")
flags.DEFINE_string("conv_impl", "auto", "Internal: the project worker's config.conv_impl.")
DEFAULT_CONV_IMPLS = ["nn.Conv", "xla", "im2col", "im2col_bf16", "hybrid", "fused"]
flags.DEFINE_list("conv_impls", DEFAULT_CONV_IMPLS,
                  "More project rows for the CNN, one per convolution formulation "
                  "(research/cpu/convdot.py), beside the one `auto` picks; empty: none.")


def main(argv):
  del argv
  args = FLAGS
  if args.epochs < 2:
    sys.exit("error: --epochs must be >= 2 (the first epoch holds compilation)")
  if args.worker:
    return _worker(args)
  import jax
  os.makedirs(args.output_dir, exist_ok=True)
  rows, report = [], {"epochs": args.epochs, "jax": jax.__version__, "device": str(jax.devices()[0]),
                      "cpu_count": os.cpu_count()}
  flag_text = "" if args.conv_impls == DEFAULT_CONV_IMPLS else \
      f" --conv_impls={','.join(args.conv_impls)}"
  head = [f"Benchmark: `python scripts/benchmark.py --epochs={args.epochs}{flag_text}` (jax "
          f"{jax.__version__}, {jax.devices()[0].platform}, {os.cpu_count()} CPUs), real MNIST, batch "
          "128, Adam 1e-3.", "",
          "| model | framework | images/s | compile s | time to target | final test acc | peak RSS MB |",
          "|---|---|---|---|---|---|---|"]
  lines, impl_lines = [], []
  for model in args.models:
    res = {fw: _spawn(fw, model, args) for fw in ("project", "keras")}
    report[model] = res
    report["cpu"] = res["project"]["cpu"]
    for fw, r in res.items():
      name = f"project ({r['conv_impl']})" if fw == "project" and model == "cnn" else fw
      lines.append(f"| {model} | {name} | {r['images_per_s']:,.0f} | {r['compile_s']:.1f} | "
                   f"{_fmt(r['to_target_s'], '.1f')} (to {100 * TARGET[model]:.1f}%) | "
                   f"{100 * r['final_accuracy']:.2f}% | {r['peak_mb']:,.0f} |")
    if model == "cnn":  # the other convolution formulations, in the same run
      for impl in [i for i in args.conv_impls if i != res["project"]["conv_impl"]]:
        r = report.setdefault("cnn_conv_impls", {})[impl] = _spawn("project", model, args, impl)
        impl_lines.append(f"| {impl} | {r['images_per_s']:,.0f} | "
                          f"{r['images_per_s'] / res['keras']['images_per_s']:.2f}x | "
                          f"{r['images_per_s'] / res['project']['images_per_s']:.2f}x | "
                          f"{_fmt(r['to_target_s'], '.1f')} | {100 * r['final_accuracy']:.2f}% |")
    a, b = res["project"], res["keras"]
    ratio = (f"{a['to_target_s'] / b['to_target_s']:.2f}x" if a["to_target_s"] and b["to_target_s"]
             # Keras would have needed more than all its training time
             else f"< {a['to_target_s'] / sum(b['epoch_seconds']):.2f}x (Keras did not reach it in "
                  f"{args.epochs} epochs)" if a["to_target_s"]
             else "n/a (the project did not reach it)")
    rows.append(f"| {model} | {a['images_per_s'] / b['images_per_s']:.2f}x | {ratio} |")
  lines = [head[0].replace("real MNIST", f"{report.get('cpu', 'unknown CPU')}, real MNIST")] + \
      head[1:] + lines
  lines += ["", "| model | images/s project/Keras | time to target project/Keras |", "|---|---|---|"] + rows
  if impl_lines:
    lines += ["", f"The seed CNN's other convolution formulations (`config.conv_impl`; the project row "
              f"above is `{report['cnn']['project']['conv_impl']}`, what `auto` picks here):", "",
              "| conv_impl | images/s | / Keras | / project row | time to 99.0% | final test acc |",
              "|---|---|---|---|---|---|"] + impl_lines
  lines += ["", "| model | train step GFLOP (XLA) | matmul GFLOP/s here | ceiling images/s | "
            "project images/s / ceiling | ceiling / Keras images/s |", "|---|---|---|---|---|---|"]
  rates = []
  for model in args.models:
    r = _spawn("roofline", model, args)
    # the highest matmul rate measured in this run: around the project's training and now
    seen = report[model]["project"]["matmul_gflop_per_s"] + [r["matmul_gflop_per_s"]]
    rates.append(f"{model}: {', '.join(f'{g:.0f}' for g in seen)}")
    r["ceiling_images_per_s"] = r["batch_size"] * max(seen) / r["step_gflop"]
    report[f"roofline_{model}"] = r
    ceiling = r["ceiling_images_per_s"]
    lines.append(f"| {model} | {r['step_gflop']:.3f} | {max(seen):.0f} | {ceiling:,.0f} | "
                 f"{report[model]['project']['images_per_s'] / ceiling:.2f} | "
                 f"{ceiling / report[model]['keras']['images_per_s']:.2f}x |")
  lines += ["", "matmul GFLOP/s here: the highest of the rates measured just before and just after "
            "the project's training and at the end of the run (" + "; ".join(rates) + ")."]
  text = "\n".join(lines)
  print(text)
  with open(os.path.join(args.output_dir, "benchmark.md"), "w") as f:
    f.write(text + "\n")
  with open(os.path.join(args.output_dir, "benchmark.json"), "w") as f:
    json.dump(report, f, indent=2)


if __name__ == "__main__":
  app.run(main)
