"""README.md and paper_repro/README.md: the examples run, and every number comes from a file.

Each table or list of measured numbers in the two READMEs sits in a block

    <!-- numbers:NAME source: FILES -->
    ...
    <!-- /numbers -->

whose content :data:`BLOCKS` regenerates from the committed results files it names (claim
reports in ``figures/data/claims/``, benchmarks in ``paper_repro/results/``). The test checks
that every block is exactly what its files give, and that the prose outside the blocks quotes
no measured number (times, ratios, rates, counts). After new results are committed,

    python tests/test_readme.py --update

rewrites the blocks in place.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
REPRO = ROOT / "paper_repro" / "README.md"
CLAIMS = ROOT / "figures" / "data" / "claims"
RESULTS = ROOT / "paper_repro" / "results"


# --------------------------------------------------------------------------- formatting

def _load(rel: str):
    return json.loads((ROOT / rel).read_text(encoding="utf-8"))


def _s(x: float | None, digits: int = 2) -> str:
    """Seconds (or any quantity) to ``digits`` significant figures; — for None."""
    if x is None:
        return "—"
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    dec = max(0, digits - 1 - mag)
    return f"{x:.{dec}f}"


def _e(x: float | None) -> str:
    if x is None:
        return "—"
    return "0" if x == 0 else f"{x:.1e}"


def _int(x: float) -> str:
    return f"{int(round(x)):,}".replace(",", " ")


def _table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or "l" * len(header)
    sep = ["---:" if a == "r" else "---" for a in align]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


# --------------------------------------------------------------------------- claims

# what each claim states and asserts (the words of docs/claims.md; no measured numbers)
CLAIM_TEXT = {
    "C1": ("`f(x) = A_S x + c_S`, `A_S` the Jacobian", "relative error ≤ 1e-10"),
    "C2": ("support constant and `f` affine inside the margin; crossings detected",
           "≤ 1e-10; every crossing detected; the margin is sharp"),
    "C3": ("convex in each layer given the support",
           "certified local minima of one-layer descent reach the convex optimum (gap ≤ 1e-6)"),
    "C4": ("two layers, fixed support: every local minimum is global",
           "balanced map ≤ 1e-8; fast solver = cvxpy; certified local minima gap ≤ 1e-6"),
    "C5": ("two-layer ReLU = Pilanci–Ergen convex program (exact arrangements)",
           "arrangement complete; certified gap ≤ 1e-8, cross-checked with cvxpy; map to a width-m* net ≤ 1e-6; optimum ≤ every descent result"),
    "C6": ("shared support = deep linear network (reduced-rank regression)",
           "certified local minima gap ≤ 1e-6 under the stated conditions"),
    "C7": ("deep fixed support: path-lifted lower bound",
           "bound ≤ every descent result; attained by a network under replication"),
    "C8": ("globally optimal given the final support", "gap ≤ 1e-6 at a certified local minimum"),
    "C9": ("alternation: the support-preserving step never increases the loss",
           "monotone up to 1e-9 F(0); the held support never flips"),
}


def _claim_reports() -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(CLAIMS.glob("C*.json"), key=lambda p: int(p.stem[1:]))]


def _counts(rep: dict) -> dict[str, int]:
    c: dict[str, int] = {}
    for i in rep["instances"]:
        c[i["status"]] = c.get(i["status"], 0) + 1
    return c


def _worst(rep: dict) -> float | None:
    vals = [abs(i["value"]) for i in rep["instances"]
            if i["status"] in ("pass", "fail") and i.get("value") is not None
            and math.isfinite(i["value"])]
    return max(vals) if vals else None


def block_claims() -> str:
    rows = []
    for rep in _claim_reports():
        cid = rep["claim"]
        stmt, asserted = CLAIM_TEXT.get(cid, (rep["title"], "—"))
        c = _counts(rep)
        other = ", ".join(f"{v} {k}" for k, v in sorted(c.items()) if k not in ("pass", "fail"))
        ev = rep.get("evidence") or []
        evidence = (f"{sum(e['certified'] >= e['required'] for e in ev)}/{len(ev)} groups "
                    f"(≥ {min(e['required'] for e in ev)} each)" if ev else "—")
        rows.append([f"[{cid}](docs/claims.md#{cid.lower()})", stmt, asserted, f"**{rep['verdict']}**",
                     f"{c.get('pass', 0)} pass, {c.get('fail', 0)} fail", other or "—",
                     _e(_worst(rep)), evidence])
    return _table(["claim", "statement", "asserted", "verdict", "counted", "not counted", "worst",
                   "minimum evidence met"], rows, "llllllll")


def block_claim_notes() -> str:
    out = []
    for rep in _claim_reports():
        for note in rep.get("notes", []):
            out.append(f"- **{rep['claim']}**: {note}")
    return "\n".join(out)


def block_alternation() -> str:
    data = _load("figures/data/alternation_fashion-mnist.json")
    rows = []
    for tau, blk in sorted(data["summary"]["taus"].items(), key=lambda kv: -float(kv[0])):
        meth = blk["methods"]
        order = sorted(meth, key=lambda m: meth[m]["final_objective"]["median"])
        for m in order:
            r = meth[m]
            e = r["epochs_to_target"]
            sec = r["seconds_to_target"]
            rows.append([("ReLU" if float(tau) == 0 else f"PHT τ = {float(tau):g}"), f"`{m}`",
                         f"{r['final_objective']['median']:.4f}",
                         f"{e['reached']}/{e['of']}",
                         _s(e["median"], 3) if e["median"] is not None else "—",
                         _s(sec["median"], 2) if sec["median"] is not None else "—",
                         f"{r['final_test_acc']['median']:.3f}"])
    return _table(["network", "method", "final objective (median)", "runs reaching the target",
                   "epochs to target", "seconds to target", "test accuracy"], rows, "llrrrrr")


# --------------------------------------------------------------------------- timings

def _threads() -> dict:
    return _load("paper_repro/results/bench_threads.json")["runs"]


def block_timing() -> str:
    rows = []
    for run in _threads():
        v = [r for r in run["verify"] if r["policy"] == "passive" and r["exit_status"] == 0]
        if not v:
            continue
        walls = [r["wall_s"] for r in v]
        loads = [r["load1_before"] for r in v]
        rows.append([f"`make verify` (quick `altheory verify`, after set-up; {run['label']})",
                     f"{_s(statistics.median(walls))} s median ({_s(min(walls))}–{_s(max(walls))} s, "
                     f"{len(walls)} runs)",
                     f"{run['cores']} cores, 1-min load {_s(min(loads))}–{_s(max(loads))}",
                     "`paper_repro/results/bench_threads.json`"])
    t = RESULTS / "test_suite_time.json"
    if t.is_file():
        d = json.loads(t.read_text())
        counts = ", ".join(f"{v} {k}" for k, v in d.get("counts", {}).items()
                           if k in ("passed", "failed", "skipped", "xfailed", "errors", "error"))
        rows.append(["`make test` (`pytest -q`, after set-up)", f"{_s(d['wall_s'], 3)} s ({counts})",
                     f"{d['cores']} cores, 1-min load {_s(d['load1_before'])} → {_s(d['load1_after'])}",
                     "`paper_repro/results/test_suite_time.json`"])
    return _table(["command", "wall time", "machine", "source"], rows)


def block_threads() -> str:
    rows = []
    for run in _threads():
        vs, ts = run["verify_summary"], run.get("train_summary", {})
        for pol, s in vs.items():
            t, native = ts.get(pol), ts.get("native")
            rows.append([run["label"], run["date"][:10], f"`{pol}`",
                         f"{_s(s['median'])} ({_s(s['min'])}–{_s(s['max'])}), {s['runs']} runs",
                         _s(s["load1_median"]),
                         f"{_int(t['median'])} ({_int(t['min'])}–{_int(t['max'])})" if t else "—",
                         f"{t['median'] / native['median']:.2f}×" if t and native else "—"])
    return _table(["load", "date", "policy", "quick verify, s: median (range)",
                   "1-min load (median)", "trainer images/s: median (range)",
                   "trainer vs `native`, same run"], rows, "lllrrrr")


# --------------------------------------------------------------------------- benchmarks

def _lin_rows() -> list[dict]:
    d = _load("paper_repro/results/bench_linearize.json")
    return (d[-1] if isinstance(d, list) else d)["rows"]


def _fast(rel: str) -> list[dict]:
    return _load(rel)["rows"]


def _row(rows, **kw):
    for r in rows:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def block_benchmarks() -> str:
    try:
        return _block_benchmarks()
    except (KeyError, TypeError, IndexError, StopIteration) as exc:
        return f"(benchmark files changed format: {type(exc).__name__} {exc}; see paper_repro/README.md)"


def _block_benchmarks() -> str:
    lin = {r["model"]: r for r in _lin_rows()}
    res = lin.get("PHT ResNet-20") or next(iter(lin.values()))
    sol = _row(_load("paper_repro/results/bench_solvers.json")["rows"], n=2000, d=30, p=100)
    cpu = _fast("paper_repro/results/bench_fast_solver.json")
    gpu = _fast("paper_repro/results/bench_fast_solver_cuda_h200.json")
    mid = {s: _row(cpu, n=2000, d=30, p=100, solver=s) for s in ("fast", "fast32", "clarabel", "scnn")}
    big_cpu = _row(cpu, n=100000, d=50, p=500, solver="fast32")
    big_gpu = _row(gpu, n=100000, d=50, p=500, solver="fast32")
    step = _load("paper_repro/results/bench_step_h200.json")["rows"]
    ratios = [r["sgd_over_relu"] for r in step]
    alt = [r["alt_over_sgd_cost"] for r in step]
    rows = [
        ["`paper_repro/bench_linearize.py`", "explicit operator vs `torch.func.jacrev`",
         f"{res['model']}: {_s(res['linearize_s'])} s vs {_s(res['jacrev_s'])} s "
         f"({_s(res['ratio_linearize_over_jacrev'])}× jacrev's time)", "2-core CPU",
         "`bench_linearize.json`"],
        ["`paper_repro/bench_solvers.py`", "Clarabel vs SCS, two-layer fixed support",
         f"(2000, 30, 100): {_s(sol['clarabel_seconds'], 3)} s vs {_s(sol['scs_seconds'], 3)} s",
         "2-core CPU", "`bench_solvers.json`"],
        ["`paper_repro/bench_fast_solver.py`", "fast certified solver vs Clarabel and pyscnn",
         f"(2000, 30, 100), squared, λ = 0.1 λ_max: {_s(mid['fast']['time'])} s (f64), {_s(mid['fast32']['time'])} s "
         f"(f32 first phase) vs Clarabel {_s(mid['clarabel']['time'], 3)} s, pyscnn "
         f"{_s(mid['scnn']['time'])} s", "2-core CPU", "`bench_fast_solver.json`"],
        ["`paper_repro/bench_fast_solver.py`", "the largest size, f32 first phase",
         f"(100000, 50, 500): {_s(big_cpu['time'], 3)} s on CPU, {_s(big_gpu['time'])} s on an H200",
         "2-core CPU; H200", "`bench_fast_solver.json`, `bench_fast_solver_cuda_h200.json`"],
        ["`paper_repro/bench_step.py`", "images/s: PHT `sgd` vs a ReLU loop; `alt` step cost",
         f"`sgd` at {min(ratios):.2f}–{max(ratios):.2f}× the ReLU loop; an `alt` step costs "
         f"{min(alt):.2f}–{max(alt):.2f}× an `sgd` step", "H200", "`bench_step_h200.json`"],
    ]
    return _table(["script", "what", "headline", "machine", "source (`paper_repro/results/`)"], rows)


def block_trainer() -> str:
    d = _load("paper_repro/results/train_fmnist_resnet20_h200.json")
    rows = []
    for r in d["rows"]:
        rows.append([f"`{r['method']}`", r["setting"], f"{r['final_val_acc']:.4f}",
                     str(r["epochs_to_target"]) if r["epochs_to_target"] else "not reached",
                     _s(r["seconds_to_target"], 3) if r["seconds_to_target"] else "—",
                     _s(r["train_seconds"], 3), _int(r["images_per_s"])])
    return _table(["method", "setting", "final val acc", f"epochs to {d['setting']['target_acc']:.0%}",
                   f"seconds to {d['setting']['target_acc']:.0%}", "train s", "images/s"],
                  rows, "llrrrrr")


def block_step() -> str:
    d = _load("paper_repro/results/bench_step_h200.json")
    rows = [[r["arch"], r["mode"], _int(r["relu_plain"]), _int(r["sgd"]),
             f"{r['sgd_over_relu']:.3f} {'met' if r['sgd_over_relu'] >= 0.9 else '**missed**'}",
             _int(r["alt"]),
             f"{r['alt_over_sgd_cost']:.3f} {'met' if r['alt_over_sgd_cost'] <= 1.4 else '**missed**'}",
             f"{r['alt_inner_over_sgd_cost']:.3f}"] for r in d["rows"]]
    return _table(["arch", "mode", "relu-plain img/s", "sgd img/s", "sgd / relu-plain (target ≥ 0.9)",
                   "alt img/s", "alt / sgd step cost (target ≤ 1.4)", "alt-inner / sgd"],
                  rows, "llrrrrrr")


def block_head() -> str:
    d = _load("paper_repro/results/train_digits_exact_head_cpu.json")
    rows = []
    for r in d["rows"]:
        gaps = ", ".join(f"{g:.3g}" for g in r["head_gap"]) if r["head_gap"] else "—"
        ba = (f"{r['val_acc_before_last_solve']:.3f} / {r['val_acc_after_last_solve']:.3f}"
              if r["val_acc_before_last_solve"] is not None else "—")
        rows.append([f"`{r['method']}`", gaps, ba, f"{r['final_val_acc']:.3f}"])
    return _table(["method", "head gap of the SGD-trained head, epochs 1..6",
                   "val acc before / after the last solve", "final val acc"], rows, "llll")


def block_linearize() -> str:
    rows = []
    for r in _lin_rows():
        conv = (f"{_int(r['largest_conv_nnz'])} non-zeros, {r['largest_conv_MB']:.1f} MB, "
                f"{r['bytes_per_nnz']:.1f} B/nnz" if "largest_conv_nnz" in r else "—")
        shape = "×".join(map(str, r["A_shape"])) if r.get("A_shape") else "—"
        rows.append([r["model"] + ", " + "×".join(map(str, r.get("input", []))), shape,
                     _s(r.get("linearize_s"), 3), _s(r.get("jacrev_s"), 3),
                     _s(r.get("ratio_linearize_over_jacrev"), 3), _e(r.get("rel_error_vs_jacrev")),
                     str(r.get("status", "—")), conv, _s(r.get("load_max"))])
    return _table(["model", "A", "linearize (s)", "jacrev (s)", "ratio", "rel. error vs jacrev",
                   "status", "largest conv operator", "1-min load (max)"], rows, "llrrrrllr")


_SOLVER_NAMES = {"fast": "altheory-fast f64", "fast32": "altheory-fast f32→f64", "clarabel": "Clarabel",
                 "scs": "SCS", "scnn": "pyscnn R-FISTA"}


def _fast_table(rel: str, gap_to_best: bool) -> str:
    rows = []
    for r in _fast(rel):
        if "solver" not in r or "n" not in r:
            continue  # summary rows of other kinds
        size = f"{r['n']}x{r['d']}x{r['p']}"
        if r.get("lam_name"):
            size += f", {r.get('loss', 'squared')}, λ = {r['lam_name'].replace('lam_max', 'λ_max')}"
        name = _SOLVER_NAMES.get(r["solver"], r["solver"])
        if r.get("status") == "skipped" or r.get("time") is None:
            why = r.get("note") or r.get("reason") or "skipped"
            rows.append([size, name, f"skipped: {why}", "—"] + (["—"] if gap_to_best else []) + ["—", "—"])
            continue
        row = [size, name, str(r["status"]), _s(r["time"], 3)]
        if gap_to_best:
            row.append(_e(r.get("rel_gap_to_best")))
        row.append(_e(r.get("certified_rel_gap")) if r.get("certified_rel_gap") is not None else "—")
        row.append(_s(r.get("load1")))
        rows.append(row)
    head = ["instance", "solver", "status", "time (s)"] + (["rel. gap to best"] if gap_to_best else [])
    return _table(head + ["certified rel. gap", "1-min load"], rows,
                  "lllr" + ("r" if gap_to_best else "") + "rr")


def block_fast_cpu() -> str:
    return _fast_table("paper_repro/results/bench_fast_solver.json", True)


_GOALS = {  # summary key of bench_fast_solver.json -> (goal in words, bound, how it is met)
    "fast_over_scnn (<= 0.5, squared)": ("time / pyscnn's, squared loss", 0.5, "le"),
    "fast_over_clarabel (<= 0.3, logistic)": ("time / Clarabel's, logistic loss", 0.3, "le"),
    "refined_over_true (<= 10)": ("certified gap / true suboptimality of another solver's point",
                                  10.0, "le"),
    "rule_over_best (<= 1.5)": ("thread rule's time / the better of 1 and all threads", 1.5, "le"),
    "large certified seconds (< 30)": ("seconds to certify (100000, 50, 500)", 30.0, "lt"),
}


def block_fast_goals() -> str:
    """Every goal row of the fast-solver benchmark, its value and whether the bound is met."""
    d = _load("paper_repro/results/bench_fast_solver.json")["summary"]
    rows = []
    for key, (what, bound, how) in _GOALS.items():
        for r in d.get(key, []):
            size = [f"{r['n']}x{r['d']}x{r['p']}"] if "p" in r else []
            cond = ", ".join(size + [str(r[k]) for k in ("loss", "lam_name", "solver", "condition")
                                     if r.get(k) is not None]
                             + ([f"seed {r['seed']}"] if "seed" in r else [])
                             ).replace("lam_max", "λ_max")
            ok = r["value"] <= bound if how == "le" else r["value"] < bound
            rows.append([what, cond, f"{'≤' if how == 'le' else '<'} {bound:g}", _s(r["value"], 3),
                         "met" if ok else "**missed**", _s(r["load1"])])
    for r in d.get("pe fast_over_cvxpy (<= 1 quick sizes, <= 0.1 largest)", []):
        bound = r.get("bound")
        largest = " (the largest cvxpy solves in 60 s)" if bound == 0.1 else ""
        cvx = f", cvxpy {r['cvxpy_time']:.3g} s" if "cvxpy_time" in r else ""
        rows.append(["Pilanci–Ergen time / cvxpy's",
                     f"n = {r['n']}, d = {r['d']}, {r['P']} patterns{largest}, λ = {r['lam']:g}{cvx}",
                     "—" if bound is None else f"≤ {bound:g}", _s(r["value"], 3),
                     "(no goal)" if bound is None else
                     ("met" if r["value"] <= bound else "**missed**"), _s(r["load1"])])
    for r in d.get("wider fast_over_scnn (reported, no goal)", []):
        excess = r.get("scnn_excess")
        rows.append(["time / pyscnn's, beyond the goals' instance",
                     f"{r['n']}x{r['d']}x{r['p']}, squared, λ = {r['lam']:g}"
                     + (f", pyscnn {excess:.1e} above the optimum" if excess is not None else ""),
                     "—", _s(r["value"], 3), "(no goal)", _s(r["load1"])])
    return _table(["goal", "instance", "bound", "measured", "verdict", "1-min load"], rows, "lllrlr")


def block_fast_gpu() -> str:
    return _fast_table("paper_repro/results/bench_fast_solver_cuda_h200.json", False)


def block_solvers() -> str:
    rows = [[f"{r['n']}x{r['d']}x{r['p']}", _s(r["clarabel_seconds"], 3), r["clarabel_status"],
             _s(r["scs_seconds"], 3), r["scs_status"], _e(r["rel_diff"])]
            for r in _load("paper_repro/results/bench_solvers.json")["rows"]]
    return _table(["n x d x p", "Clarabel (s)", "status", "SCS (s)", "status", "rel. difference"],
                  rows, "lrlrlr")


def block_mutation() -> str:
    """paper_repro/mutation_tool.py: mutmut's mutants per module, first run and now."""
    data = _load("paper_repro/results/mutation_tool.json")
    rows = []
    for mod, r in data["modules"].items():
        f, s = r["score_first_run"], r["score"]
        rows.append([f"`{mod}`", str(r["generated_in_scope"]),
                     str(r["generated_in_scope"] - r["not_checked"]),
                     str(r["killed"] + r["timeout"]), str(r["survived"]), str(r["equivalent"]),
                     str(r["open"]), str(r["untriaged"]), str(r["no_tests"]),
                     "—" if f is None else f"{f:.3f}", "—" if s is None else f"{s:.3f}"])
    return _table(["module", "mutants", "checked", "killed", "survived", "equivalent", "open",
                   "untriaged", "no tests", "score, first run", "score now"], rows, "lrrrrrrrrrr")


