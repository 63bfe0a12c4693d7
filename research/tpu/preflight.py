"""TPU preflight: compile a config's exact train chunk and eval step for a TPU slice, here.

  python -m research.tpu.preflight --install_compiler      # once: libtpu, ~700 MB
  python -m research.tpu.preflight --config=configs/mnist_cnn.py:tpu --topology=v5e-8
  python -m research.tpu.preflight --config=configs/mnist_cnn.py:gpu --platform=cuda

No TPU is needed: libtpu's compiler runs on this machine against a description of the slice
(jax.experimental.topologies). The program is the one training runs: experiment.Program builds the
model, optimizer, train chunk and eval step, research/parallel.py's runner (jit over a mesh of
the slice's chips, or pmap) places them, and only the arguments are abstract (ShapeDtypeStruct).
Prints a table, then one JSON line (the last line of stdout): chips, hosts, batch per chip,
compile seconds, HBM per chip against the chip's, FLOPs per train step and a roofline rate.
Exits 2 with one `error: ...` line when the config cannot run on the slice (batch not divisible
by the chips, HBM exceeded, an op the TPU compiler rejects) or libtpu is not installed.

Slice names, chip facts and where libtpu is found: research/tpu/slices.py.
"""
import contextlib
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TFDS's tensorflow: no start-up chatter

from absl import app, flags, logging
from ml_collections import config_flags

from research import UserError, cli
from research.tpu import slices as tpu

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:variants]).",
                                lock_config=True)
flags.DEFINE_string("topology", None, "TPU slice: v4-8, v4-16, v4-32, v5e-4, v5e-8 (= v5litepod-8), "
                    "v5e-16, v6e-8.")
flags.DEFINE_enum("platform", "tpu", ["tpu", "cuda", "rocm"],
                  "tpu: compile for --topology with libtpu. cuda, rocm: lower the single-device "
                  "program for that GPU platform with jax.export (no GPU, no compiler needed) and "
                  "check it holds no CPU-only kernel, no host callback, and a rolled chunk.")
flags.DEFINE_bool("install_compiler", False, "Install the TPU compiler (the libtpu that jax[tpu] "
                  "pins for the installed jax) into the venv's tpu-compiler folder, then exit "
                  "(or go on with --config and --topology).")


@contextlib.contextmanager
def quiet_stderr():
  """Sends file descriptor 2 (libtpu's C++ logging) to a file; replays it if the block fails."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile(mode="w+b") as log:
    os.dup2(log.fileno(), 2)
    failed = False
    try:
      yield
    except UserError:
      raise
    except BaseException:
      failed = True
      raise
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      if failed:
        log.seek(0)
        sys.stderr.write(log.read().decode(errors="replace"))


def _compile(lowered, what: str, chips: str):
  """`lowered.compile()` and its seconds; the TPU compiler's refusal as one UserError line."""
  t0 = time.perf_counter()
  try:
    compiled = lowered.compile()
  except Exception as e:  # jax's JaxRuntimeError / XlaRuntimeError: message from libtpu
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    first = lines[0] if lines else type(e).__name__
    if "RESOURCE_EXHAUSTED" in first or "memory" in first.lower():
      raise UserError(f"HBM exceeded on {chips}: the {what} does not fit: {first[:300]}") from None
    raise UserError(f"the TPU compiler rejects the {what} for {chips}: {first[:300]}") from None
  return compiled, time.perf_counter() - t0


def _flops(compiled) -> float:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per program
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", 0.0))


def _hbm(compiled) -> dict:
  m = compiled.memory_analysis()
  args, out, alias, temp = (m.argument_size_in_bytes, m.output_size_in_bytes,
                            m.alias_size_in_bytes, m.temp_size_in_bytes)
  code = m.generated_code_size_in_bytes
  # Donated state: outputs that alias arguments take no memory of their own.
  return {"arguments": args, "outputs": out, "aliased": alias, "temporaries": temp,
          "code": code, "total": args + out - alias + temp + code}


