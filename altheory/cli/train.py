r"""``altheory train``: the torch trainer (:mod:`altheory.train`), PHT ResNets by sgd / alt / alt-inner.

Every field of :class:`altheory.train.config.TrainConfig` is an option, in either form
``--key value`` or ``--key=value`` (``--data-dir`` and ``--data_dir`` are the same key; a bare
``--flag`` is ``true``). ``altheory train --list-keys`` lists them with their defaults. The
configuration is resolved and checked before any work (an unknown key gets the closest one, a
value out of range is refused, ``--device cuda`` without CUDA is refused); the trainer does the
rest (``--resume`` semantics, checkpoints). Under torchrun, run ``-m altheory.train.cli``.
"""

from __future__ import annotations

import argparse

from altheory.cli._common import EXIT_STATUSES, UsageError, add_quiet, hidden_alias

__all__ = ["add_parser", "run", "normalise_overrides"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train PHT ResNets (sgd / alt / alt-inner)",
        description="Train a PHT ResNet with method sgd / alt / alt-inner. Every TrainConfig field "
                    "is an option: --key value or --key=value (see --list-keys).",
        epilog="examples:\n"
               "  altheory train --config paper_repro/configs/cifar10_resnet20_alt.toml --data-dir ~/data\n"
               "  altheory train --method alt --epochs 1 --device cpu\n\n" + EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("--config", default=None, metavar="FILE.toml", help="a TOML config (paper_repro/configs/)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in out_dir")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    hidden_alias(p, "--print_config", "print_config", action="store_true")
    p.add_argument("--list-keys", action="store_true", help="list every config key with its default")
    hidden_alias(p, "--list_keys", "list_keys", action="store_true")
    add_quiet(p)
    p.set_defaults(run=run)
    return p


def normalise_overrides(extra: list[str]) -> list[str]:
    """``["--lr", "0.1", "--data-dir=x", "--compile"]`` -> ``["--lr=0.1", "--data_dir=x", "--compile=true"]``.

    Raises UsageError for a word that is neither ``--key`` nor the value after one.

    Examples
    --------
    >>> normalise_overrides(["--lr", "0.1", "--data-dir=x", "--compile", "--tau", "-1"])
    ['--lr=0.1', '--data_dir=x', '--compile=true', '--tau=-1']
    """
    out, i = [], 0
    while i < len(extra):
        a = extra[i]
        if not a.startswith("--") or a == "--":
            raise UsageError(f"expected a config option --key value or --key=value; got {a!r} "
                             "(`altheory train --list-keys` lists the keys).")
        key, eq, value = a[2:].partition("=")
        if not key:
            raise UsageError(f"an option without a name: {a!r}; expected --key value or --key=value.")
        if not eq:
            nxt = extra[i + 1] if i + 1 < len(extra) else None
            if nxt is not None and not nxt.startswith("--"):
                value, i = nxt, i + 1
            else:
                value = "true"
        out.append(f"--{key.replace('-', '_')}={value}")
        i += 1
    return out


def run(args: argparse.Namespace) -> int:
    from altheory.train.cli import main as trainer_main

    if args.list_keys:
        return int(trainer_main(["--help"]) or 0)
    overrides = normalise_overrides(args.extra)
    if args.quiet and not any(o.startswith("--progress=") for o in overrides):
        overrides.append("--progress=false")
    from altheory.train.config import load_config, parse_overrides

    try:
        cfg = load_config(args.config, parse_overrides(overrides))
    except (ValueError, FileNotFoundError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("device 'cuda' was asked for but CUDA is not available here "
                             "(torch.cuda.is_available() is False); use --device cpu or --device auto.")
    argv = ([f"--config={args.config}"] if args.config else []) + (["--resume"] if args.resume else []) \
        + (["--print-config"] if args.print_config else []) + overrides
    try:
        return int(trainer_main(argv) or 0)
    except SystemExit as exc:  # a delegate's own argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except (ValueError, FileNotFoundError) as exc:  # the trainer's refusals (resume, data)
        raise UsageError(str(exc)) from None
