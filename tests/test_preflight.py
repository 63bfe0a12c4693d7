"""The TPU preflight compiles the project's own train chunk and eval step for TPU slices with
libtpu, on this CPU box, and refuses configs that cannot run there with one line.

Every compile happens in subprocesses (libtpu stays out of the test process, where it would make
JAX probe for a TPU): one process compiles all the cases, shared by the tests of this module.
The model is the `:tpu` MLP (bf16) on the small tabular dataset (sklearn's, on disk): a compile
of a few seconds, no TFDS. README's numbers come from the real MNIST configs.
"""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from research.tpu import slices as tpu

needs_libtpu = pytest.mark.skipif(
    not tpu.libtpu_installed(),
    reason=f"libtpu is not installed (scripts/env.sh installs it into {tpu.LIBTPU_DIR})")

BATCH = 64
CASES = {  # name: (topology, config overrides)
    "v5e8_jit": ("v5e-8", {"parallelism": "jit"}),
    "v5e8_pmap": ("v5e-8", {"parallelism": "pmap"}),
    "v4_32_jit": ("v4-32", {"parallelism": "jit"}),
    "v4_32_pmap": ("v4-32", {"parallelism": "pmap"}),
    "indivisible": ("v4-32", {"batch_size": 72}),  # 16 chips
    "hbm": ("v5e-8", {"mlp_hidden": (65536, 65536)}),  # 4.3e9 float32 weights, x3 with Adam
}

_RUNNER = """
import json, sys
from configs import mnist_mlp
from research import UserError
from research.tpu import preflight
for name, (topology, overrides) in json.loads(sys.argv[2]).items():
  c = mnist_mlp.get_config("tpu")
  c.dataset, c.batch_size = "breast_cancer", %d
  for k, v in overrides.items():
    c[k] = tuple(v) if isinstance(v, list) else v
  try:
    r = preflight.preflight(c, topology)
    print(json.dumps({"case": name, "report": r, "table": preflight.format_table(r)}), flush=True)
  except UserError as e:
    print(json.dumps({"case": name, "error": str(e)}), flush=True)
""" % BATCH


@pytest.fixture(scope="module")
def results():
  if not tpu.libtpu_installed():
    pytest.skip(f"libtpu is not installed (scripts/env.sh installs it into {tpu.LIBTPU_DIR})")
  proc = subprocess.run([sys.executable, "-c", _RUNNER, ROOT, json.dumps(CASES)], cwd=ROOT,
                        capture_output=True, text=True, timeout=420)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = {}
  for line in proc.stdout.splitlines():
    if line.startswith("{"):
      r = json.loads(line)
      out[r["case"]] = r
  assert set(out) == set(CASES), proc.stderr[-3000:]
  return out


@pytest.mark.parametrize("case", ["v5e8_jit", "v5e8_pmap", "v4_32_jit", "v4_32_pmap"])
def test_preflight_reports_a_slice(results, case):
  assert "error" not in results[case], results[case].get("error")
  r = results[case]["report"]
  topology, overrides = CASES[case]
  chips, hosts = {"v5e-8": (8, 1), "v4-32": (16, 4)}[topology]
  assert (r["topology"], r["chips"], r["hosts"]) == (topology, chips, hosts)
  assert r["parallelism"] == overrides["parallelism"] and r["dtype"] == "bfloat16"
  assert r["global_batch"] == BATCH and r["per_chip_batch"] * chips == BATCH
  assert r["compile_seconds"]["train_chunk"] > 0 and r["compile_seconds"]["eval_step"] > 0
  hbm = r["hbm_per_chip_bytes"]
  # The state (float32 params and Adam's two moments) sits on every chip as an argument.
  assert hbm["train_chunk"]["arguments"] >= 3 * 4 * r["num_params"]
  assert hbm["train_chunk"]["aliased"] > 0  # the donated state is updated in place
  assert hbm["needed"] >= hbm["train_chunk"]["total"] and hbm["needed"] < hbm["chip"]
  # One step on one chip: the forward matmuls (2 FLOPs per weight and example) and the weight
  # gradients (as many again) at least; at most three times the forward pass plus the optimizer.
  forward = 2 * r["per_chip_batch"] * r["num_params"]
  assert 2 * forward * 0.9 <= r["flops_per_train_step_per_chip"] <= 3 * forward + 40 * r["num_params"]
  assert r["roofline_images_per_second_per_chip"] == pytest.approx(
      r["per_chip_batch"] * r["peak_flops_per_chip"] / r["flops_per_train_step_per_chip"])
  assert topology in results[case]["table"] and "roofline" in results[case]["table"]