def preflight(config, topology: str) -> dict:
  """Compiles `config`'s train chunk and eval step for the slice `topology`; returns the facts.

  Raises UserError (one line) when the config cannot run there or libtpu is missing.
  """
  name, _ = tpu.resolve_topology(topology)
  tpu.ensure_libtpu()
  import jax
  import numpy as np

  from research import data, experiment, transforms

  # libtpu's warnings about TPU_* environment variables, TensorFlow's start-up lines: kept out of
  # sight unless something fails unexpectedly.
  with quiet_stderr():
    devices = tpu.topology_devices(name)
    chips = len(devices)
    hosts = len({d.process_index for d in devices})
    num_devices = 1 if config.parallelism == "single" else chips
    experiment.validate(config, num_devices, hosts)  # the batch splits over the chips
    ds = transforms.apply(config, data.load_dataset(config))
    program = experiment.Program(config, ds, "tpu", num_devices)
    runner = program.make_runner(devices)
    state = program.abstract_state()
    data_ = tuple(jax.ShapeDtypeStruct(x.shape, x.dtype)
                  for x in (ds.train_images, ds.train_labels))
    train_lowered, eval_lowered = runner.lower(state, data_, program.steps_per_call,
                                               config.batch_size, program.eval_batch)
    train_compiled, train_s = _compile(train_lowered, "train chunk", name)
    eval_compiled, eval_s = _compile(eval_lowered, "eval step", name)

  family = name.split("-")[0]
  chip = tpu.CHIPS[family]
  hbm = _hbm(train_compiled)
  eval_hbm = _hbm(eval_compiled)
  per_chip_batch = config.batch_size // num_devices
  # One chip's program. XLA's cost analysis counts a while loop's body once, so a rolled chunk
  # reports one step's FLOPs (the MLP's rolled 10-step chunk on v5e-8: 55 MFLOP, one step of
  # batch 128; tests/test_preflight.py checks the count against the model's matmuls); an
  # unrolled one holds all its steps.
  flops_step = _flops(train_compiled) / (1 if program.rolled else program.steps_per_call)
  roofline = per_chip_batch * chip["peak_flops"] / flops_step if flops_step else None
  report = {
      "topology": name, "tpu_topology": tpu.TOPOLOGIES[name][0], "device_kind": devices[0].device_kind,
      "chips": chips, "hosts": hosts, "parallelism": config.parallelism,
      "devices_used": num_devices, "global_batch": config.batch_size,
      "per_chip_batch": per_chip_batch,
      # what one chip holds activations for at a time (grad_accum_steps micro-batches a step)
      "per_chip_micro_batch": per_chip_batch // config.grad_accum_steps,
      "dtype": "bfloat16" if config.half_precision else "float32",
      "model": config.model, "num_params": int(sum(np.prod(x.shape) for x in
                                                    jax.tree.leaves(state.params))),
      "steps_per_call": program.steps_per_call,
      "compile_seconds": {"train_chunk": round(train_s, 2), "eval_step": round(eval_s, 2)},
      "hbm_per_chip_bytes": {"train_chunk": hbm, "eval_step": eval_hbm,
                             "needed": max(hbm["total"], eval_hbm["total"]),
                             "chip": chip["hbm_bytes"]},
      "flops_per_train_step_per_chip": flops_step,
      "peak_flops_per_chip": chip["peak_flops"],
      "roofline_images_per_second_per_chip": roofline,
      "jax": jax.__version__,
  }
  needed = report["hbm_per_chip_bytes"]["needed"]
  if needed > chip["hbm_bytes"]:
    raise UserError(f"HBM exceeded on {name}: the program needs {needed / 2**30:.2f} GiB per chip, "
                    f"a {family} chip has {chip['hbm_bytes'] / 2**30:.2f} GiB")
  return report


def check_gpu_program(fn, args, platform: str, rolled: bool) -> dict:
  """Lowers jitted `fn` on abstract `args` for `platform` ('cuda', 'rocm') with jax.export and
  returns what the module holds; UserError (one line) if a custom call without a compatibility
  guarantee (research/cpu's FFI kernels are such), a host callback, or, for a `rolled` chunk,
  anything but one loop would reach the GPU."""
  import re

  import jax
  try:
    exported = jax.export.export(fn, platforms=[platform])(*args)
  except ValueError as e:  # jax refuses custom calls it cannot promise to run elsewhere
    targets = sorted(set(re.findall(r"custom_call @([\w.]+)", str(e)))) or [str(e).splitlines()[0]]
    raise UserError(f"the program cannot run on {platform}: it calls {', '.join(targets)} "
                    "(a CPU-only kernel; conv_impl='auto' picks nn.Conv off the CPU)") from None
  text = exported.mlir_module()
  calls = sorted(set(re.findall(r"custom_call @([\w.]+)", text)))
  callbacks = [c for c in calls if "callback" in c]
  if callbacks:
    raise UserError(f"the program calls back to the host on {platform}: {', '.join(callbacks)}")
  loops = text.count("stablehlo.while")
  if rolled and loops != 1:
    raise UserError(f"the train chunk is {loops} loops on {platform}, not one rolled loop")
  ops = re.findall(r"= stablehlo\.([a-z_]+)", text)
  kinds = ("convolution", "dot_general", "reduce", "while")
  # FLOPs of the same program as XLA's cost analysis counts them on this host (a loop's body
  # once: one step of a rolled chunk); the GPU compiler's own passes are not run here.
  flops = fn.lower(*args).cost_analysis().get("flops")
  return {"platform": platform, "custom_calls": calls, "while_loops": loops, "ops": len(ops),
          "op_counts": {k: ops.count(k) for k in kinds}, "flops": flops,
          "module_bytes": len(text)}


