r"""Benchmark: time and memory to build the explicit linear operator A_S (claim C1).

Models: a PHT ResNet-20 (CIFAR layout, 3x32x32 input, 16-32-64 channels, eval-mode batch norm)
and a PHT MLP 784-1024-1024-10. For each, in the same run and process: altheory.linearize
(explicit sparse operators composed in reverse mode), the largest single sparse conv operator
(nnz, bytes — memory proportional to its non-zeros), and the autograd Jacobian of the same
model with torch.func.jacrev as the baseline; the ratio is printed. Results are appended to
paper_repro/results/bench_linearize.json.

    python paper_repro/bench_linearize.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
from torch import nn

import altheory as at
from altheory.nets.operators import Linearization


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


def resnet20(num_classes: int = 10) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), at.PHT(tau=0.05)]
    cin = 16
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        for b in range(3):
            layers.append(BasicBlock(cin, cout, stride if b == 0 else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes)]
    return nn.Sequential(*layers)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(784, 1024), at.PHT(tau=0.05), nn.Linear(1024, 1024), at.PHT(tau=0.05),
                         nn.Linear(1024, 10))


def time_it(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench(name: str, model: nn.Module, x: torch.Tensor, repeats: int) -> dict:
    model = model.double().eval()
    S = at.support(model, x)
    t_lin = time_it(lambda: at.linearize(model, S, 0), repeats)
    A, c = at.linearize(model, S, 0)
    jac = torch.func.jacrev(lambda v: model(v[None])[0])
    t_jac = time_it(lambda: jac(x[0]), repeats)
    J = jac(x[0]).reshape(A.shape[0], -1).detach().numpy()
    rel = float(np.linalg.norm(A - J) / np.linalg.norm(J))
    # largest single operator and peak Python-side memory of one linearize call
    lin = Linearization(model, S, 0)
    largest = max(((n.name, lin.operator(n.name)[0][0][1]) for n in lin.graph.nodes if n.kind == "conv"),
                  key=lambda t: t[1].nnz, default=(None, None))
    tracemalloc.start()
    at.linearize(model, S, 0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out = {"model": name, "input": list(x.shape[1:]), "A_shape": list(A.shape),
           "linearize_s": t_lin, "jacrev_s": t_jac, "ratio_linearize_over_jacrev": t_lin / t_jac,
           "rel_error_vs_jacrev": rel, "peak_traced_MB": peak / 2**20}
    if largest[1] is not None:
        M = largest[1]
        out.update(largest_conv=largest[0], largest_conv_nnz=int(M.nnz),
                   largest_conv_MB=(M.data.nbytes + M.indices.nbytes + M.indptr.nbytes) / 2**20,
                   bytes_per_nnz=(M.data.nbytes + M.indices.nbytes + M.indptr.nbytes) / M.nnz)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="best-of repeats per timing")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_linearize.json"))
    args = p.parse_args(argv)
    torch.manual_seed(0)
    rows = [bench("PHT ResNet-20", resnet20(), torch.randn(1, 3, 32, 32, dtype=torch.float64), args.repeats),
            bench("PHT MLP 784-1024-1024-10", mlp(), torch.randn(1, 784, dtype=torch.float64), args.repeats)]
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
    from rich.table import Table

    t = Table(title=f"explicit operator vs autograd Jacobian ({machine})")
    for col in ("model", "A", "linearize (s)", "jacrev (s)", "ratio", "rel. error", "largest conv nnz",
                "MB", "B/nnz", "peak MB"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["model"], "x".join(map(str, r["A_shape"])), f"{r['linearize_s']:.3f}", f"{r['jacrev_s']:.3f}",
                  f"{r['ratio_linearize_over_jacrev']:.2f}", f"{r['rel_error_vs_jacrev']:.1e}",
                  str(r.get("largest_conv_nnz", "—")), f"{r.get('largest_conv_MB', 0):.1f}",
                  f"{r.get('bytes_per_nnz', 0):.1f}", f"{r['peak_traced_MB']:.0f}")
    from altheory.claims.report import make_console

    make_console().print(t)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    history = json.loads(path.read_text()) if path.exists() else []
    history.append({"time": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine, "rows": rows})
    path.write_text(json.dumps(history, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
