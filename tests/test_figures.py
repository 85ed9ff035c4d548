"""Figure scripts and ``altheory figures`` / ``altheory alternate`` on tiny cached inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from altheory.cli import figures as figures_cli
from altheory.cli.main import main as cli_main
from altheory.experiments import comparison as alternation

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A figures folder with the scripts, a tiny alternation run and tiny claim reports."""
    base = tmp_path_factory.mktemp("figs")
    figdir = base / "figures"
    figdir.mkdir()
    for p in (ROOT / "figures").glob("*.py"):
        shutil.copy(p, figdir / p.name)
    cfg = alternation.Config(data="digits", n_train=60, n_test=30, pca=5, width=4, seeds=2, relu=False,
                                 methods="sgd,adam",
                                 rounds=2, descent_steps=5, lr_points=1, epochs_mini=2,
                                 epochs_full=3, batch_size=20)
    runs = alternation.run_comparison(cfg, progress=False)
    summary = alternation.summarise(runs)
    alternation.export(runs, summary, figdir / "data" / "alternation_fashion-mnist.json")
    claims = base / "claims"
    claims.mkdir()
    inst = [{"seed": j, "sizes": {"n": 5}, "status": "pass", "value": 10.0 ** -(12 + j % 4),
             "tol": 1e-10, "detail": {"forward_rel_error": 1e-16 * (j + 1),
                                      "jacobian_rel_error": 0.0 if j == 0 else 1e-15 * j}}
            for j in range(6)]
    (claims / "C1.json").write_text(json.dumps({"claim": "C1", "title": "t", "metric": "relative error",
                                                "verdict": "PASS", "instances": inst}))
    return figdir, claims, runs, summary


def test_summary_has_targets_medians_and_best_steps(tiny):
    _, _, runs, summary = tiny
    assert set(summary["taus"]) == {"0.1"}
    blk = summary["taus"]["0.1"]
    assert {"alt-exact", "alt-descent", "adam-full", "adam-mini", "sgd-mini"} <= set(blk["methods"])
    base_meds = [r["final_objective"]["median"] for m, r in blk["methods"].items()
                 if not m.startswith("alt-")]
    assert blk["target_objective"] == pytest.approx(1.05 * min(base_meds))
    for m, r in blk["methods"].items():
        e = r["epochs_to_target"]
        assert e["of"] == 2 and 0 <= e["reached"] <= 2
    assert all(isinstance(v, float) for v in summary["best_lr"].values())
    a = runs["alternation"][0]
    assert len(a["epochs"]) == len(a["objective"]) == len(a["flips"]) and "c8" in a


@pytest.mark.parametrize("name", ["fig3", "fig4", "fig5"])
def test_figures_cli_writes_png_and_pdf(tiny, name):
    figdir, claims, _, _ = tiny
    if name == "fig4":
        (claims / "C9.json").write_text(json.dumps({"instances": []}))
    rc = cli_main(["figures", "--only", name, "--figures-dir", str(figdir), "--claims-dir", str(claims)])
    assert rc == 0
    stem = figures_cli.FIGURES[name][0]
    for ext in (".png", ".pdf"):
        p = figdir / f"{stem}{ext}"
        assert p.is_file() and p.stat().st_size > 1000


