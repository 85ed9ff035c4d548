"""Tests of altheory.data: on-disk fixtures in the real formats, and their error messages."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from altheory import data as D
from altheory.floats import assert_close
from altheory.data import (Dataset, image_folder, load_cifar, load_digits, load_fashion_mnist, read_idx,
                           synthetic_images, teacher_student)


# --------------------------------------------------------------------------------------------
# fixture writers (the real on-disk formats), also used by tests/test_train.py
# --------------------------------------------------------------------------------------------

def write_idx(path: Path, arr: np.ndarray, gz: bool = True) -> Path:
    code = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}[arr.dtype]
    raw = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)
    return path


def write_fmnist_fixture(root: Path, n_train: int = 20, n_test: int = 10, seed: int = 0, gz: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = (np.arange(n) % 10).astype(np.uint8)
        X = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
        X[np.arange(n), 2 * y + 3, 3:25] = 250  # a learnable class-dependent stripe
        write_idx(root / f"{prefix}-images-idx3-ubyte", X, gz)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", y, gz)
    return root


def write_cifar_fixture(root: Path, num_classes: int = 10, n_per_file: int = 6, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    if num_classes == 10:
        folder = root / "cifar-10-batches-py"
        names, key = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels"
    else:
        folder = root / "cifar-100-python"
        names, key = ["train", "test"], b"fine_labels"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        d = {b"data": rng.integers(0, 256, size=(n_per_file, 3072), dtype=np.uint8),
             key: [int(v) for v in rng.integers(0, num_classes, size=n_per_file)]}
        with open(folder / name, "wb") as f:
            pickle.dump(d, f)
    return folder


def write_image_folder(root: Path, classes=("cat", "dog"), per_class: int = 3, size: int = 12) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i}.png")
    return root


# --------------------------------------------------------------------------------------------
# IDX / Fashion-MNIST
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip(tmp_path, gz):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a-idx3-ubyte", a, gz)), a)
    b = np.array([1, -2, 70000], dtype=">i4")
    out = read_idx(write_idx(tmp_path / "b-idx1-ubyte", b, gz))
    assert out.tolist() == [1, -2, 70000] and out.dtype == np.dtype("int32")


@pytest.mark.parametrize("raw,match", [
    (b"", "not an IDX file"),
    (bytes([1, 0, 8, 1]), "not an IDX file"),
    (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 0]), "unknown IDX type code 0x42"),
    (bytes([0, 0, 8, 2, 0, 0, 0, 2]), "truncated IDX header"),
    (bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]), "truncated or corrupt"),
])
def test_idx_malformed(tmp_path, raw, match):
    p = tmp_path / "x-idx1-ubyte"
    p.write_bytes(raw)
    with pytest.raises(ValueError, match=match):
        read_idx(p)


def test_idx_bad_gzip(tmp_path):
    p = tmp_path / "x-idx1-ubyte.gz"
    p.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="optionally gzip-compressed"):
        read_idx(p)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_fixture(tmp_path, gz):
    root = write_fmnist_fixture(tmp_path / "fm", gz=gz)
    tr, te = load_fashion_mnist(root, split="train"), load_fashion_mnist(root, split="test")
    assert tr.X.shape == (20, 1, 28, 28) and tr.X.dtype == np.uint8 and te.X.shape == (10, 1, 28, 28)
    assert tr.y.tolist() == [i % 10 for i in range(20)] and tr.num_classes == 10
    assert len(tr.classes) == 10


def test_fashion_mnist_missing_folder_names_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist") as e:
        load_fashion_mnist(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(e.value) and "train-images-idx3-ubyte" in str(e.value)


def test_fashion_mnist_missing_file(tmp_path):
    root = write_fmnist_fixture(tmp_path / "fm")
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte.*dataset-fashion-mnist"):
        load_fashion_mnist(root, split="test")
    load_fashion_mnist(root, split="train")  # the other split is intact


def test_fashion_mnist_labels_disagree(tmp_path):
    root = write_fmnist_fixture(tmp_path / "fm")
    write_idx(root / "train-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="expected 20 labels"):
        load_fashion_mnist(root)


def test_fashion_mnist_bad_split(tmp_path):
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_fashion_mnist(tmp_path, split="val")


@pytest.mark.skipif(not Path(D.FASHION_MNIST_DIR).is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_debian_package():
    te = load_fashion_mnist(split="test")
    assert te.X.shape == (10000, 1, 28, 28) and np.bincount(te.y).tolist() == [1000] * 10


# --------------------------------------------------------------------------------------------
# CIFAR
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [10, 100])
def test_cifar_fixture(tmp_path, k):
    folder = write_cifar_fixture(tmp_path, k)
    for root in (tmp_path, folder):  # the parent folder or the pickle folder itself
        tr = load_cifar(root, num_classes=k, split="train")
        te = load_cifar(root, num_classes=k, split="test")
        assert tr.X.shape == ((30 if k == 10 else 6), 3, 32, 32) and te.X.shape == (6, 3, 32, 32)
        assert tr.y.max() < k and tr.num_classes == k
    # channel-first reshape of the row-major 3072 vector: first 1024 bytes are the red plane
    with open(folder / ("test_batch" if k == 10 else "test"), "rb") as f:
        raw = pickle.load(f)[b"data"]
    assert np.array_equal(te.X[0, 0].ravel(), raw[0, :1024])


def test_cifar_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py.*data_batch_1"):
        load_cifar(tmp_path / "none")


def test_cifar_missing_batch(tmp_path):
    folder = write_cifar_fixture(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load_cifar(tmp_path)


def test_cifar_malformed(tmp_path):
    folder = write_cifar_fixture(tmp_path)
    (folder / "test_batch").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a CIFAR python pickle"):
        load_cifar(tmp_path, split="test")
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(ValueError, match=r"shape \(n, 3072\)"):
        load_cifar(tmp_path, split="test")
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"pixels": 1}, f)
    with pytest.raises(ValueError, match="missing key 'data'"):
        load_cifar(tmp_path, split="test")


def test_cifar_bad_classes(tmp_path):
    with pytest.raises(ValueError, match="10 or 100"):
        load_cifar(tmp_path, num_classes=20)


# --------------------------------------------------------------------------------------------
# ImageFolder
# --------------------------------------------------------------------------------------------

def test_image_folder_fixture(tmp_path):
    root = write_image_folder(tmp_path / "inet")
    ds = image_folder(root, "val")
    assert ds.classes == ["cat", "dog"] and len(ds) == 6
    img, label = ds[4]
    assert label == 1 and img.size == (12, 12)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train/<class>/<image>") as e:
        image_folder(tmp_path / "none", "train")
    assert str(tmp_path / "none" / "train") in str(e.value)
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no class folders"):
        image_folder(tmp_path / "empty", "train")
    (tmp_path / "empty" / "train" / "cls").mkdir()
    (tmp_path / "empty" / "train" / "cls" / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="holds no image files"):
        image_folder(tmp_path / "empty", "train")
    with pytest.raises(ValueError, match="'train' or 'val'"):
        image_folder(tmp_path, "test")


def test_trainer_on_image_folder(tmp_path):
    """The trainer's ImageFolder path (DataLoader, seeded per-sample crops) end to end, 2 steps."""
    import torch

    from altheory.train import TrainConfig, train

    root = write_image_folder(tmp_path / "inet", per_class=4, size=12)
    torch.set_num_threads(1)
    cfg = TrainConfig(dataset="imagenet", data_dir=str(root), arch="resnet8", width=4, image_size=8,
                      batch_size=4, epochs=1, workers=0, device="cpu", dtype="float64",
                      progress=False, tensorboard=False, out_dir=str(tmp_path / "run"))
    s = train(cfg, quiet=True)
    assert s["steps"] == 2 and 0 <= s["final_val_acc"] <= 1
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        train(TrainConfig(dataset="imagenet", data_dir=str(tmp_path / "x"), device="cpu",
                          out_dir=str(tmp_path / "run2")), quiet=True)


