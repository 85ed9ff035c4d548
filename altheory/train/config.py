r"""The trainer's one configuration: a dataclass, TOML files and ``--key=value`` overrides.

Resolution order: dataclass defaults, then the TOML file (``--config``), then command-line
overrides. Every key is checked against the fields; an unknown key is rejected with the closest
field name (difflib). The resolved config is printed at start and saved in every checkpoint.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TrainConfig", "load_config", "apply_overrides", "parse_overrides", "config_diff", "config_from_dict",
           "METHODS", "ARCHS", "DATASETS", "RUN_CONTROL_FIELDS"]

METHODS = ("sgd", "alt", "alt-inner")
ARCHS = ("resnet8", "resnet20", "resnet56", "resnet18", "resnet50")
DATASETS = ("synthetic", "fashion-mnist", "digits", "cifar10", "cifar100", "imagenet")
ACTIVATIONS = ("pht", "relu")
SCHEDULES = ("cosine", "linear", "constant")
OPTIMIZERS = ("sgd", "adamw")

# fields that may differ between a run and its resume (they do not change the trajectory);
# ``epochs`` may also grow on resume (the schedule is then recomputed, see loop.train)
RUN_CONTROL_FIELDS = ("stop_step", "progress", "tensorboard", "workers", "log_every", "out_dir",
                      "eval_subset", "target_acc")


@dataclass
class TrainConfig:
    """Every knob of a training run, with its unit. See ``paper_repro/README.md`` for the recipes."""

    # --- data -----------------------------------------------------------------------------------
    dataset: str = "synthetic"        # one of DATASETS
    data_dir: str = ""                # dataset folder ("" = the dataset's default; fashion-mnist: /usr/share/datasets/fashion-mnist)
    image_size: int = 32              # pixels (side); synthetic data and ImageFolder crops; in-memory sets keep their size
    synthetic_n: int = 2048           # training samples of the synthetic set (validation: a quarter of it)
    synthetic_classes: int = 10       # classes of the synthetic set
    train_subset: int = 0             # use the first N training samples (0 = all); for quick runs
    augment: bool = True              # random crop (zero padding crop_pad) + horizontal flip on the training batches
    crop_pad: int = 4                 # pixels of zero padding for the random crop (0 = no crop)
    flip: bool = True                 # random horizontal flips
    workers: int = 8                  # DataLoader worker processes (ImageFolder only)
    # --- model ----------------------------------------------------------------------------------
    arch: str = "resnet20"            # one of ARCHS: CIFAR-style resnet8/20/56, torchvision resnet18/50
    width: int = 16                   # channels of the first stage (CIFAR-style ResNets only)
    activation: str = "pht"           # "pht" (every ReLU replaced by PHT) or "relu" (the control)
    tau: float = 0.0                  # PHT threshold (>= 0; 0 = ReLU values); not with topk
    topk: int | None = None           # top-k PHT: keep the k largest positive channels per spatial position (k >= 1); unset = threshold form
    # --- method ---------------------------------------------------------------------------------
    method: str = "sgd"               # "sgd", "alt" or "alt-inner" (see altheory.train.methods)
    alt_every: int = 0                # alt: optimizer steps between gate refreshes (0 = one epoch)
    inner_steps: int = 4              # alt-inner: weight steps per batch with its support held
    gate_bn: str = "batch"            # BatchNorm of the gate copy: "batch" statistics, frozen "running" ones, or those "folded" into the convs
    track_flips: bool = True          # alt/alt-inner: count support flips at each gate refresh (one extra gate forward per refresh)
    exact_head: bool = False          # solve the final linear layer exactly (C8) every head_every epochs
    head_every: int = 1               # epochs between exact head solves
    head_samples: int = 10000         # training samples (un-augmented, BN in eval mode) used for the head solve
    head_l2: float = 5e-4             # ridge of the head problem, (l2/2)(||W||^2 + ||b||^2)
    head_tol: float = 1e-8            # stop the Newton-CG solve when ||grad|| <= head_tol
    # --- optimisation ---------------------------------------------------------------------------
    optimizer: str = "sgd"            # "sgd" (Nesterov momentum) or "adamw"
    lr: float = 0.1                   # peak learning rate (per the global batch)
    momentum: float = 0.9             # SGD momentum / AdamW beta1
    weight_decay: float = 5e-4        # decoupled for adamw, L2 for sgd; applied to conv/linear weights only
    schedule: str = "cosine"          # "cosine", "linear" (to zero) or "constant", after warmup
    warmup_steps: int = 0             # optimizer steps of linear warmup from 0
    batch_size: int = 128             # global batch (split evenly across DDP ranks)
    epochs: int = 10                  # epochs; one epoch = n_train // batch_size optimizer steps for every method
    stop_step: int = 0                # stop (checkpoint written) after this optimizer step; 0 = run the whole budget
    target_acc: float = 0.0           # validation accuracy (0..1) for epochs/seconds-to-target (0 = not tracked)
    eval_subset: int = 0              # validation samples per evaluation: the first N of the validation split (0 = all)
    # --- system ---------------------------------------------------------------------------------
    device: str = "auto"              # "auto", "cpu", "cuda"
    dtype: str = "float32"            # parameter dtype: "float32" or "float64" (tests of exactness)
    amp: str = "bf16"                 # autocast on CUDA: "bf16" or "none" (always none on CPU / float64)
    channels_last: bool = True        # memory format on CUDA
    compile: bool = False             # torch.compile the model (CUDA; minutes of compile time)
    sync_bn: bool = True              # SyncBatchNorm under DDP (a rank's batch statistics = the global batch's)
    seed: int = 0                     # model init, data order and augmentation
    out_dir: str = "runs/default"     # checkpoints, CSV, TensorBoard, summary JSON
    log_every: int = 50               # optimizer steps between progress-bar updates and rows of steps.csv (mean loss/acc, lr, images/s of the window)
    progress: bool = True             # tqdm progress bars on rank 0, training and evaluation (if tqdm is installed)
    tensorboard: bool = True          # TensorBoard scalars, per epoch and every log_every steps (if tensorboard is installed)
    checkpoint: bool = True           # checkpoint every epoch and on SIGTERM / SIGINT

    def __post_init__(self):
        self.validate()

    def validate(self) -> "TrainConfig":
        """Raise ValueError on a value outside its field's range or choices."""
        choices = {"method": METHODS, "arch": ARCHS, "dataset": DATASETS, "activation": ACTIVATIONS,
                   "schedule": SCHEDULES, "optimizer": OPTIMIZERS, "gate_bn": ("batch", "running", "folded"),
                   "device": ("auto", "cpu", "cuda"), "dtype": ("float32", "float64"),
                   "amp": ("bf16", "none")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"config {name}={getattr(self, name)!r} is not one of {allowed}.")
        positive = ("batch_size", "epochs", "inner_steps", "head_every", "head_samples", "width",
                    "image_size", "synthetic_n", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"config {name} must be >= 1; got {getattr(self, name)}.")
        if self.topk is not None and (isinstance(self.topk, bool) or not isinstance(self.topk, int)
                                      or self.topk < 1):
            raise ValueError(f"config topk must be a positive int (keep the k largest positive entries); "
                             f"got topk={self.topk!r}. Omit topk for the threshold form (tau).")
        if self.topk is not None and self.tau != 0:
            raise ValueError(f"config tau={self.tau!r} and topk={self.topk!r}: the top-k form has no "
                             f"threshold. Set one of them (tau=0 with topk, or omit topk).")
        nonneg = ("tau", "eval_subset", "alt_every", "crop_pad", "workers", "warmup_steps", "stop_step",
                  "train_subset", "lr", "weight_decay", "head_l2", "momentum")
        for name in nonneg:
            if getattr(self, name) < 0:
                raise ValueError(f"config {name} must be >= 0; got {getattr(self, name)}.")
        if self.synthetic_classes < 2:
            raise ValueError(f"config synthetic_classes must be >= 2; got {self.synthetic_classes}.")
        if not 0 <= self.target_acc <= 1:
            raise ValueError(f"config target_acc is a fraction in [0, 1]; got {self.target_acc}.")
        if self.exact_head and self.head_l2 <= 0:
            raise ValueError("exact_head needs head_l2 > 0 (a strongly convex head problem, so the "
                             f"optimum exists and is certified); got head_l2={self.head_l2}.")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def dumps(self) -> str:
        """The resolved config as TOML text (``key = value`` lines)."""
        lines = []
        for k, v in self.to_dict().items():
            if v is None:  # TOML has no null: an unset optional field is a comment
                lines.append(f"# {k} is not set")
                continue
            lines.append(f"{k} = {json.dumps(v)}" if not isinstance(v, bool) else f"{k} = {str(v).lower()}")
        return "\n".join(lines) + "\n"