BLOCKS = {
    "mutation": block_mutation,
    "claims": block_claims, "claim-notes": block_claim_notes, "alternation": block_alternation,
    "timing": block_timing, "threads": block_threads, "benchmarks": block_benchmarks,
    "trainer": block_trainer, "step": block_step, "head": block_head, "linearize": block_linearize,
    "fast-cpu": block_fast_cpu, "fast-goals": block_fast_goals, "fast-gpu": block_fast_gpu,
    "solvers": block_solvers,
}

# a block: its opening line, its body (whole lines, possibly none), its closing line; a body never
# holds another block's opening line, so an unclosed block cannot swallow the next one
_BLOCK = re.compile(r"(<!-- numbers:(?P<name>[\w-]+)(?P<src>[^>\n]*)-->\n)"
                    r"(?P<body>(?:(?!<!-- numbers:)[^\n]*\n)*?)(<!-- /numbers -->)")


def render(text: str) -> str:
    """``text`` with every numbers block regenerated from its files."""
    def sub(m):
        name = m["name"]
        if name not in BLOCKS:
            raise KeyError(f"unknown numbers block {name!r}; known: {sorted(BLOCKS)}")
        return m.group(1) + BLOCKS[name]() + "\n" + m.group(5)
    return _BLOCK.sub(sub, text)


