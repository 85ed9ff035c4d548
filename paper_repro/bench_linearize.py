r"""Benchmark: time and peak memory of the explicit operator A_S against autograd (claim C1).

For each model, in the same run and with the same settings, on one float64 3x32x32 input:

* ``altheory.linearize(model, S, 0)`` — :math:`A_S, c_S` composed layer by layer from the weights
  and the masks of the support (``Linearization.compose(method="adjoint")``; the support ``S``
  is computed once beforehand, outside the timing);
* ``torch.func.jacrev(lambda v: model(v[None])[0])(x[0])`` — the autograd Jacobian (baseline).

Models: the PHT ResNet-20 below (CIFAR layout, 16-32-64 channels), torchvision resnet18 with 10
and with 1000 classes, mobilenet_v2 and densenet121 (all with ``replace_relu(tau=0.01)``, its
ReLU6s too for mobilenet_v2, eval mode, float64, random weights with a fixed seed; the batch-norm
statistics random for the ResNets, those of one random batch for mobilenet_v2 and densenet121,
which are constant networks otherwise). Each row records ``A_fro`` (the norm of A) and the mean
kept fraction of the activations, so a trivial operator shows. A model that altheory cannot
linearize is recorded as ``"refused: <the error message>"`` and not timed.

Method
------
Threads: every measurement runs in a fresh subprocess started with ``OMP_NUM_THREADS``,
``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` set to ``--threads`` (default 1) and
``torch.set_num_threads(--threads)``, the same for linearize and jacrev.

Time: one subprocess per model builds the model, the input and the support, makes one warm-up
call of each method, then alternates ``--repeats`` timed calls of linearize and jacrev
(``time.perf_counter``); min and median are reported. The process CPU time of each call
(``time.process_time``) is stored too (``cpu_s``, ``cpu_ratio_min``): with one thread it is
less sensitive to other processes than the wall time, not immune (shared caches, memory
bandwidth); the speed claim is the wall-time ratio of a quiet run.

Peak memory: one subprocess per (model, method). After building the model, the input and the
support and one warm-up call, it frees what it can (``gc.collect()``, then glibc's
``malloc_trim(0)``, so that pages the warm-up freed are handed back to the kernel and the call
has to fault its memory in again instead of silently reusing them), resets the kernel's
peak-RSS counter (``echo 5 > /proc/self/clear_refs``), reads the resident set size, makes one
call, and reads the peak (``VmHWM`` in ``/proc/self/status``): ``peak_rss_MB`` is the peak minus
the resident size before the call, i.e. the extra memory the call needed at its worst, counting
numpy, scipy and torch CPU allocations alike (the result it returns included). Where the kernel
does not allow the reset, ``ru_maxrss`` deltas are used and the row says ``rss_method:
"maxrss"`` (then a call whose peak stays below the setup's peak reads as 0: a lower bound).
The same subprocess then runs the call again under ``tracemalloc``: ``peak_traced_MB`` is the
peak of Python/numpy/scipy allocations (torch's allocator is not traced, so this is only the
numpy side; it is 0 for jacrev up to the returned array).

Load: the machine's 1-minute load average (``os.getloadavg()``) is printed beside every number
and stored with it (before and after each measurement). A measurement whose load exceeded
``--quiet-load`` (default 1.5; the benchmark itself adds about 1) is labelled ``"loaded"``:
its times and ratios are not evidence of speed.

The lead's quiet run (about 2-4 minutes on 2 idle cores)::

    .venv/bin/python paper_repro/bench_linearize.py

writes ``paper_repro/results/bench_linearize.json`` (one run, replaced; ``--out`` to write
elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = ("PHT ResNet-20", "PHT resnet18 (10 classes)", "PHT resnet18 (1000 classes)",
          "PHT mobilenet_v2 (10 classes)", "PHT densenet121 (10 classes)")
INPUT = (3, 32, 32)


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------

def _resnet20(num_classes: int = 10):
    import torch.nn as nn

    import altheory as at

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.act1 = at.PHT(tau=0.05)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                          if stride != 1 or cin != cout else nn.Identity())
            self.act2 = at.PHT(tau=0.05)

        def forward(self, x):
            return self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))) + self.short(x))

    layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), at.PHT(tau=0.05)]
    cin = 16
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        for b in range(3):
            layers.append(BasicBlock(cin, cout, stride if b == 0 else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes)]
    return nn.Sequential(*layers)


def build(name: str):
    """The model ``name`` of :data:`MODELS`, float64, eval mode, seeded random weights."""
    import torch
    import torchvision.models as tvm

    import altheory as at

    torch.manual_seed(0)
    if name == "PHT ResNet-20":
        model = _resnet20()
    elif name == "PHT resnet18 (10 classes)":
        model = at.replace_relu(tvm.resnet18(num_classes=10), tau=0.01)
    elif name == "PHT resnet18 (1000 classes)":
        model = at.replace_relu(tvm.resnet18(num_classes=1000), tau=0.01)
    elif name == "PHT mobilenet_v2 (10 classes)":
        model = at.replace_relu(tvm.mobilenet_v2(num_classes=10), tau=0.01, relu6=True)
    elif name == "PHT densenet121 (10 classes)":
        model = at.replace_relu(tvm.densenet121(num_classes=10), tau=0.01)
    else:
        raise ValueError(f"model must be one of {MODELS}; got {name!r}.")
    model = model.double()
    if name in ("PHT mobilenet_v2 (10 classes)", "PHT densenet121 (10 classes)"):
        # at torchvision's initialisation these deep networks are constant under PHT(0.01) (their
        # activations shrink block by block until every entry is cut: A = J = 0, nothing to
        # time): batch-norm statistics of one random batch give unit-scale pre-activations
        from altheory.nets.architectures import calibrate_batchnorm

        xb = torch.randn((8, *INPUT), dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        return calibrate_batchnorm(model, xb)
    model = model.eval()
    # non-trivial batch-norm statistics, so the BN operators are not identities
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g, dtype=torch.float64))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g, dtype=torch.float64))
    return model


# --------------------------------------------------------------------------------------------
# One measurement (runs in a subprocess)
# --------------------------------------------------------------------------------------------

def _setup(name: str, threads: int):
    import torch

    import altheory as at

    torch.set_num_threads(threads)
    model = build(name)
    x = torch.randn((1, *INPUT), dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    S = at.support(model, x)
    jac = torch.func.jacrev(lambda v: model(v[None])[0])
    calls = {"linearize": lambda: at.linearize(model, S, 0), "jacrev": lambda: jac(x[0]).detach()}
    return model, x, S, calls


def _release_free_memory() -> None:
    """Collect garbage and hand freed heap pages back to the kernel (glibc ``malloc_trim``), so
    that the next call's allocations show up in the resident set instead of reusing pages the
    warm-up call left mapped."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS deltas may then under-count
        pass


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _child_time(name: str, threads: int, repeats: int) -> dict:
    import numpy as np
    import torch

    load0 = os.getloadavg()[0]
    try:
        model, x, S, calls = _setup(name, threads)
        A, c = calls["linearize"]()  # warm-up, and the accuracy check
    except Exception as exc:  # noqa: BLE001 - any refusal is recorded, with its type
        return {"status": f"refused: {type(exc).__name__}: {exc}", "load_before": load0,
                "load_after": os.getloadavg()[0]}
    J = calls["jacrev"]().reshape(A.shape[0], -1).numpy()
    with torch.no_grad():
        y = model(x).reshape(-1).numpy()
    times: dict[str, list[float]] = {"linearize": [], "jacrev": []}
    cpu: dict[str, list[float]] = {"linearize": [], "jacrev": []}
    for _ in range(repeats):
        for key in ("linearize", "jacrev"):
            t0, c0 = time.perf_counter(), time.process_time()
            calls[key]()
            times[key].append(time.perf_counter() - t0)
            cpu[key].append(time.process_time() - c0)
    return {"status": "ok", "A_shape": list(A.shape), "times_s": times, "cpu_s": cpu,
            "rel_error_vs_jacrev": float(np.linalg.norm(A - J) / np.linalg.norm(J)),
            "A_fro": float(np.linalg.norm(A)),
            "support_kept_fraction": float(np.mean([l.mask().mean() for l in S.layers.values()
                                                    if l.kind == "act"])),
            "rel_error_forward": float(np.linalg.norm(A @ x.reshape(-1).numpy() + c - y) / np.linalg.norm(y)),
            "torch_threads": torch.get_num_threads(), "load_before": load0, "load_after": os.getloadavg()[0]}


