r"""Datasets as arrays: :math:`X \in \mathbb{R}^{n \times \dots}`, labels :math:`y \in \{0..k-1\}^n`.

Every loader returns a :class:`Dataset` (images as ``uint8`` of shape ``(n, C, H, W)`` or float
arrays, integer labels) or, for ImageNet-sized data, a lazily read image folder. All of them
validate the on-disk layout and raise ``FileNotFoundError``/``ValueError`` naming the path and the
expected layout, so a missing or malformed dataset says how to fix it.

================================  ===========================================================
loader                            on-disk format
================================  ===========================================================
:func:`load_fashion_mnist`        the four IDX files (``.gz`` or raw), default folder
                                  ``/usr/share/datasets/fashion-mnist/`` (Debian package
                                  ``dataset-fashion-mnist``)
:func:`load_cifar`                the python-pickle folders ``cifar-10-batches-py/`` and
                                  ``cifar-100-python/`` of the CIFAR download
:func:`image_folder`              ``root/{train,val}/<class>/<image>`` (torchvision ImageFolder)
:func:`load_digits`               scikit-learn's bundled 8x8 digits (no file)
:func:`synthetic_images`          none: class-dependent patterns plus noise, for throughput
:func:`teacher_student`           none: a planted PHT network (the "teacher") labels Gaussian X
================================  ===========================================================

Only numpy and the standard library are imported at module load; torch, torchvision and
scikit-learn are imported inside the functions that need them, so the trainer runs on a machine
with torch and numpy alone.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = [
    "Dataset", "read_idx", "load_fashion_mnist", "load_cifar", "image_folder", "load_digits",
    "synthetic_images", "teacher_student", "TeacherStudent", "FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASSES",
]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist/"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
Split = Literal["train", "test"]
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass
class Dataset:
    r"""An in-memory labelled dataset.

    Attributes
    ----------
    X : ndarray of shape (n, C, H, W) (uint8 images) or (n, d) (float features)
    y : int64 ndarray of shape (n,), labels in ``0 .. num_classes - 1``
    num_classes : int
    name : str, where it came from (for logs).
    classes : tuple of class names (may be empty).
    """

    X: np.ndarray
    y: np.ndarray
    num_classes: int
    name: str = ""
    classes: tuple = field(default_factory=tuple)

    def __post_init__(self):
        if self.X.shape[0] != self.y.shape[0]:
            raise ValueError(f"Dataset {self.name!r}: X has {self.X.shape[0]} samples but y has "
                             f"{self.y.shape[0]}; they must match.")

    def __len__(self) -> int:
        return int(self.y.shape[0])


def _check_split(split: str) -> str:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got split={split!r}.")
    return split


# ---------------------------------------------------------------------------------------------
# IDX (MNIST / Fashion-MNIST)
# ---------------------------------------------------------------------------------------------

def read_idx(path: str | os.PathLike) -> np.ndarray:
    r"""Read one IDX file (``.gz`` or raw): magic ``0 0 <dtype> <ndim>``, big-endian dims, data.

    Parameters
    ----------
    path : path to e.g. ``train-images-idx3-ubyte.gz``

    Returns
    -------
    ndarray of the stored dtype (native byte order) and shape.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Bad magic number, unknown dtype code, or a size that does not match the header.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a-idx1-ubyte"
    >>> _ = p.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    >>> read_idx(p).tolist()
    [7, 8, 9]
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"could not read IDX file {path}: {exc}. Expected an IDX file, optionally "
                         "gzip-compressed (.gz).") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file: expected the magic bytes 00 00 <type> <ndim>; "
                         f"got {raw[:4].hex(' ') or 'an empty file'}.")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02x}; expected one of "
                         f"{[hex(c) for c in _IDX_DTYPES]}.")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header (ndim={ndim}, {len(raw)} bytes).")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: IDX header says shape {dims} ({expected} data bytes) but the file "
                         f"holds {len(raw) - header}. The file is truncated or corrupt; download it again.")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    return None


