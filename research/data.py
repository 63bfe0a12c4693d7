"""Datasets as uint8 arrays in host memory, loaded once per process.

TFDS prepares the dataset (downloading it, or offline from the original archives placed in
`$TFDS_DATA_DIR/downloads/manual/`), then each split is read in one go with `batch_size=-1`.
Images stay uint8 (47 MB for MNIST); the train step normalizes them on the device.
"""
import dataclasses
import functools
import os

import numpy as np

from research import UserError

# TFDS retries a failed download 10 times with exponential backoff (about 3.5 minutes offline
# before it gives up); a few retries keep a flaky link working and an offline box fast to fail.
DOWNLOAD_RETRIES = 3


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  train_images: np.ndarray  # uint8 [N, H, W, C]
  train_labels: np.ndarray  # int32 [N]
  test_images: np.ndarray
  test_labels: np.ndarray
  num_classes: int

  @property
  def image_shape(self):
    return self.train_images.shape[1:]


def _data_dir(data_dir: str) -> str:
  return data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def _offline_help(name: str, data_dir: str) -> str:
  return (f"could not prepare TFDS dataset {name!r} in {data_dir}. Offline, put the original "
          f"archives in {os.path.join(data_dir, 'downloads', 'manual')} (for MNIST: "
          f"`mkdir -p {data_dir}/downloads/manual && cp ../shared/data/mnist/*.gz "
          f"{data_dir}/downloads/manual/`), or run once on a machine with internet access")


@functools.lru_cache(maxsize=4)
def load_tfds(name: str, data_dir: str = "") -> Dataset:
  """Loads `name`'s train and test splits; raises UserError with a fix when it cannot."""
  data_dir = _data_dir(data_dir)
  import tensorflow_datasets as tfds  # heavy: imported only when data is needed
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise UserError(f"unknown dataset {name!r}: not a TFDS dataset name") from None
  except PermissionError as e:
    raise UserError(f"TFDS data_dir {data_dir} is not usable: {e}") from None
  if not builder.is_prepared():
    from tensorflow_datasets.core.download import downloader
    downloader.MAX_RETRIES = min(downloader.MAX_RETRIES, DOWNLOAD_RETRIES)
    try:
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    except Exception as e:  # offline, missing archives, bad checksums, no space ...
      reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
      raise UserError(f"{_offline_help(name, data_dir)} ({type(e).__name__}: {reason})") from None
  info = builder.info
  if "image" not in info.features or "label" not in info.features:
    raise UserError(f"dataset {name!r} has no 'image'/'label' features; use an image "
                    "classification dataset such as mnist, fashion_mnist or cifar10")
  splits = {}
  for split in ("train", "test"):
    if split not in info.splits:
      raise UserError(f"dataset {name!r} has no {split!r} split")
    arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    splits[split] = (np.asarray(arrays["image"], np.uint8), np.asarray(arrays["label"], np.int32))
  return Dataset(name=name, train_images=splits["train"][0], train_labels=splits["train"][1],
                 test_images=splits["test"][0], test_labels=splits["test"][1],
                 num_classes=int(info.features["label"].num_classes))


def load_dataset(config) -> Dataset:
  """The dataset named by `config.dataset`."""
  return load_tfds(config.dataset, config.data_dir)
