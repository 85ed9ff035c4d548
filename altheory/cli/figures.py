r"""``altheory figures``: regenerate every figure (PNG and PDF) from cached results.

Each figure is one small script in ``figures/`` (``figN_<name>.py`` with a ``main(out_dir, ...)``
that only loads saved results and plots; documented in ``figures/README.md``). This command
runs them in order; before each, it makes sure the cached inputs exist, and recomputes what is
missing:

=====  ==================================  ================================================
fig    reads                               recomputed, when missing, by
=====  ==================================  ================================================
fig1   data/claims/C5.json                 ``altheory.claims.report.run_claims(["C5"], profile)``
fig2   data/claims/C3..C8.json             ``run_claims([...], profile)``
fig3   figures/data/alternation_<d>.json   ``altheory alternate --data <d> --export`` (resumed)
fig4   the same, and data/claims/C9        both of the above
fig5   data/claims/C1.json                 ``run_claims(["C1"], profile)``
fig6   data/claims/C7.json                 ``run_claims(["C7"], profile)``
=====  ==================================  ================================================

Claim reports live in ``figures/data/claims/`` (committed: the thorough reports behind the
committed figures), not in ``results/claims/``, which every ``altheory verify`` overwrites with
its quick reports. ``--profile`` (default ``thorough``) is the claim profile used for a recomputation; existing
reports are used as they are (``--recompute`` forces new ones).

Example::

    altheory figures                 # every figure, recomputing only what is missing
    altheory figures --only fig3,fig4
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import sys
from pathlib import Path

from altheory.cli._common import EXIT_STATUSES, UsageError, add_quiet

__all__ = ["FIGURES", "add_parser", "run", "figures_dir"]

# name -> (script stem, claim reports it reads, alternation data set it reads or None)
FIGURES: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "fig1": ("fig1_success_vs_width", ("C5",), None),
    "fig2": ("fig2_gap_histograms", ("C3", "C4", "C5", "C6", "C7", "C8"), None),
    "fig3": ("fig3_alternation_vs_baselines", (), "fashion-mnist"),
    "fig4": ("fig4_support_flips", ("C9",), "fashion-mnist"),
    "fig5": ("fig5_linearization_error", ("C1",), None),
    "fig6": ("fig6_deep_certified_gap", ("C7",), None),
}


def figures_dir(path: str | None = None) -> Path:
    """``path``, else ``./figures`` when it holds the scripts, else the repository's ``figures/``."""
    cands = [Path(path)] if path else [Path("figures"), Path(__file__).resolve().parents[1] / "figures"]
    for c in cands:
        if (c / "_common.py").is_file():
            return c.resolve()
    raise FileNotFoundError(f"no figure scripts found in {[str(c) for c in cands]}; expected "
                            "figures/fig1_success_vs_width.py ... and figures/_common.py. Run from "
                            "the repository root or pass --figures-dir.")


def _load(figdir: Path, stem: str):
    if str(figdir) not in sys.path:
        sys.path.insert(0, str(figdir))
    spec = importlib.util.spec_from_file_location(f"altheory_figure_{stem}", figdir / f"{stem}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _names(s: str) -> list[str]:
    names = [n.strip() for n in s.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"empty figure list; expected some of {list(FIGURES)}")
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown figure(s) {unknown}; expected some of {list(FIGURES)}")
    return names


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "figures", help="regenerate every figure from cached results",
        description="Regenerate the figures (PNG + PDF) from cached results; missing inputs are "
                    "recomputed first.", epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("--only", type=_names, default=None, metavar="NAMES",
                   help=f"comma-separated subset of {list(FIGURES)}")
    p.add_argument("--figures-dir", default=None, help="folder of the figure scripts and outputs")
    p.add_argument("--claims-dir", default=None,
                   help="claim reports (default: <figures-dir>/data/claims, the committed thorough reports)")
    p.add_argument("--profile", default="thorough", choices=("quick", "thorough"),
                   help="claim profile for recomputing a missing report (default %(default)s)")
    p.add_argument("--recompute", action="store_true", help="recompute every input, even cached ones")
    add_quiet(p)
    p.set_defaults(run=run)
    return p


def _alternation_data(name: str, data: str, path: Path, recompute: bool, quiet: bool) -> bool:
    """Run (or resume) the default comparison on ``data`` and export it to ``path``."""
    from altheory.experiments import comparison as C

    cfg = C.Config(data=data)
    out = Path(f"results/alternation/{data}")
    resume = not recompute and (out / "config.json").is_file()
    print(f"{name}: running the alternation comparison on {data}"
          + (f" (resuming {out})" if resume else ""))
    try:
        runs = C.run_comparison(cfg, progress=not quiet, out=out, resume=resume, overwrite=not resume)
    except (FileNotFoundError, ValueError) as exc:
        print(f"{name}: the comparison could not run: {exc}; figure skipped", file=sys.stderr)
        return False
    C.export(runs, C.summarise(runs), path)
    return True


def run(args: argparse.Namespace) -> int:
    from altheory.cli._common import output_dir as check_output_dir

    from altheory.cli._common import require

    require(("matplotlib",), "figures", "altheory figures")
    names = list(FIGURES) if args.only is None else args.only
    try:
        figdir = figures_dir(args.figures_dir)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    check_output_dir(figdir, create=False)
    claims_dir = Path(args.claims_dir) if args.claims_dir else figdir / "data" / "claims"
    if args.claims_dir and claims_dir.exists() and not claims_dir.is_dir():
        raise UsageError(f"--claims-dir {claims_dir} is not a folder; expected the folder of the "
                         "claim reports (<claim>.json).")
    status = 0
    for name in names:
        stem, claims, data = FIGURES[name]
        missing = [c for c in claims if args.recompute or not (claims_dir / f"{c}.json").is_file()]
        if missing:
            from altheory.claims.report import run_claims

            check_output_dir(claims_dir)
            print(f"{name}: computing claim reports {missing} (profile {args.profile})")
            run_claims(missing, profile=args.profile, out_dir=claims_dir)
        if data is not None:
            path = figdir / "data" / f"alternation_{data}.json"
            if args.recompute or not path.is_file():
                if not _alternation_data(name, data, path, args.recompute, args.quiet):
                    status = 1
                    continue
        mod = _load(figdir, stem)
        kwargs = {"out_dir": figdir}
        if "claims_dir" in inspect.signature(mod.main).parameters:
            kwargs["claims_dir"] = claims_dir
        try:
            out = mod.main(**kwargs)
        except FileNotFoundError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            status = 1
            continue
        if not args.quiet:
            print(f"{name}: " + ", ".join(str(Path(o).relative_to(figdir.parent))
                                         if figdir.parent in Path(o).parents else str(o) for o in out))
    return status


def main(argv: list[str] | None = None) -> int:
    """``altheory figures ...`` (kept for scripts that call this module directly)."""
    from altheory.cli.main import main as cli_main

    return cli_main(["figures", *(argv or [])])