# measured-looking numbers the prose outside the blocks must not quote
_MEASURED = [
    re.compile(r"\d(?:\.\d+)?\s?×"),                              # ratios: 2.3×
    re.compile(r"\d(?:\.\d+)?\s?%"),                              # rates: 40%
    re.compile(r"~\s?\d"),                                        # "~3 min"
    re.compile(r"\b\d+(?:\.\d+)?\s?(?:s|ms|min|minutes|seconds|images/s|img/s)\b"),  # durations, speeds
    re.compile(r"(?<![-\w.])\d+\s?/\s?\d+\b"),                       # counts: 7/32 (not ResNet-20/56)
    re.compile(r"\b\d+ (?:pass|fail|not converged|runs)\b"),
]


def _prose(text: str) -> str:
    text = _BLOCK.sub("", text)
    text = re.sub(r"```.*?```", "", text, flags=re.S)   # commands and examples
    text = re.sub(r"`[^`\n]*`", "", text)                # inline code: options, paths
    return text


def measured_numbers_in_prose(text: str) -> list[str]:
    out = []
    for ln, line in enumerate(_prose(text).splitlines(), 1):
        for pat in _MEASURED:
            for m in pat.finditer(line):
                out.append(f"{m.group(0)!r} in: {line.strip()[:100]}")
    return out


