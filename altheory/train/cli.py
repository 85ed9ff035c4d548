r"""``altheory train --config paper_repro/configs/<name>.toml [--key=value ...] [--resume]``.

Overrides are ``--key=value`` (or ``--key value``; a bare ``--flag`` is ``true``) for any field
of :class:`altheory.train.config.TrainConfig`; an unknown key is rejected with the closest field.
Under torchrun each process runs this same command (DDP from the environment).

Refusals come before any work, one line on stderr, exit status 2: ``--device=cuda`` without
CUDA, ``--resume`` without a checkpoint or with a truncated / foreign one, a config that differs
from the checkpoint's (only run-control fields and more ``epochs`` may change), missing or damaged
data files (the message names the file and the Debian package or layout), a batch larger than
the training set. SIGTERM (exit 143) and SIGINT (exit 130) write a checkpoint first; ``--resume``
continues from it.

Examples
--------
``altheory train --config paper_repro/configs/cifar10_resnet20_alt.toml --data_dir=~/data``
``torchrun --nproc_per_node=8 -m altheory.train.cli --config paper_repro/configs/imagenet_resnet50_sgd.toml``
"""

from __future__ import annotations

import sys

__all__ = ["main"]

_USAGE = """usage: altheory train [--config FILE.toml] [--resume] [--print-config] [--key=value ...]

Train a PHT ResNet with method sgd / alt / alt-inner. Every field of TrainConfig can be set
with --key=value; run with --print-config to see them all with their defaults.
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 refused before any work (one line on stderr),
    143 stopped by SIGTERM, 130 by SIGINT; both write a checkpoint first)."""
    from altheory.train.config import TrainConfig, load_config, parse_overrides

    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(_USAGE)
        import dataclasses
        import inspect

        src = inspect.getsource(TrainConfig)
        for f in dataclasses.fields(TrainConfig):
            line = next((l for l in src.splitlines() if l.strip().startswith(f"{f.name}:")), "")
            comment = line.split("#", 1)[1].strip() if "#" in line else ""
            print(f"  {'--' + f.name + '=' + repr(f.default):<34} {comment}")
        return 0
    config_path, resume, print_only, rest = None, False, False, []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--config" and i + 1 < len(argv):
            config_path, i = argv[i + 1], i + 2
            continue
        if a.startswith("--config="):
            config_path = a.split("=", 1)[1]
        elif a == "--resume":
            resume = True
        elif a == "--print-config":
            print_only = True
        else:
            rest.append(a)
        i += 1
    try:
        cfg = load_config(config_path, parse_overrides(rest))
    except (ValueError, FileNotFoundError, TypeError) as exc:
        print(f"altheory train: {exc}", file=sys.stderr)
        return 2
    if print_only:
        print(cfg.dumps(), end="")
        return 0
    from altheory.train.loop import train

    try:
        summary = train(cfg, resume=resume)
    except (ValueError, FileNotFoundError) as exc:  # refusals, raised before any training
        print(f"altheory train: {exc}", file=sys.stderr)
        return 2
    if summary.get("interrupted"):
        return 130 if summary.get("signal") == "SIGINT" else 143
    return 0


if __name__ == "__main__":  # torchrun -m altheory.train.cli ...
    raise SystemExit(main())