_TYPES = {f.name: f.type for f in dataclasses.fields(TrainConfig)}


def _field_type(name: str):
    hints = typing.get_type_hints(TrainConfig)
    return hints[name]


def _unknown(key: str, where: str) -> ValueError:
    close = difflib.get_close_matches(key, list(_TYPES), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"unknown config key {key!r} in {where}.{hint} Known keys: "
                      f"{', '.join(_TYPES)}.")


def _coerce(key: str, value, where: str):
    typ = _field_type(key)
    if typ == (int | None):  # optional int: "none" / "null" / "" unset it
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
            return None
        typ = int
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{where}: {key} expects a boolean (true/false); got {value!r}.")
    if typ is int:
        if isinstance(value, bool):
            raise ValueError(f"{where}: {key} expects an int; got {value!r}.")
        try:
            if isinstance(value, str):
                value = value.replace("_", "")
            f = float(value)
            if f != int(f):
                raise ValueError
            return int(f)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {key} expects an int; got {value!r}.") from None
    if typ is float:
        if isinstance(value, bool):
            raise ValueError(f"{where}: {key} expects a number; got {value!r}.")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {key} expects a number; got {value!r}.") from None
    if typ is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: {key} expects a string; got {value!r}.")
        return value
    raise TypeError(f"config field {key} has unsupported type {typ}.")  # pragma: no cover