# --------------------------------------------------------------------------------------------
# in-memory sets
# --------------------------------------------------------------------------------------------

def test_digits():
    tr, te = load_digits(split="train"), load_digits(split="test")
    assert len(tr) + len(te) == 1797 and tr.X.shape[1:] == (1, 8, 8) and tr.X.max() == 255
    assert len(te) == 359 and sorted(np.bincount(np.concatenate([tr.y, te.y]))) == sorted(np.bincount(D.load_digits(split='train', test_fraction=0.5).y.tolist() + D.load_digits(split='test', test_fraction=0.5).y.tolist()))


def test_synthetic_is_deterministic_and_learnable():
    a, b = synthetic_images(40, shape=(1, 6, 6), num_classes=4, seed=3), synthetic_images(
        40, shape=(1, 6, 6), num_classes=4, seed=3)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    # nearest class mean classifies well above chance: the classes are separable patterns
    Xf = a.X.reshape(40, -1).astype(float)
    means = np.stack([Xf[a.y == c].mean(0) for c in range(4)])
    pred = np.argmin(((Xf[:, None] - means[None]) ** 2).sum(-1), 1)
    assert (pred == a.y).mean() > 0.5


@pytest.mark.parametrize("call,match", [
    (lambda: synthetic_images(0), "positive int"),
    (lambda: synthetic_images(4, shape=(3, 4)), r"\(C, H, W\)"),
    (lambda: synthetic_images(4, num_classes=1), ">= 2"),
    (lambda: teacher_student(0, 3), "n must be a positive int"),
    (lambda: teacher_student(5, 3, widths=()), "widths"),
    (lambda: teacher_student(5, 3, tau=-0.1), "tau=0 for ReLU"),
    (lambda: teacher_student(5, 3, noise=-1), "noise must be >= 0"),
    (lambda: Dataset(np.zeros((3, 2)), np.zeros(2, np.int64), 2), "must match"),
])
def test_bad_calls(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("tau,topk", [(0.0, None), (0.3, None), (0.0, 3)])
def test_teacher_student_is_realised_by_its_model(tau, topk):
    import torch

    from altheory import support

    ts = teacher_student(50, 4, widths=(8, 6), k=2, tau=tau, topk=topk, seed=2)
    net = ts.model()
    with torch.no_grad():
        assert_close(net(torch.from_numpy(ts.X)).numpy(), ts.Y, what="the teacher's outputs")
    S = support(net, torch.from_numpy(ts.X))
    for key in S.keys():  # neither empty nor full: the planted support is informative
        m = S[key].mask()
        assert 0 < m.mean() < 1
    if topk is None:  # about half of every unit's samples above the threshold
        m = S[next(iter(S.keys()))].mask()
        assert np.all(np.abs(m.mean(0) - 0.5) <= 0.05)


def test_teacher_student_noise():
    a = teacher_student(30, 3, seed=0)
    b = teacher_student(30, 3, noise=0.1, seed=0)
    r = b.Y - a.Y
    assert np.array_equal(a.X, b.X) and 0.05 < r.std() < 0.2
