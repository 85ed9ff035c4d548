r"""The ``altheory`` command line.

``altheory verify``      run the claim checks (docs/claims.md C1–C9) and print the summary table.
``altheory figures``     regenerate the figures from cached results.
``altheory alternate``   weight/support alternation against SGD/Adam baselines on real data.
``altheory train``       the torch trainer (PHT ResNets, CIFAR/ImageNet, methods sgd/alt/alt-inner).
``altheory sweep``       resumable parameter sweeps of the claim measurements (C3–C7), to CSV.

Subcommands other than ``verify`` are implemented in their own modules and imported lazily, so
``altheory verify`` starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

__all__ = ["main"]

# subcommand -> "module:function" taking argv (list[str]) and returning an exit status
_DELEGATED = {
    "figures": ("altheory.cli.figures:main", "regenerate every figure from cached results"),
    "alternate": ("altheory.cli.alternate:main", "alternation vs SGD/Adam baselines"),
    "train": ("altheory.train.cli:main", "train PHT ResNets (sgd / alt / alt-inner)"),
    "sweep": ("altheory.experiments.sweeps:main", "resumable parameter sweeps of claim measurements (CSV)"),
}


def _verify(argv: list[str]) -> int:
    from altheory.claims import registry
    from altheory.claims.report import exit_code, make_console, run_claims, summary_table, write_summary

    p = argparse.ArgumentParser(prog="altheory verify",
                                description="Run the claim checks of docs/claims.md and report them.")
    p.add_argument("--thorough", action="store_true",
                   help="thorough profile: more and larger instances (minutes, not seconds)")
    p.add_argument("--claims", default=None,
                   help="comma-separated claim ids, e.g. C1,C4 (default: every registered claim)")
    p.add_argument("--seed", type=int, default=0, help="base seed; instance j of a claim uses seed + j")
    p.add_argument("--json", default="results/verify.json",
                   help="summary JSON path; per-claim reports go beside it (default: %(default)s)")
    p.add_argument("--strict", action="store_true",
                   help="also fail when an asserted claim had no verified instance")
    p.add_argument("--list", action="store_true", help="list the registered claims and exit")
    args = p.parse_args(argv)
    console = make_console()
    if args.list:
        for cid, c in registry().items():
            console.print(f"{cid:<4} {'asserted' if c.asserted else 'reported':<9} {c.title}")
        return 0
    ids = None if args.claims is None else [c for c in args.claims.split(",") if c.strip()]
    from pathlib import Path

    out = Path(args.json)
    if ids is not None:
        from altheory.claims import get_claim

        try:
            ids = [get_claim(c).id for c in ids]
        except ValueError as exc:
            console.print(f"[red]altheory verify: {exc}[/]")
            return 2
    reports = run_claims(ids, profile="thorough" if args.thorough else "quick", seed=args.seed,
                         out_dir=out.parent / "claims", console=console)
    console.print(summary_table(reports))
    write_summary(reports, out)
    console.print(f"reports: {out} and {out.parent / 'claims'}/<claim>.json")
    return exit_code(reports, strict=args.strict)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    commands = {"verify": "run the claim checks of docs/claims.md (the main job)"}
    commands.update({k: v[1] for k, v in _DELEGATED.items()})
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: altheory {" + ",".join(commands) + "} [options]\n")
        for k, v in commands.items():
            print(f"  {k:<10} {v}")
        print("\n`altheory <command> --help` for the options of a command.")
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "verify":
        return _verify(rest)
    if cmd in _DELEGATED:
        target = _DELEGATED[cmd][0]
        mod, fn = target.split(":")
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name == mod:
                print(f"altheory {cmd}: not available in this version ({mod} is missing).", file=sys.stderr)
                return 2
            raise
        return int(getattr(module, fn)(rest) or 0)
    import difflib

    close = difflib.get_close_matches(cmd, list(commands), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    print(f"altheory: unknown command {cmd!r}; expected one of {list(commands)}.{hint}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