def lower_for_gpu(config, platform: str) -> dict:
  """The single-device train chunk and eval step that `config` runs on a GPU, lowered for
  `platform` and checked (check_gpu_program); the facts as a dict."""
  import jax
  import numpy as np

  from research import data, experiment, transforms
  with quiet_stderr():
    ds = transforms.apply(config, data.load_dataset(config))
    program = experiment.Program(config, ds, "gpu", 1)
    state = program.abstract_state()
    data_ = tuple(jax.ShapeDtypeStruct(x.shape, x.dtype)
                  for x in (ds.train_images, ds.train_labels))
    i32 = lambda *shape: jax.ShapeDtypeStruct(shape, np.int32)
    train = check_gpu_program(
        jax.jit(program.train_chunk), (state, *data_, i32(program.steps_per_call,
                                                           config.batch_size), i32()),
        platform, program.rolled)
    evaluate = check_gpu_program(jax.jit(program.eval_step), (state.params, *data_,
                                 i32(program.eval_batch), i32(program.eval_batch)),
                                 platform, False)
  return {"platform": platform, "model": config.model, "conv_block": program.block.name,
          "steps_per_call": program.steps_per_call, "rolled": program.rolled,
          "batch": config.batch_size, "train_chunk": train, "eval_step": evaluate,
          "jax": jax.__version__}


def format_table(r: dict) -> str:
  gib = lambda b: f"{b / 2**30:.3f} GiB"
  h, e = r["hbm_per_chip_bytes"]["train_chunk"], r["hbm_per_chip_bytes"]["eval_step"]
  rows = [
      ("topology", f"{r['topology']} ({r['tpu_topology']}, {r['device_kind']})"),
      ("chips / hosts", f"{r['chips']} / {r['hosts']}"),
      ("parallelism", f"{r['parallelism']} over {r['devices_used']} chip(s)"),
      ("batch global / per chip / micro", f"{r['global_batch']} / {r['per_chip_batch']} / "
                                          f"{r['per_chip_micro_batch']}"),
      ("compute dtype", r["dtype"]),
      ("model", f"{r['model']} ({r['num_params']:,} params)"),
      ("compile s: train chunk / eval step",
       f"{r['compile_seconds']['train_chunk']:.1f} ({r['steps_per_call']} steps) / "
       f"{r['compile_seconds']['eval_step']:.1f}"),
      ("HBM per chip, train: args / out / temp",
       f"{gib(h['arguments'])} / {gib(h['outputs'])} / {gib(h['temporaries'])}"),
      ("HBM per chip, eval: args / out / temp",
       f"{gib(e['arguments'])} / {gib(e['outputs'])} / {gib(e['temporaries'])}"),
      ("HBM per chip needed / chip's",
       f"{gib(r['hbm_per_chip_bytes']['needed'])} / {gib(r['hbm_per_chip_bytes']['chip'])}"),
      ("GFLOP per train step per chip", f"{r['flops_per_train_step_per_chip'] / 1e9:.3f}"),
      ("roofline images/s per chip (FLOP bound)",
       f"{r['roofline_images_per_second_per_chip']:,.0f} "
       f"(at {r['peak_flops_per_chip'] / 1e12:.0f} TFLOP/s bf16 peak)"
       if r["roofline_images_per_second_per_chip"] else "n/a"),
  ]
  width = max(len(k) for k, _ in rows)
  return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)  # TFDS's INFO lines about reading the dataset
  try:
    if FLAGS.install_compiler:
      print(tpu.install_libtpu(), flush=True)
      if FLAGS.config is None and FLAGS.topology is None:
        return
    if FLAGS.platform != "tpu":
      if FLAGS.config is None:
        raise UserError("give --config=FILE[:variants], e.g. configs/mnist_cnn.py:gpu")
      report = lower_for_gpu(FLAGS.config, FLAGS.platform)
      train = report["train_chunk"]
      print(f"{FLAGS.platform}: the train chunk ({report['steps_per_call']} steps of batch "
            f"{report['batch']}, {'one rolled loop' if report['rolled'] else 'unrolled'}; "
            f"{train['ops']} ops: {train['op_counts']}; {train['flops'] / 1e9:.2f} GFLOP a step) "
            f"and the eval step lower with no CPU-only kernel and no host callback (conv block "
            f"{report['conv_block']})")
      print(json.dumps(report), flush=True)
      return
    if FLAGS.config is None or FLAGS.topology is None:
      raise UserError("give --config=FILE[:variants] and --topology=SLICE (e.g. v5e-8)")
    report = preflight(FLAGS.config, FLAGS.topology)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(format_table(report))
  print(json.dumps(report), flush=True)


def run():
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
  run()