def apply_overrides(cfg: TrainConfig, values: dict, where: str = "overrides") -> TrainConfig:
    """A copy of ``cfg`` with ``values`` (field -> value, coerced to the field's type) applied."""
    new = {}
    for k, v in values.items():
        key = k.replace("-", "_")
        if key not in _TYPES:
            raise _unknown(k, where)
        new[key] = _coerce(key, v, where)
    return dataclasses.replace(cfg, **new)


def parse_overrides(args: list[str]) -> dict:
    r"""``["--lr=0.1", "--method", "alt", "--compile"]`` -> ``{"lr": "0.1", "method": "alt", "compile": "true"}``.

    Raises ValueError for an argument that is not ``--key[=value]``.

    Examples
    --------
    >>> parse_overrides(["--lr=0.05", "--method", "alt", "--compile"])
    {'lr': '0.05', 'method': 'alt', 'compile': 'true'}
    """
    out, i = {}, 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--") or a == "--":
            raise ValueError(f"expected an override --key=value; got {a!r}.")
        body = a[2:]
        if "=" in body:
            k, v = body.split("=", 1)
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            k, v = body, args[i + 1]
            i += 1
        else:
            k, v = body, "true"
        out[k.replace("-", "_")] = v
        i += 1
    return out


def _load_toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError as exc:
            raise ImportError("reading a TOML config needs Python >= 3.11 or `pip install tomli`; "
                              "or pass every setting as --key=value.") from exc
    with open(path, "rb") as f:
        data = tomllib.load(f)
    flat = {}
    for k, v in data.items():
        if isinstance(v, dict):  # tables are only for grouping: [model] arch = "resnet18"
            flat.update(v)
        else:
            flat[k] = v
    return flat


def load_config(path: str | None = None, overrides: dict | None = None) -> TrainConfig:
    r"""Defaults, then the TOML file at ``path``, then ``overrides``; validated.

    Raises
    ------
    FileNotFoundError
        The config file does not exist.
    ValueError
        An unknown key (with the closest known key) or a value out of range.

    Examples
    --------
    >>> load_config(None, {"method": "alt", "lr": "0.05"}).lr
    0.05
    """
    cfg = TrainConfig()
    if path:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {p}. Configs live in paper_repro/configs/.")
        cfg = apply_overrides(cfg, _load_toml(p), where=str(p))
    if overrides:
        cfg = apply_overrides(cfg, overrides, where="command-line overrides")
    return cfg


def config_from_dict(d: dict, where: str = "a saved config") -> TrainConfig:
    """The TrainConfig of a saved config dict (a checkpoint's or config.toml's), validated.

    Older runs wrote ``topk = 0`` for the threshold form; it is read as unset (None).
    """
    d = dict(d)
    if d.get("topk") == 0:
        d["topk"] = None
    unknown = [k for k in d if k not in _TYPES]
    if unknown:
        raise ValueError(f"{where}: unknown config keys {unknown}; it was written by another version "
                         "of altheory, or is not a training config.")
    return TrainConfig(**d)


def config_diff(a: dict, b: dict, ignore=RUN_CONTROL_FIELDS) -> dict:
    """Keys whose values differ between two config dicts (``key -> (a, b)``), ignoring ``ignore``."""
    keys = set(a) | set(b)
    return {k: (a.get(k), b.get(k)) for k in sorted(keys) if k not in ignore and a.get(k) != b.get(k)}