def _child_memory(name: str, threads: int, method: str) -> dict:
    import gc
    import resource
    import tracemalloc

    load0 = os.getloadavg()[0]
    try:
        _, _, _, calls = _setup(name, threads)
        calls[method]()  # warm-up
    except Exception as exc:  # noqa: BLE001
        return {"status": f"refused: {type(exc).__name__}: {exc}", "load_before": load0,
                "load_after": os.getloadavg()[0]}
    _release_free_memory()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        rss_method = "VmHWM after clear_refs"
    except OSError:
        rss_method = "maxrss"
    before = _status_kb("VmRSS")
    max_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = calls[method]()
    peak = _status_kb("VmHWM") if rss_method != "maxrss" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del out
    _release_free_memory()
    tracemalloc.start()
    out = calls[method]()
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"status": "ok", "peak_rss_MB": max(0, peak - before) / 1024, "rss_before_MB": before / 1024,
            "rss_method": rss_method, "maxrss_before_MB": max_before / 1024,
            "peak_traced_MB": traced / 2**20, "load_before": load0, "load_after": os.getloadavg()[0]}


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------

def _run_child(args: list[str], threads: int, timeout: float) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *args, "--threads", str(threads)]
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"failed: timed out after {timeout:.0f} s"}
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        return {"status": f"failed: exit {r.returncode}: {r.stderr.strip().splitlines()[-1:] }"}
    return json.loads(lines[-1])