def load_fashion_mnist(root: str | os.PathLike | None = None, *, split: Split = "train") -> Dataset:
    r"""Fashion-MNIST from its four IDX files: ``X`` uint8 of shape (n, 1, 28, 28), ``y`` in 0..9.

    Parameters
    ----------
    root : folder holding ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
        ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``; default
        ``/usr/share/datasets/fashion-mnist/`` (``apt-get install dataset-fashion-mnist``).
    split : ``"train"`` (60000 samples) or ``"test"`` (10000).

    Raises
    ------
    FileNotFoundError
        The folder or a file is missing (the message names the Debian package).
    ValueError
        A file is not a valid IDX file, or images and labels disagree.

    Examples
    --------
    >>> ds = load_fashion_mnist(split="test")  # doctest: +SKIP
    >>> ds.X.shape, ds.y[:3].tolist()           # doctest: +SKIP
    ((10000, 1, 28, 28), [9, 2, 1])
    """
    _check_split(split)
    root = Path(FASHION_MNIST_DIR if root is None else root)
    prefix = "train" if split == "train" else "t10k"
    layout = ("expected the IDX files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
              "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (or without .gz)")
    if not root.is_dir():
        raise FileNotFoundError(
            f"Fashion-MNIST folder not found: {root}; {layout}. Install the Debian package "
            f"dataset-fashion-mnist (apt-get install dataset-fashion-mnist, files in "
            f"{FASHION_MNIST_DIR}) or pass the folder that holds them.")
    img_p, lab_p = _find(root, f"{prefix}-images-idx3-ubyte"), _find(root, f"{prefix}-labels-idx1-ubyte")
    if img_p is None or lab_p is None:
        missing = [s for s, p in ((f"{prefix}-images-idx3-ubyte", img_p),
                                  (f"{prefix}-labels-idx1-ubyte", lab_p)) if p is None]
        raise FileNotFoundError(
            f"Fashion-MNIST files missing in {root}: {missing}; {layout}. Install the Debian package "
            "dataset-fashion-mnist or copy the four files there.")
    X, y = read_idx(img_p), read_idx(lab_p)
    if X.ndim != 3 or X.dtype != np.uint8:
        raise ValueError(f"{img_p}: expected uint8 images of shape (n, 28, 28); got {X.dtype} {X.shape}.")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"{lab_p}: expected {X.shape[0]} labels of shape (n,); got shape {y.shape}.")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise ValueError(f"{lab_p}: labels must be in 0..9; got range {y.min()}..{y.max()}.")
    return Dataset(np.ascontiguousarray(X[:, None]), y.astype(np.int64), 10,
                   f"fashion-mnist/{split}", FASHION_MNIST_CLASSES)


# ---------------------------------------------------------------------------------------------
# CIFAR-10/100 (python pickle)
# ---------------------------------------------------------------------------------------------

def _cifar_folder(root: Path, num_classes: int) -> Path:
    sub = "cifar-10-batches-py" if num_classes == 10 else "cifar-100-python"
    for cand in (root, root / sub):
        if num_classes == 10 and (cand / "data_batch_1").is_file():
            return cand
        if num_classes == 100 and (cand / "train").is_file():
            return cand
    return root / sub


def _unpickle(path: Path, layout: str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR file not found: {path}; {layout}.")
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except Exception as exc:  # pickle raises many kinds
        raise ValueError(f"{path} is not a CIFAR python pickle ({type(exc).__name__}: {exc}); "
                         f"{layout}.") from exc
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a pickled dict; got {type(d).__name__}; {layout}.")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}


def load_cifar(root: str | os.PathLike, *, num_classes: int = 10, split: Split = "train") -> Dataset:
    r"""CIFAR-10 or CIFAR-100 from the python-pickle download: ``X`` uint8 (n, 3, 32, 32).

    Parameters
    ----------
    root : the folder ``cifar-10-batches-py`` (``data_batch_1..5``, ``test_batch``) or
        ``cifar-100-python`` (``train``, ``test``), or the folder that contains it.
    num_classes : 10 or 100. CIFAR-100 uses the fine labels.
    split : ``"train"`` or ``"test"``.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing files or a malformed pickle; the message names the path and the layout.

    Examples
    --------
    >>> ds = load_cifar("~/data", num_classes=10, split="test")  # doctest: +SKIP
    """
    _check_split(split)
    if num_classes not in (10, 100):
        raise ValueError(f"num_classes must be 10 or 100 for CIFAR; got {num_classes}.")
    root = Path(root).expanduser()
    folder = _cifar_folder(root, num_classes)
    if num_classes == 10:
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        layout = ("expected the CIFAR-10 python folder cifar-10-batches-py/ with data_batch_1 .. "
                  "data_batch_5 and test_batch (pickled dicts with b'data' (n, 3072) uint8 and "
                  "b'labels')")
        label_key = "labels"
    else:
        files = [split]
        layout = ("expected the CIFAR-100 python folder cifar-100-python/ with train and test "
                  "(pickled dicts with b'data' (n, 3072) uint8 and b'fine_labels')")
        label_key = "fine_labels"
    if not folder.is_dir():
        raise FileNotFoundError(f"CIFAR-{num_classes} folder not found under {root}; {layout}.")
    Xs, ys = [], []
    for name in files:
        d = _unpickle(folder / name, layout)
        if "data" not in d or label_key not in d:
            raise ValueError(f"{folder / name}: missing key 'data' or {label_key!r} (keys "
                             f"{sorted(map(str, d))}); {layout}.")
        X = np.asarray(d["data"])
        y = np.asarray(d[label_key], dtype=np.int64)
        if X.dtype != np.uint8 or X.ndim != 2 or X.shape[1] != 3072 or y.shape != (X.shape[0],):
            raise ValueError(f"{folder / name}: expected data uint8 of shape (n, 3072) and n labels; "
                             f"got data {X.dtype} {X.shape}, labels {y.shape}; {layout}.")
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{folder / name}: labels must be in 0..{num_classes - 1}; got range "
                             f"{y.min()}..{y.max()}.")
        Xs.append(X.reshape(-1, 3, 32, 32))
        ys.append(y)
    return Dataset(np.ascontiguousarray(np.concatenate(Xs)), np.concatenate(ys), num_classes,
                   f"cifar{num_classes}/{split}")