def test_jit_and_pmap_compile_the_same_step(results):
  for topology in ("v5e8", "v4_32"):
    jit, pmap = results[f"{topology}_jit"]["report"], results[f"{topology}_pmap"]["report"]
    assert pmap["flops_per_train_step_per_chip"] == pytest.approx(
        jit["flops_per_train_step_per_chip"], rel=0.1)


def test_preflight_refuses_an_indivisible_batch(results):
  assert results["indivisible"]["error"] == "batch_size 72 must be a positive multiple of the 16 devices"


def test_preflight_refuses_a_model_beyond_hbm(results):
  error = results["hbm"]["error"]
  assert "HBM" in error and "v5e-8" in error and "\n" not in error


def test_preflight_without_libtpu_says_how_to_install_it():
  # `import libtpu` fails in this process whatever is installed.
  code = "import sys; sys.modules['libtpu'] = None; from research.tpu import preflight; preflight.run()"
  proc = subprocess.run([sys.executable, "-c", code, "--config=configs/mnist_mlp.py:tpu",
                         "--topology=v5e-8"], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2 and proc.stdout == ""
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: libtpu is not installed")
  assert "pip install" in lines[0] and tpu.LIBTPU_DIR in lines[0]


def test_unknown_topology_is_one_line():
  proc = subprocess.run([sys.executable, "-m", "research.tpu.preflight", "--config=configs/mnist_mlp.py",
                         "--topology=v9-8"], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      "error: unknown TPU topology 'v9-8'; choose from " + ", ".join(list(tpu.TOPOLOGIES) +
                                                                     list(tpu.ALIASES))]


@needs_libtpu
def test_libtpu_stays_out_of_other_jax_programs():
  # libtpu lives in its own folder: plain JAX on a CPU machine neither sees it nor warns about TPU_*.
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  proc = subprocess.run([sys.executable, "-c", "import jax; print(jax.devices()[0].platform)"],
                        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
  assert proc.stdout.strip() == "cpu" and "TPU" not in proc.stderr


@pytest.mark.parametrize("config_name", ["mnist_cnn", "mnist_mlp"])
def test_the_gpu_program_lowers_for_cuda_without_cpu_kernels_or_callbacks(mnist, config_name):
  import importlib
  from research.tpu import preflight
  config = importlib.import_module(f"configs.{config_name}").get_config("gpu")
  report = preflight.lower_for_gpu(config, "cuda")
  assert report["conv_block"] == "nn.Conv" and report["rolled"]
  assert report["train_chunk"]["custom_calls"] == [] and report["eval_step"]["custom_calls"] == []
  assert report["train_chunk"]["while_loops"] == 1  # the whole 117-step chunk is one rolled loop
  if config_name == "mnist_mlp":  # a step's FLOPs: the matmuls of 512 images, both layers'
    # forward and kernel gradient, the second layer's input gradient (the data needs none)
    want = 512 * 2 * (2 * 784 * 128 + 3 * 128 * 10)
    assert abs(report["train_chunk"]["flops"] - want) < 0.05 * want, report["train_chunk"]


def test_a_cpu_kernel_in_a_gpu_program_is_refused():
  import jax
  import numpy as np
  from conftest import tiny_config
  from research import UserError, experiment, models
  from research.cpu import fused
  from research.tpu import preflight
  if not fused.available()[0]:
    pytest.skip(f"the CPU kernels are unavailable: {fused.available()[1]}")
  config = tiny_config("cnn", conv_impl="fused")
  model = models.create_model(config, 10)
  params = experiment.create_train_state(config, model, (28, 28, 1), 1).params
  forward = jax.jit(lambda p, x: model.apply({"params": p}, x))
  x = jax.ShapeDtypeStruct((8, 28, 28, 1), np.float32)
  with pytest.raises(UserError, match="cannot run on cuda: it calls .*research_ConvReluPoolForward"):
    preflight.check_gpu_program(forward, (params, x), "cuda", rolled=False)