def _stats(ts: list[float]) -> dict:
    return {"min_s": min(ts), "median_s": statistics.median(ts), "all_s": ts}


def measure(name: str, threads: int, repeats: int, quiet_load: float, timeout: float) -> dict:
    row: dict = {"model": name, "input": list(INPUT), "dtype": "float64"}
    t = _run_child(["time", name, "--repeats", str(repeats)], threads, timeout)
    row["timing"] = t
    if t["status"] != "ok":
        row["status"] = t["status"]
        return row
    row["status"] = "ok"
    row["A_shape"] = t["A_shape"]
    row["rel_error_vs_jacrev"] = t["rel_error_vs_jacrev"]
    row["rel_error_forward"] = t["rel_error_forward"]
    row["A_fro"], row["support_kept_fraction"] = t["A_fro"], t["support_kept_fraction"]
    lin, jac = _stats(t["times_s"]["linearize"]), _stats(t["times_s"]["jacrev"])
    row["linearize"], row["jacrev"] = lin, jac
    row["time_ratio_min"] = lin["min_s"] / jac["min_s"]
    row["time_ratio_median"] = lin["median_s"] / jac["median_s"]
    row["cpu_ratio_min"] = min(t["cpu_s"]["linearize"]) / min(t["cpu_s"]["jacrev"])
    # the keys of the earlier format (best of the repeats), read by the README's tables
    row["linearize_s"], row["jacrev_s"] = lin["min_s"], jac["min_s"]
    row["ratio_linearize_over_jacrev"] = row["time_ratio_min"]
    loads = [t["load_before"], t["load_after"]]
    for method in ("linearize", "jacrev"):
        m = _run_child(["memory", name, "--method", method], threads, timeout)
        row[f"memory_{method}"] = m
        loads += [m.get("load_before", 0.0), m.get("load_after", 0.0)]
    ml, mj = row["memory_linearize"], row["memory_jacrev"]
    if ml["status"] == "ok" and mj["status"] == "ok" and mj["peak_rss_MB"] > 0:
        row["memory_ratio"] = ml["peak_rss_MB"] / mj["peak_rss_MB"]
    row["load_max"] = max(loads)
    row["label"] = "loaded" if row["load_max"] > quiet_load else "quiet"
    return row