# ---------------------------------------------------------------------------------------------
# ImageFolder (ImageNet layout)
# ---------------------------------------------------------------------------------------------

def image_folder(root: str | os.PathLike, split: Literal["train", "val"] = "train", transform=None):
    r"""The ImageNet layout ``root/{train,val}/<class>/<image>`` as a torchvision ImageFolder.

    Parameters
    ----------
    root : folder with ``train/`` and ``val/``, each with one sub-folder per class (the same
        class folders in both) holding image files (``.jpg``, ``.png``, ...).
    split : ``"train"`` or ``"val"``.
    transform : torchvision transform applied to each PIL image.

    Returns
    -------
    torchvision.datasets.ImageFolder

    Raises
    ------
    FileNotFoundError
        ``root/split`` missing, or no class folder, or a class folder without images.

    Examples
    --------
    >>> ds = image_folder("/data/imagenet", "val")  # doctest: +SKIP
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val'; got split={split!r}.")
    root = Path(root).expanduser()
    layout = ("expected the ImageFolder layout root/train/<class>/<image> and root/val/<class>/<image> "
              "(one folder per class, e.g. n01440764/, holding .jpg/.png files)")
    folder = root / split
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}; {layout}.")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise FileNotFoundError(f"no class folders in {folder}; {layout}.")
    for c in classes:
        if not any(f.suffix.lower() in _IMAGE_EXTENSIONS for f in (folder / c).iterdir()):
            raise FileNotFoundError(f"class folder {folder / c} holds no image files "
                                    f"({', '.join(_IMAGE_EXTENSIONS)}); {layout}.")
    from torchvision.datasets import ImageFolder

    return ImageFolder(str(folder), transform=transform)


# ---------------------------------------------------------------------------------------------
# Small in-memory datasets
# ---------------------------------------------------------------------------------------------

def load_digits(*, split: Split = "train", test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    r"""scikit-learn's 8x8 digits (1797 samples) as uint8 images (n, 1, 8, 8) scaled to 0..255.

    The split is a fixed random permutation (``seed``): the last ``test_fraction`` is the test set.

    Examples
    --------
    >>> load_digits(split="test").X.shape
    (359, 1, 8, 8)
    """
    _check_split(split)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}.")
    try:
        from sklearn.datasets import load_digits as _sk_digits
    except ImportError as exc:
        raise ImportError("load_digits needs scikit-learn (pip install scikit-learn).") from exc
    d = _sk_digits()
    X = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    idx = perm[len(y) - n_test:] if split == "test" else perm[:len(y) - n_test]
    return Dataset(X[idx], y[idx], 10, f"digits/{split}")


def synthetic_images(n: int, *, shape: tuple[int, int, int] = (3, 32, 32), num_classes: int = 10,
                     noise: float = 40.0, seed: int = 0) -> Dataset:
    r"""Synthetic uint8 images: a class-dependent smooth pattern plus Gaussian noise.

    :math:`x_i = \mathrm{clip}(128 + P_{y_i} + \sigma \varepsilon_i)`, with the class patterns
    :math:`P_c` fixed by ``seed`` alone (train and test sets drawn with different seeds share
    them only if you pass the same ``seed`` and slice). Learnable, so a short run's loss falls;
    meant for throughput and for tests, not for accuracy claims.

    Parameters
    ----------
    n : number of samples.
    shape : (C, H, W).
    num_classes : k.
    noise : standard deviation of the noise, in pixel units (0..255).
    seed : int.

    Examples
    --------
    >>> ds = synthetic_images(6, shape=(1, 4, 4), num_classes=3)
    >>> ds.X.shape, ds.X.dtype, ds.y.tolist()
    ((6, 1, 4, 4), dtype('uint8'), [0, 1, 2, 0, 1, 2])
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int; got {n!r}.")
    if len(shape) != 3 or any(int(s) < 1 for s in shape):
        raise ValueError(f"shape must be (C, H, W) with positive entries; got {shape!r}.")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2; got {num_classes}.")
    C, H, W = (int(s) for s in shape)
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, H), np.linspace(0, 1, W), indexing="ij")
    freq = rng.uniform(0.5, 3.0, size=(num_classes, C, 2))
    phase = rng.uniform(0, 2 * np.pi, size=(num_classes, C))
    P = 60.0 * np.sin(2 * np.pi * (freq[..., :1, None] * yy + freq[..., 1:, None] * xx)
                      + phase[..., None, None])
    y = np.arange(n) % num_classes
    X = 128.0 + P[y] + noise * rng.standard_normal((n, C, H, W))
    return Dataset(np.clip(np.round(X), 0, 255).astype(np.uint8), y.astype(np.int64), num_classes,
                   f"synthetic{(C, H, W)}")