# --------------------------------------------------------------------------- tests

def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2
    ns: dict = {}
    for code in blocks:  # later blocks may use names of earlier ones
        exec(compile(code, str(README), "exec"), ns)
    assert ns["r"].status == "optimal" and ns["r"].solver == "altheory-fast"
    assert ns["ref"].status == "optimal"
    assert abs(ns["r"].objective - ns["ref"].objective) <= 1e-6 * ns["ref"].objective


def test_numbers_blocks_match_their_files():
    for path in (README, REPRO):
        text = path.read_text(encoding="utf-8")
        names = [m["name"] for m in _BLOCK.finditer(text)]
        assert names, f"{path.name} has no numbers block"
        opened = re.findall(r"<!-- numbers:([\w-]+)", text)
        assert opened == names, f"{path.name}: unclosed or malformed numbers blocks: {opened} vs {names}"
        for m in _BLOCK.finditer(text):
            want = BLOCKS[m["name"]]() + "\n"
            assert m["body"] == want, (
                f"{path.relative_to(ROOT)}: block {m['name']!r} differs from its source files; "
                f"run `python tests/test_readme.py --update`.\n--- in the file:\n{m['body']}\n"
                f"--- from the files:\n{want}")


# written by the suite's own timing run (`make test-time`) after pytest ends: the block leaves its
# row out while the file does not exist yet
OPTIONAL_SOURCES = {"paper_repro/results/test_suite_time.json"}