def test_figure_with_a_missing_report_names_the_command(tiny, tmp_path):
    figdir, _, _, _ = tiny
    import importlib.util
    import sys

    sys.path.insert(0, str(figdir))
    spec = importlib.util.spec_from_file_location("fig6", figdir / "fig6_deep_certified_gap.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with pytest.raises(FileNotFoundError, match="altheory verify --thorough --claims C7"):
        mod.main(out_dir=tmp_path, claims_dir=tmp_path)


def test_figures_cli_rejects_unknown_names(tiny, capsys):
    assert cli_main(["figures", "--only", "fig9", "--figures-dir", str(tiny[0])]) == 2
    assert "unknown figure(s) ['fig9']" in capsys.readouterr().err


def test_every_figure_is_documented():
    readme = (ROOT / "figures" / "README.md").read_text()
    for name, (stem, _, _) in figures_cli.FIGURES.items():
        assert (ROOT / "figures" / f"{stem}.py").is_file()
        assert stem in readme


def test_alternate_cli_quick_and_missing_data(tmp_path, capsys):
    rc = cli_main(["alternate", "--data", "fashion-mnist", "--root", str(tmp_path / "none"),
                   "--out", str(tmp_path / "o"), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "dataset-fashion-mnist" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # refused before any work
    assert cli_main(["alternate", "--data", "mnist"]) == 2


def test_alternate_from_runs_resummarises(tiny, tmp_path, capsys):
    _, _, runs, summary = tiny
    path = tmp_path / "runs.json"
    path.write_text(json.dumps(runs))
    out = tmp_path / "fig.json"
    assert cli_main(["alternate", "--from-runs", str(path), "--export", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["summary"]["best_lr"] == summary["best_lr"]
    assert len(data["baselines"]) == len(runs["baselines"])  # one step size each: all are best
    assert data["summary"]["best_at_grid_edge"] == []


def _load_script(path: Path, name: str, monkeypatch):
    """Import a figure script with its own folder's ``_common`` (not a cached copy of another)."""
    import importlib.util
    import sys

    monkeypatch.delitem(sys.modules, "_common", raising=False)
    monkeypatch.syspath_prepend(str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_saved_figures_are_byte_reproducible(tmp_path):
    """The same figure saved twice gives identical PNG and PDF bytes (no creation date, no
    software version), and an unchanged file is not rewritten."""
    from altheory.plotting.style import figure, save

    paths = []
    for k in range(2):
        fig, ax = figure()
        ax.plot([0, 1, 2], [1, 0, 2], label="a line")
        ax.set_title("reproducible")
        ax.legend()
        paths.append(save(fig, tmp_path / f"f{k}"))
    for p0, p1 in zip(*paths):
        assert p0.read_bytes() == p1.read_bytes(), p0.suffix
    pdf = paths[0][1].read_bytes()
    assert b"/CreationDate" not in pdf and b"matplotlib" not in pdf.lower()
    assert b"Software" not in paths[0][0].read_bytes()[:4096]
    mtime = paths[0][0].stat().st_mtime_ns
    fig, ax = figure()
    ax.plot([0, 1, 2], [1, 0, 2], label="a line")
    ax.set_title("reproducible")
    ax.legend()
    save(fig, tmp_path / "f0")
    assert paths[0][0].stat().st_mtime_ns == mtime  # same bytes: left alone


@pytest.mark.parametrize("script", ["fig1_success_vs_width", "fig2_gap_histograms",
                                    "fig4_support_flips"])
def test_redrawn_figure_from_committed_data_is_identical(script, tmp_path, monkeypatch):
    """Figures 1, 2 and 4 drawn twice from the committed data give the same bytes, so
    `altheory figures` leaves git clean when the data did not change."""
    mod = _load_script(ROOT / "figures" / f"{script}.py", f"_{script}", monkeypatch)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for out in (a, b):
        mod.main(out_dir=out)
    for ext in (".png", ".pdf"):
        assert (a / f"{script}{ext}").read_bytes() == (b / f"{script}{ext}").read_bytes()


def test_fig1_counts_runs_per_cell_and_leaves_out_sampled_patterns(monkeypatch):
    mod = _load_script(ROOT / "figures" / "fig1_success_vs_width.py", "_fig1", monkeypatch)

    def inst(n, ratio, ok, kind="global", certified=None):
        detail = {"kind": kind}
        if certified is not None:
            detail["certified"] = certified
        if ok is not None:
            detail["success"] = ok
        return {"status": "pass" if kind == "global" else "reported",
                "sizes": {"check": "bound", "n": n, "m/m*": ratio}, "detail": detail}

    # a report without end-point certification: every run counts
    old = {"instances": [inst(12, 1.0, True), inst(12, 1.0, False),
                         inst(40, 2.0, True, kind="upper-bound")]}
    runs = mod.runs_of(old)
    assert [(r["n"], r["success"], r["certified"]) for r in runs] == [(12, True, None), (12, False, None)]
    # with certification: an uncertified run is neither a success nor a failure
    new = {"instances": [inst(12, 1.0, True, certified=True), inst(12, 1.0, None, certified=False),
                         inst(12, 2.0, False, certified=True)]}
    runs = mod.runs_of(new)
    assert [(r["ratio"], r["success"], r["certified"]) for r in runs] == [
        (1.0, True, True), (1.0, None, False), (2.0, False, True)]


def test_fig4_continues_stable_and_cycling_runs(monkeypatch):
    mod = _load_script(ROOT / "figures" / "fig4_support_flips.py", "_fig4", monkeypatch)
    per = [{"1": 0, "3": 0}, {"1": 4, "3": 2}, {"1": 2, "3": 0}, {"1": 1, "3": 0}]
    base = {"sizes": {"n": 2, "widths": [2, 1]}}
    stable = {**base, "detail": {"flips_per_layer": per, "stopped": "support-stable"}}
    cycle = {**base, "detail": {"flips_per_layer": per, "stopped": "cycle-2"}}
    budget = {**base, "detail": {"flips_per_layer": per, "stopped": "max-rounds"}}
    assert mod.flip_curve(stable, 0, 5) == [1.0, 0.5, 0.25, 0.0, 0.0]
    assert mod.flip_curve(cycle, 0, 5) == [1.0, 0.5, 0.25, 0.5, 0.25]
    assert mod.flip_curve(cycle, 1, 4) == [1.0, 0.0, 0.0, 0.0]
    tail = mod.flip_curve(budget, 0, 5)[3:]
    assert all(np.isnan(tail))