@dataclass
class TeacherStudent:
    r"""A planted teacher–student instance: :math:`Y = f_{\text{teacher}}(X) + \sigma E`.

    Attributes
    ----------
    X : float64 ndarray (n, d)
    Y : float64 ndarray (n, k)
    weights : list of (W_l, b_l) float64 pairs, W_l of shape (h_l, h_{l-1}).
    tau : PHT threshold of the teacher (``k`` top-k when ``topk`` is set).
    topk : int or None.
    noise : sigma.
    """

    X: np.ndarray
    Y: np.ndarray
    weights: list
    tau: float
    topk: int | None
    noise: float

    def model(self):
        """The teacher as a float64 ``nn.Sequential`` of Linear and PHT layers."""
        import torch
        from torch import nn

        from altheory.nets.activations import PHT

        layers = []
        for j, (W, b) in enumerate(self.weights):
            lin = nn.Linear(W.shape[1], W.shape[0]).double()
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(W))
                lin.bias.copy_(torch.from_numpy(b))
            layers.append(lin)
            if j < len(self.weights) - 1:
                layers.append(PHT(self.tau, k=self.topk, dim=1))
        return nn.Sequential(*layers)


def teacher_student(n: int, d: int, *, widths: tuple[int, ...] = (16,), k: int = 1,
                    tau: float = 0.0, topk: int | None = None, noise: float = 0.0,
                    seed: int = 0) -> TeacherStudent:
    r"""A planted PHT teacher network labels Gaussian inputs.

    :math:`x_i \sim \mathcal{N}(0, I_d)`, teacher layers :math:`W_l` with entries
    :math:`\mathcal{N}(0, 1/h_{l-1})`; each hidden bias is set to :math:`\tau` minus the median
    pre-activation, so that about half of every unit's samples are above the threshold (the
    support is neither empty nor full). :math:`Y = f(X) + \sigma E`. With ``noise=0`` the student
    with the teacher's architecture interpolates, so :math:`F^* = 0` and the normalised gap of
    docs/claims.md is the loss over :math:`F(0)`.

    Parameters
    ----------
    n, d : samples and input dimension.
    widths : hidden widths h_1..h_{L-1}.
    k : outputs.
    tau : PHT threshold (>= 0); ``topk`` uses the top-k form instead.
    noise : sigma >= 0.
    seed : int.

    Returns
    -------
    TeacherStudent

    Examples
    --------
    >>> ts = teacher_student(20, 3, widths=(5,), tau=0.1, seed=1)
    >>> ts.X.shape, ts.Y.shape, len(ts.weights)
    ((20, 3), (20, 1), 2)
    >>> import torch; f = ts.model()(torch.from_numpy(ts.X)).detach().numpy()
    >>> bool(np.allclose(f, ts.Y))
    True
    """
    for name, v in (("n", n), ("d", d), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int; got {name}={v!r}.")
    if not widths or any(int(h) < 1 for h in widths):
        raise ValueError(f"widths must be a non-empty tuple of positive ints; got {widths!r}.")
    if tau < 0:
        raise ValueError(f"tau must be >= 0; got tau={tau}. Use tau=0 for ReLU.")
    if noise < 0:
        raise ValueError(f"noise must be >= 0; got noise={noise}.")
    from altheory.nets.activations import pht, pht_topk

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    dims = (d, *map(int, widths), k)
    weights, A = [], X
    for j in range(len(dims) - 1):
        W = rng.standard_normal((dims[j + 1], dims[j])) / np.sqrt(dims[j])
        Z = A @ W.T
        if j < len(dims) - 2:
            b = tau - np.median(Z, axis=0)
            Z = Z + b
            A = pht(Z, tau) if topk is None else pht_topk(Z, topk, dim=1)
        else:
            b = np.zeros(dims[j + 1])
        weights.append((W, b))
    Y = Z + noise * rng.standard_normal(Z.shape)
    return TeacherStudent(X, Y, weights, float(tau), topk, float(noise))
