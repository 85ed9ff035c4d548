r"""Batches for the trainer: batch :math:`b` of the stream is a function of ``(seed, b)`` alone.

The training stream is an infinite sequence of global batches: batch ``b`` is slice
``b mod m`` of the permutation of epoch ``b // m`` (``m = n // batch_size`` full batches an epoch;
the last partial batch is dropped), drawn from ``torch.Generator().manual_seed(seed, epoch)``, and
its augmentation (random crop with zero padding, horizontal flip) is drawn from a generator
seeded by ``(seed, b)`` for the whole global batch. Each DDP rank takes its contiguous share of
the global batch. So the data a step sees does not depend on the number of ranks, on the
method, or on where a run was resumed — which is what makes the runs comparable and the resume
exact.

* :class:`TensorData`: in-memory datasets (Fashion-MNIST, digits, CIFAR, synthetic) held on the
  device as uint8, normalised and augmented there in one batched gather (airbench style).
* :class:`FolderData`: ImageFolder (ImageNet) through DataLoader workers with pinned memory;
  per-sample augmentation seeded by ``(seed, epoch, index)`` inside the worker.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from altheory import data as D
from altheory.train.config import TrainConfig
from altheory.train.distributed import DistInfo

__all__ = ["TensorData", "FolderData", "build_data"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _gen(*keys: int) -> torch.Generator:
    """A CPU generator seeded by a tuple of ints (stable across runs and processes)."""
    s = 0x9E3779B97F4A7C15
    for k in keys:
        s = (s * 6364136223846793005 + int(k) + 1442695040888963407) % (1 << 63)
    return torch.Generator().manual_seed(s)


def _shard(n: int, info: DistInfo) -> slice:
    if n % info.world:
        raise ValueError(f"batch_size={n} must be divisible by the number of DDP ranks ({info.world}).")
    per = n // info.world
    return slice(info.rank * per, (info.rank + 1) * per)


class TensorData:
    """In-memory train/validation sets on ``device``, with batched augmentation.

    Parameters
    ----------
    train, val : :class:`altheory.data.Dataset` with uint8 images (n, C, H, W).
    cfg : TrainConfig (batch_size, seed, augment, crop_pad, flip, channels_last).
    info : DistInfo.
    dtype : dtype of the batches (float32, or float64 for exactness tests).
    """

    def __init__(self, train: D.Dataset, val: D.Dataset, cfg: TrainConfig, info: DistInfo,
                 dtype: torch.dtype):
        if train.X.ndim != 4 or train.X.dtype != np.uint8:
            raise ValueError(f"TensorData needs uint8 images (n, C, H, W); got {train.X.dtype} {train.X.shape}.")
        if len(train) < cfg.batch_size:
            raise ValueError(f"the training set has {len(train)} samples, fewer than batch_size="
                             f"{cfg.batch_size}; lower batch_size.")
        self.cfg, self.info, self.dtype = cfg, info, dtype
        dev = info.device
        self.X = torch.from_numpy(train.X).to(dev)
        self.y = torch.from_numpy(train.y).to(dev)
        self.Xv = torch.from_numpy(val.X).to(dev)
        self.yv = torch.from_numpy(val.y).to(dev)
        Xf = train.X.astype(np.float64) / 255.0
        mean = Xf.mean(axis=(0, 2, 3))
        std = Xf.std(axis=(0, 2, 3)) + 1e-8
        self.mean = torch.tensor(mean, dtype=dtype, device=dev).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=dtype, device=dev).view(1, -1, 1, 1)
        self.num_classes = train.num_classes
        self.in_channels = int(train.X.shape[1])
        self.image_size = int(train.X.shape[2])
        self.n_train, self.n_val = len(train), len(val)
        self.steps_per_epoch = len(train) // cfg.batch_size
        self._perm_epoch, self._perm = -1, None
        self._shard = _shard(cfg.batch_size, info)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.to(self.dtype) / 255.0 - self.mean) / self.std
        if self.cfg.channels_last and x.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def train_batch(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Global batch ``b`` of the stream, this rank's share, normalised and augmented."""
        m, B = self.steps_per_epoch, self.cfg.batch_size
        epoch, j = divmod(b, m)
        if epoch != self._perm_epoch:
            self._perm = torch.randperm(self.n_train, generator=_gen(self.cfg.seed, 1, epoch))
            self._perm_epoch = epoch
        idx = self._perm[j * B:(j + 1) * B]
        sl = self._shard
        x = self.X[idx[sl].to(self.X.device)]
        y = self.y[idx[sl].to(self.X.device)]
        if self.cfg.augment:
            # the augmentation of the whole global batch is drawn, then this rank's share taken
            x = self._augment_shard(x, b)
        return self._normalise(x), y

    def _augment_shard(self, x_shard: torch.Tensor, b: int) -> torch.Tensor:
        cfg = self.cfg
        B = cfg.batch_size
        _, C, H, W = x_shard.shape
        g = _gen(cfg.seed, 2, b)
        p = cfg.crop_pad
        dy = torch.randint(0, 2 * p + 1, (B,), generator=g)[self._shard].to(x_shard.device)
        dx = torch.randint(0, 2 * p + 1, (B,), generator=g)[self._shard].to(x_shard.device)
        flip = (torch.rand(B, generator=g) < 0.5)[self._shard].to(x_shard.device)
        x = x_shard
        n = x.shape[0]
        if p > 0:
            xp = torch.nn.functional.pad(x, (p, p, p, p))
            ar = torch.arange(max(H, W), device=x.device)
            rows = (dy[:, None] + ar[:H])[:, None, :, None]
            cols = (dx[:, None] + ar[:W])[:, None, None, :]
            x = xp[torch.arange(n, device=x.device)[:, None, None, None],
                   torch.arange(C, device=x.device)[None, :, None, None], rows, cols]
        if cfg.flip:
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x

    def train_batches(self, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        b = start
        while True:
            yield self.train_batch(b)
            b += 1

    def eval_batches(self, which: str = "val", limit: int = 0, shard: bool = True,
                     batch_size: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Un-augmented batches of the validation set (``"val"``, its first ``limit`` samples when
        ``limit > 0``) or of the first ``limit`` training samples of a fixed permutation
        (``"train"``); this rank's share when ``shard``."""
        if which == "val":
            X, y = (self.Xv[:limit], self.yv[:limit]) if limit else (self.Xv, self.yv)
        elif which == "train":
            perm = torch.randperm(self.n_train, generator=_gen(self.cfg.seed, 3))
            idx = perm[:limit] if limit else perm
            X, y = self.X[idx.to(self.X.device)], self.y[idx.to(self.X.device)]
        else:
            raise ValueError(f"which must be 'val' or 'train'; got {which!r}.")
        if shard and self.info.active:
            X, y = X[self.info.rank::self.info.world], y[self.info.rank::self.info.world]
        bs = batch_size or max(self.cfg.batch_size, 256)
        for i in range(0, X.shape[0], bs):
            yield self._normalise(X[i:i + bs]), y[i:i + bs]


class _SeededFolder(torch.utils.data.Dataset):
    """ImageFolder items addressed by (epoch, index): the transform's randomness is seeded by them."""

    def __init__(self, folder, seed: int):
        self.folder, self.seed = folder, seed

    def __len__(self):
        return len(self.folder)

    def __getitem__(self, key):
        epoch, idx = key
        torch.manual_seed(int(_gen(self.seed, 4, epoch, idx).initial_seed()))
        return self.folder[idx]


class FolderData:
    """ImageFolder train/val through DataLoader workers (pinned memory, per-sample seeded crops)."""

    def __init__(self, cfg: TrainConfig, info: DistInfo, dtype: torch.dtype):
        from torchvision import transforms as T

        self.cfg, self.info, self.dtype = cfg, info, dtype
        size = cfg.image_size
        norm = T.Normalize(_IMAGENET_MEAN, _IMAGENET_STD)
        train_tf = (T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), norm])
                    if cfg.augment else T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), norm]))
        val_tf = T.Compose([T.Resize(int(round(size * 256 / 224))), T.CenterCrop(size), T.ToTensor(), norm])
        self.train_set = D.image_folder(cfg.data_dir, "train", train_tf)
        self.val_set = D.image_folder(cfg.data_dir, "val", val_tf)
        if self.train_set.classes != self.val_set.classes:
            raise ValueError(f"{cfg.data_dir}: train/ and val/ must hold the same class folders; got "
                             f"{len(self.train_set.classes)} and {len(self.val_set.classes)} classes.")
        self.num_classes = len(self.train_set.classes)
        self.in_channels, self.image_size = 3, size
        self.n_train, self.n_val = len(self.train_set), len(self.val_set)
        if self.n_train < cfg.batch_size:
            raise ValueError(f"the training set has {self.n_train} images, fewer than batch_size="
                             f"{cfg.batch_size}; lower batch_size.")
        self.steps_per_epoch = self.n_train // cfg.batch_size
        self._shard = _shard(cfg.batch_size, info)
        self._seeded = _SeededFolder(self.train_set, cfg.seed)

    def _loader(self, dataset, batches):
        return torch.utils.data.DataLoader(
            dataset, batch_sampler=batches, num_workers=self.cfg.workers,
            pin_memory=self.info.device.type == "cuda", persistent_workers=False)

    def _to_device(self, x, y):
        x = x.to(self.info.device, non_blocking=True).to(self.dtype)
        if self.cfg.channels_last and x.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.info.device, non_blocking=True)

    def train_batches(self, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        m, B = self.steps_per_epoch, self.cfg.batch_size
        epoch, j0 = divmod(start, m)
        while True:
            perm = torch.randperm(self.n_train, generator=_gen(self.cfg.seed, 1, epoch)).tolist()
            batches = [[(epoch, i) for i in perm[j * B:(j + 1) * B][self._shard]] for j in range(j0, m)]
            for x, y in self._loader(self._seeded, batches):
                yield self._to_device(x, y)
            epoch, j0 = epoch + 1, 0

    def eval_batches(self, which: str = "val", limit: int = 0, shard: bool = True,
                     batch_size: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if which == "val":
            ds, idx = self.val_set, list(range(min(limit, self.n_val) if limit else self.n_val))
        elif which == "train":
            # the training images with the validation transform (no augmentation)
            from torchvision.datasets import ImageFolder

            ds = ImageFolder(self.train_set.root, transform=self.val_set.transform)
            idx = torch.randperm(self.n_train, generator=_gen(self.cfg.seed, 3)).tolist()
            idx = idx[:limit] if limit else idx
        else:
            raise ValueError(f"which must be 'val' or 'train'; got {which!r}.")
        if shard and self.info.active:
            idx = idx[self.info.rank::self.info.world]
        bs = batch_size or self.cfg.batch_size
        batches = [idx[i:i + bs] for i in range(0, len(idx), bs)]
        for x, y in self._loader(ds, batches):
            yield self._to_device(x, y)


def build_data(cfg: TrainConfig, info: DistInfo, dtype: torch.dtype):
    """The data of a run: TensorData for in-memory sets, FolderData for ImageFolder."""
    name = cfg.dataset
    if name == "synthetic":
        shape = (3, cfg.image_size, cfg.image_size)
        n_val = max(cfg.synthetic_n // 4, 1)
        full = D.synthetic_images(cfg.synthetic_n + n_val, shape=shape,
                                  num_classes=cfg.synthetic_classes, seed=cfg.seed)
        train = D.Dataset(full.X[:cfg.synthetic_n], full.y[:cfg.synthetic_n], full.num_classes, "synthetic/train")
        val = D.Dataset(full.X[cfg.synthetic_n:], full.y[cfg.synthetic_n:], full.num_classes, "synthetic/val")
    elif name == "fashion-mnist":
        root = cfg.data_dir or None
        try:
            train, val = D.load_fashion_mnist(root, split="train"), D.load_fashion_mnist(root, split="test")
        except ValueError as exc:  # a damaged file: say where good ones come from
            msg = str(exc).strip()
            if "dataset-fashion-mnist" not in msg:
                msg += (f" Fashion-MNIST comes from the Debian package dataset-fashion-mnist (IDX files in "
                        f"{D.FASHION_MNIST_DIR}), or a data_dir with train-images-idx3-ubyte[.gz], "
                        "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz].")
            raise ValueError(msg) from None
    elif name == "digits":
        train, val = D.load_digits(split="train"), D.load_digits(split="test")
    elif name in ("cifar10", "cifar100"):
        if not cfg.data_dir:
            raise ValueError(f"dataset={name} needs data_dir: the cifar-10-batches-py / cifar-100-python "
                             "folder (or the folder that contains it).")
        k = 10 if name == "cifar10" else 100
        train, val = D.load_cifar(cfg.data_dir, num_classes=k, split="train"), D.load_cifar(
            cfg.data_dir, num_classes=k, split="test")
    elif name == "imagenet":
        if not cfg.data_dir:
            raise ValueError("dataset=imagenet needs data_dir: a folder with train/<class>/ and val/<class>/.")
        return FolderData(cfg, info, dtype)
    else:
        raise ValueError(f"dataset must be one of synthetic, fashion-mnist, digits, cifar10, cifar100, "
                         f"imagenet; got {name!r}.")
    if cfg.train_subset:
        train = D.Dataset(train.X[:cfg.train_subset], train.y[:cfg.train_subset], train.num_classes, train.name)
    return TensorData(train, val, cfg, info, dtype)


def steps_total(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """The step budget: ``epochs * steps_per_epoch`` optimizer steps, the same for every method."""
    return int(cfg.epochs * steps_per_epoch)

