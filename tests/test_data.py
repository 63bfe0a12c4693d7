import os
import subprocess
import sys
import time

import numpy as np
import pytest

from research import UserError, data, train


def test_real_mnist_splits(mnist):
  assert mnist.train_images.shape == (60_000, 28, 28, 1)
  assert mnist.test_images.shape == (10_000, 28, 28, 1)
  assert mnist.train_images.dtype == np.uint8 and mnist.train_labels.dtype == np.int32
  assert mnist.num_classes == 10
  # Real digits, not noise: the class histogram of the MNIST test set.
  counts = np.bincount(mnist.test_labels, minlength=10)
  assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
  assert 30 < mnist.train_images.mean() < 36  # MNIST's mean pixel is ~33.3


def test_unknown_dataset_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match="unknown dataset 'no_such_dataset'"):
    data.load_tfds("no_such_dataset", str(tmp_path))


def test_missing_data_offline_says_how_to_fix(tmp_path, monkeypatch):
  # An empty data dir and no network (a dead proxy stands in for it on a machine that has one):
  # TFDS cannot download, and we say what to do instead of a traceback from inside TFDS.
  for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    monkeypatch.setenv(var, "http://127.0.0.1:9")
  monkeypatch.delenv("NO_PROXY", raising=False)
  monkeypatch.delenv("no_proxy", raising=False)
  with pytest.raises(UserError, match="downloads/manual"):
    data.load_tfds("mnist", str(tmp_path / "empty"))


def test_batches_are_a_pure_function_of_seed_epoch_step():
  a = train.batch_indices(seed=3, start=0, count=25, steps_per_epoch=10, n=105, batch_size=10)
  b = train.batch_indices(seed=3, start=13, count=5, steps_per_epoch=10, n=105, batch_size=10)
  np.testing.assert_array_equal(a[13:18], b)  # resuming mid-epoch sees the same batches
  # Each epoch visits 100 distinct examples; epochs are shuffled differently.
  assert len(set(a[:10].ravel())) == 100 and len(set(a[10:20].ravel())) == 100
  assert not np.array_equal(a[:10], a[10:20])
  c = train.batch_indices(seed=4, start=0, count=10, steps_per_epoch=10, n=105, batch_size=10)
  assert not np.array_equal(a[:10], c)


def test_eval_indices_count_every_example_once():
  idx, mask = train.eval_indices(10_001, 1000)
  assert idx.shape == mask.shape == (11, 1000)
  assert mask.sum() == 10_001
  assert sorted(idx[mask == 1].tolist()) == list(range(10_001))


def test_a_dataset_built_from_the_wrong_archives_is_refused(mnist, monkeypatch):
  # TFDS reuses extracted files by name, and MNIST's and Fashion-MNIST's archives have the same
  # names: a dataset is checked against its own test-split class counts after loading.
  monkeypatch.setitem(data.TEST_CLASS_COUNTS, "mnist", [1000] * 10)  # Fashion-MNIST's counts
  with pytest.raises(UserError, match=r"is not mnist: its test split has class counts \[980, 1135"):
    data.load_tfds.__wrapped__("mnist")


def test_cached_arrays_equal_what_tfds_decodes(mnist):
  import tensorflow_datasets as tfds
  builder = tfds.builder("mnist", data_dir=data._data_dir(""))
  assert os.path.isfile(os.path.join(builder.data_dir, data.CACHE_FILE))
  test = tfds.as_numpy(builder.as_dataset(split="test", batch_size=-1))
  np.testing.assert_array_equal(mnist.test_images, test["image"])
  np.testing.assert_array_equal(mnist.test_labels, test["label"])


def test_one_process_prepares_while_the_others_wait(tmp_path):
  # Another process holds the preparation lock for a few seconds: we wait for it, and give up
  # with one clear line when the wait exceeds its bound.
  lock = tmp_path / ".mnist.prepare.lock"
  holder = subprocess.Popen([sys.executable, "-c", (
      "import fcntl, sys, time\n"
      f"f = open({str(lock)!r}, 'a'); fcntl.flock(f, fcntl.LOCK_EX)\n"
      "print('locked', flush=True); time.sleep(4)\n")], stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(UserError, match="gave up after 1 s waiting for another process"):
      with data._exclusive(str(lock), "preparing mnist", timeout=1):
        pass
    t0 = time.monotonic()
    with data._exclusive(str(lock), "preparing mnist", timeout=60):
      waited = time.monotonic() - t0
    assert 1 < waited < 60  # it waited for the holder's release, then took the lock
  finally:
    holder.kill()
    holder.wait(timeout=30)


def test_a_cut_short_array_cache_is_read_around_and_rewritten(mnist, tmp_path):
  # A process killed while another wrote the cache cannot leave a half file (it is written
  # aside and renamed), but a damaged disk can: the cache is then ignored, not trusted.
  import shutil
  import tensorflow_datasets as tfds
  version_dir = tfds.builder("mnist", data_dir=data._data_dir("")).data_dir
  copy = tmp_path / "mnist" / os.path.basename(version_dir)
  shutil.copytree(version_dir, copy)
  cache = copy / data.CACHE_FILE
  cache.write_bytes(cache.read_bytes()[:100])
  again = data.load_tfds.__wrapped__("mnist", str(tmp_path))
  np.testing.assert_array_equal(again.test_images, mnist.test_images)
  np.testing.assert_array_equal(again.train_labels, mnist.train_labels)
  assert cache.stat().st_size > 50_000_000  # rewritten whole
