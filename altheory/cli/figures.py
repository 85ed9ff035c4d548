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
fig3   figures/data/alternation_<d>.json   ``altheory alternate --data <d> --export``
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

__all__ = ["FIGURES", "main", "figures_dir"]

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


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``altheory figures``; returns the exit status."""
    p = argparse.ArgumentParser(prog="altheory figures",
                                description="Regenerate the figures (PNG + PDF) from cached results.")
    p.add_argument("--only", default=None, help=f"comma-separated subset of {list(FIGURES)}")
    p.add_argument("--figures-dir", default=None, help="folder of the figure scripts and outputs")
    p.add_argument("--claims-dir", default=None,
                   help="claim reports (default: <figures-dir>/data/claims, the committed thorough reports)")
    p.add_argument("--profile", default="thorough", choices=("quick", "thorough"),
                   help="claim profile for recomputing a missing report (default %(default)s)")
    p.add_argument("--recompute", action="store_true", help="recompute every input, even cached ones")
    args = p.parse_args(argv)
    names = list(FIGURES) if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        p.error(f"unknown figure(s) {unknown}; expected some of {list(FIGURES)}.")
    figdir = figures_dir(args.figures_dir)
    claims_dir = Path(args.claims_dir) if args.claims_dir else figdir / "data" / "claims"
    status = 0
    for name in names:
        stem, claims, data = FIGURES[name]
        missing = [c for c in claims if args.recompute or not (claims_dir / f"{c}.json").is_file()]
        if missing:
            from altheory.claims.report import run_claims

            print(f"{name}: computing claim reports {missing} (profile {args.profile})")
            run_claims(missing, profile=args.profile, out_dir=claims_dir)
        if data is not None:
            path = figdir / "data" / f"alternation_{data}.json"
            if args.recompute or not path.is_file():
                from altheory.cli.alternate import main as alternate_main

                print(f"{name}: running the alternation comparison on {data}")
                rc = alternate_main(["--data", data, "--export", str(path), "--no-progress"])
                if rc:
                    print(f"{name}: the comparison failed (exit {rc}); figure skipped", file=sys.stderr)
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
        print(f"{name}: " + ", ".join(str(Path(o).relative_to(figdir.parent)) if figdir.parent in Path(o).parents
                                     else str(o) for o in out))
    return status


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
