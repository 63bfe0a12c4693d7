"""Dense vs Conv: a JAX/Flax study of what convolution buys over a dense layer."""
from setuptools import find_packages, setup

setup(
    name="dense-vs-conv",
    version="0.1.0",
    description="Flax Dense and Conv models on MNIST and friends: jit/pmap steps, orbax checkpoints, ablations.",
    packages=find_packages(include=["research", "research.*", "configs", "configs.*"]),
    # research/cpu/build.py compiles these C++ sources (scripts/env.sh runs it once)
    package_data={"research.cpu": ["kernels/*.cc", "kernels/*.h"]},
    python_requires=">=3.11",
    install_requires=[
        # jax 0.10.x on Python 3.11 (CPU box), 0.11.x on the 3.12 GPU/TPU machines.
        "jax>=0.10,<0.12",
        "flax>=0.12,<0.14",
        "optax>=0.2.5,<0.3",
        "orbax-checkpoint>=0.11,<0.13",
        "tensorflow-cpu>=2.20,<2.23",  # TFDS needs TF to prepare and read datasets
        "tensorflow-datasets>=4.9.8,<5",
        "importlib_resources",  # tensorflow-datasets 4.9.10 imports it without declaring it
        "tensorboard>=2.20,<2.23",  # tensorflow-cpu 2.21 does not bring it; we write event files
        "absl-py>=2.0,<3",
        "ml-collections>=1.0,<2",
        "numpy>=1.26",
        "matplotlib>=3.8",
        "pandas>=2.0",  # the study scripts aggregate results.csv with it
        "scikit-learn>=1.4",  # a real tabular dataset that ships on disk (breast cancer)
        "scipy>=1.10",  # Student t intervals of the studies (research/sweeps/report.py)
        "mnist1d>=0.0.2",  # MNIST-1D (Greydanus 2020), generated offline in seconds
        # The sweep executor (research/sweeps/cli.py --executor=ray, the default): local cluster,
        # `ray start` clusters and ray:// clients (the [default] extra brings the client's grpc).
        "ray[default]>=2.60,<3",
    ],
    extras_require={
        # The suite (scripts/test.sh): xdist runs the test files on two workers; nbclient,
        # nbformat and ipykernel execute docs/walkthrough.ipynb; wandb's offline mode is tested.
        "test": ["pytest>=8", "pytest-xdist>=3.5,<4", "nbclient>=0.10,<0.12", "nbformat>=5.9,<6",
                 "ipykernel>=6.29,<8", "wandb>=0.19,<1"],
        # TPU VMs (scripts/launch_tpu.py installs it there). On a CPU machine the preflight's
        # own step installs the TPU compiler instead: python -m research.tpu.preflight
        # --install_compiler.
        "tpu": ["jax[tpu]>=0.10,<0.12"],
        # scripts/benchmark.py's peer: the seeds' Keras models (Keras 3 on TensorFlow).
        "keras": ["keras>=3,<4"],
        # config.wandb_project: runs logged to Weights & Biases (research/metrics.py).
        "wandb": ["wandb>=0.19,<1"],
    },
)