def _print_row(row: dict) -> None:
    if row["status"] != "ok":
        print(f"{row['model']:<30} {row['status'][:150]}  [load {row['timing'].get('load_after', float('nan')):.2f}]",
              flush=True)
        return
    ml, mj = row["memory_linearize"], row["memory_jacrev"]
    t = row["timing"]
    print(f"{row['model']:<30} A {row['A_shape'][0]}x{row['A_shape'][1]}  "
          f"linearize min {row['linearize']['min_s']:.3f} s / median {row['linearize']['median_s']:.3f} s, "
          f"jacrev min {row['jacrev']['min_s']:.3f} s / median {row['jacrev']['median_s']:.3f} s, "
          f"ratio {row['time_ratio_min']:.2f} (min) {row['time_ratio_median']:.2f} (median), "
          f"CPU-time ratio {row['cpu_ratio_min']:.2f} (min) "
          f"[load {t['load_before']:.2f} -> {t['load_after']:.2f}]", flush=True)
    print(f"{'':<30} peak RSS linearize {ml.get('peak_rss_MB', float('nan')):.1f} MB "
          f"[load {ml.get('load_after', float('nan')):.2f}], jacrev {mj.get('peak_rss_MB', float('nan')):.1f} MB "
          f"[load {mj.get('load_after', float('nan')):.2f}], ratio {row.get('memory_ratio', float('nan')):.2f}; "
          f"traced (numpy) linearize {ml.get('peak_traced_MB', float('nan')):.1f} MB; "
          f"rel. error vs jacrev {row['rel_error_vs_jacrev']:.1e}, forward {row['rel_error_forward']:.1e}; "
          f"{row['label']} (max load {row['load_max']:.2f})", flush=True)


def _git_state() -> dict:
    """The commit measured, and the package files that differ from it (uncommitted work)."""
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=HERE.parent, capture_output=True, text=True,
                                  timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "HEAD").strip() or None,
            "uncommitted": [ln[3:] for ln in git("status", "--porcelain", "--", "altheory").splitlines()]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="timed calls per method (after one warm-up)")
    p.add_argument("--threads", type=int, default=1, help="torch/OpenMP/BLAS threads, both methods")
    p.add_argument("--models", nargs="*", default=list(MODELS), help=f"subset of {list(MODELS)}")
    p.add_argument("--quiet-load", type=float, default=1.5,
                   help="1-minute load average above which a measurement is labelled 'loaded'")
    p.add_argument("--timeout", type=float, default=600, help="seconds per subprocess")
    p.add_argument("--out", default=str(HERE / "results" / "bench_linearize.json"))
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--method", default="linearize", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats < 1 or args.threads < 1:
        p.error(f"--repeats and --threads must be >= 1; got {args.repeats} and {args.threads}.")
    if args.child:
        kind, name = args.child
        res = (_child_time(name, args.threads, args.repeats) if kind == "time"
               else _child_memory(name, args.threads, args.method))
        print(json.dumps(res))
        return 0
    bad = [m for m in args.models if m not in MODELS]
    if bad:
        p.error(f"unknown model(s) {bad}; choose from {list(MODELS)}.")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    import torch

    t_start = time.time()
    load_start = list(os.getloadavg())
    print(f"bench_linearize: {args.threads} thread(s), {args.repeats} repeats, load at start "
          f"{load_start}", flush=True)
    rows = []
    for name in args.models:
        row = measure(name, args.threads, args.repeats, args.quiet_load, args.timeout)
        _print_row(row)
        rows.append(row)
    ok = [r for r in rows if r["status"] == "ok"]
    result = {
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")},
        "threads": args.threads, "repeats": args.repeats, "quiet_load": args.quiet_load,
        "load_at_start": load_start,
        "label": ("loaded" if any(r["label"] == "loaded" for r in ok) else "quiet") if ok else "no data",
        "wall_s": time.time() - t_start,
        "rows": rows,
    }
    result["load_at_end"] = list(os.getloadavg())
    result["git"] = _git_state()
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out} ({result['label']}, {result['wall_s']:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