def test_every_block_names_its_source():
    for path in (README, REPRO):
        for m in _BLOCK.finditer(path.read_text(encoding="utf-8")):
            assert "source:" in m["src"], f"{path.name}: block {m['name']} does not name its source"
            for f in re.findall(r"[\w./*-]+\.(?:json|csv)", m["src"]):
                assert f in OPTIONAL_SOURCES or list(ROOT.glob(f)), (
                    f"{path.name}: block {m['name']} names a missing file {f}")


def test_prose_quotes_no_measured_number():
    for path in (README, REPRO):
        found = measured_numbers_in_prose(path.read_text(encoding="utf-8"))
        assert not found, (f"{path.relative_to(ROOT)} quotes measured numbers outside its numbers "
                           "blocks (put them in a block generated from a results file):\n"
                           + "\n".join(found))


def test_the_prose_check_can_fail():
    bad = "The suite takes ~3 min; linearize is 2.3× jacrev; 193 pass; 7/32 runs; 40% flip.\n"
    assert len(measured_numbers_in_prose(bad)) >= 5
    ok = "<!-- numbers:timing source: x.json -->\n| 47 s |\n<!-- /numbers -->\n`--tau=0.1`\n"
    assert measured_numbers_in_prose(ok) == []


def test_an_empty_block_does_not_swallow_the_next():
    text = ("<!-- numbers:a src -->\n<!-- /numbers -->\nprose 1\n"
            "<!-- numbers:b src -->\nold\n<!-- /numbers -->\n")
    ms = list(_BLOCK.finditer(text))
    assert [m["name"] for m in ms] == ["a", "b"] and ms[0]["body"] == "" and ms[1]["body"] == "old\n"


def test_readme_speaks_of_the_software_only():
    for path in (README, REPRO):
        text = path.read_text(encoding="utf-8").lower()
        for word in ("session", "helper", "engineer", "agent", "issue #", "the issue"):
            assert word not in text, f"{path.name} mentions {word!r}"


if __name__ == "__main__":
    if sys.argv[1:] == ["--update"]:
        for p in (README, REPRO):
            old = p.read_text(encoding="utf-8")
            new = render(old)
            if new != old:
                p.write_text(new, encoding="utf-8")
                print(f"updated {p.relative_to(ROOT)}")
    else:
        print(__doc__)
