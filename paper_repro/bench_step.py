r"""Images per second of one training step: plain ReLU loop vs the trainer's sgd / alt / alt-inner.

For each architecture and each of eager / compiled, four loops run on the same synthetic batch
(data loading excluded), timed with CUDA events after warm-up steps (``perf_counter`` on CPU):

* ``relu-plain``: a plain torchvision training loop of the ReLU model (forward, cross-entropy,
  backward, SGD step);
* ``sgd``: the trainer's step (:class:`altheory.train.loop.Stepper`) on the PHT model (tau = 0);
* ``alt``: the same with the support from a gate copy (one extra no-grad forward per step);
* ``alt-folded``: ``alt`` with ``gate_bn="folded"`` (eval-mode support, batch norm folded into
  the gate's convolutions: no normalisation kernels in the gate forward);
* ``alt-inner``: ``--inner-steps`` steps per batch with one gate forward per batch.

Targets: ``sgd`` >= 0.9x the images/s of ``relu-plain``; the cost of an ``alt`` step
<= 1.4x that of an ``sgd`` step. The table prints both ratios per configuration.

GPU: ``python paper_repro/bench_step.py`` (ResNet-18 and -50, 224 px, batch 128, bf16 autocast,
channels_last, eager and compiled). CPU smoke test:
``python paper_repro/bench_step.py --device cpu --arch resnet18 --size 64 --batch 8 --steps 3``.
Measured numbers are in ``paper_repro/README.md`` with the hardware they came from.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def _bootstrap():
    """Import the trainer; without scipy (a GPU box with torch only), skip altheory/__init__."""
    try:
        import altheory.train.loop  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name not in ("scipy", "scipy.sparse", "rich"):
            raise
        import types

        for k in [k for k in sys.modules if k == "altheory" or k.startswith("altheory.")]:
            del sys.modules[k]
        pkg = types.ModuleType("altheory")
        pkg.__path__ = [str(Path(__file__).resolve().parents[1] / "altheory")]
        sys.modules["altheory"] = pkg


_bootstrap()
from altheory.train.loop import Stepper  # noqa: E402
from altheory.train.methods import Gating, wrap_activations  # noqa: E402
from altheory.train.models import build_model  # noqa: E402


class _Sched:
    def step(self):
        pass


def _timer(device):
    if device.type == "cuda":
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def start():
            s.record()

        def stop():
            e.record()
            e.synchronize()
            return s.elapsed_time(e) / 1000.0
        return start, stop
    box = {}

    def start():
        box["t"] = time.perf_counter()

    def stop():
        return time.perf_counter() - box["t"]
    return start, stop


def bench_one(loop: str, arch: str, args, device, compiled: bool) -> dict:
    torch.manual_seed(0)
    num_classes = 1000 if args.size > 64 else 10
    activation = "relu" if loop == "relu-plain" else "pht"
    model = build_model(arch, num_classes=num_classes, image_size=args.size, activation=activation, tau=0.0)
    if loop in ("alt", "alt-folded", "alt-inner"):
        wrap_activations(model)
    model = model.to(device)
    cl = device.type == "cuda"
    if cl:
        model = model.to(memory_format=torch.channels_last)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (args.batch,), device=device)
    amp = ((lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda"
           else contextlib.nullcontext)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True, weight_decay=5e-5)
    fwd = torch.compile(model) if compiled else model
    if loop == "relu-plain":
        def step(s):
            with amp():
                loss = F.cross_entropy(fwd(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    else:
        method = {"sgd": "sgd", "alt": "alt", "alt-folded": "alt", "alt-inner": "alt-inner"}[loop]
        gating = (Gating(model, "folded" if loop == "alt-folded" else "batch")
                  if method != "sgd" else None)
        if gating is not None and compiled:
            gating.compile()
        st = Stepper(model, fwd, opt, _Sched(), method=method, gating=gating,
                     alt_every=10 ** 9, inner_steps=args.inner_steps, amp=amp, track_flips=False)
        batches = itertools.repeat((x, y))

        def step(s):
            st.step(s, batches)
    t_compile = time.perf_counter()
    for s in range(args.warmup):
        step(s)
    if device.type == "cuda":
        torch.cuda.synchronize()
    warm_s = time.perf_counter() - t_compile
    start, stop = _timer(device)
    start()
    for s in range(args.warmup, args.warmup + args.steps):
        step(s)
    sec = stop()
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else float("nan")
    del model, opt, fwd
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    return {"arch": arch, "loop": loop, "compiled": compiled, "size": args.size, "batch": args.batch,
            "steps": args.steps, "seconds": sec, "images_per_s": args.steps * args.batch / sec,
            "ms_per_step": 1000 * sec / args.steps, "warmup_seconds": warm_s, "peak_gib": peak}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--arch", default="resnet18,resnet50", help="comma-separated: resnet18, resnet50, resnet20, ...")
    p.add_argument("--size", type=int, default=224, help="image side in pixels")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="timed steps per loop")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    p.add_argument("--inner-steps", type=int, default=4, help="alt-inner: steps per batch")
    p.add_argument("--mode", default="both", choices=("eager", "compiled", "both"))
    p.add_argument("--loops", default="relu-plain,sgd,alt,alt-folded,alt-inner")
    p.add_argument("--json", default="", help="write the rows here")
    args = p.parse_args(argv)
    dev = torch.device("cuda" if (args.device == "auto" and torch.cuda.is_available()) else
                       ("cpu" if args.device == "auto" else args.device))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    modes = {"eager": [False], "compiled": [True], "both": [False, True]}[args.mode]
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, size {args.size}, batch {args.batch}, "
          f"{'bf16 autocast, channels_last' if dev.type == 'cuda' else 'float32'}", flush=True)
    rows = []
    hdr = f"{'arch':<9} {'mode':<9} {'loop':<11} {'img/s':>9} {'ms/step':>8} {'warmup s':>8} {'peak GiB':>8}"
    print(hdr, flush=True)
    for arch in args.arch.split(","):
        for compiled in modes:
            group = []
            for loop in args.loops.split(","):
                try:
                    r = bench_one(loop, arch, args, dev, compiled)
                except Exception as exc:  # report and go on: one failing loop must not hide the rest
                    print(f"{arch:<9} {'compiled' if compiled else 'eager':<9} {loop:<11} FAILED: "
                          f"{type(exc).__name__}: {str(exc)[:300]}", flush=True)
                    rows.append({"arch": arch, "loop": loop, "compiled": compiled, "error": repr(exc)[:500]})
                    continue
                rows.append(r)
                group.append(r)
                print(f"{arch:<9} {'compiled' if compiled else 'eager':<9} {loop:<11} "
                      f"{r['images_per_s']:>9.1f} {r['ms_per_step']:>8.2f} {r['warmup_seconds']:>8.1f} "
                      f"{r['peak_gib']:>8.2f}", flush=True)
            by = {r["loop"]: r for r in group}
            if "sgd" in by and "relu-plain" in by:
                ratio = by["sgd"]["images_per_s"] / by["relu-plain"]["images_per_s"]
                print(f"  sgd / relu-plain throughput = {ratio:.3f} (target >= 0.9: "
                      f"{'met' if ratio >= 0.9 else 'MISSED'})", flush=True)
            if "alt" in by and "sgd" in by:
                ratio = by["alt"]["ms_per_step"] / by["sgd"]["ms_per_step"]
                print(f"  alt / sgd step cost = {ratio:.3f} (target <= 1.4: "
                      f"{'met' if ratio <= 1.4 else 'MISSED'})", flush=True)
            if "alt-folded" in by and "sgd" in by:
                ratio = by["alt-folded"]["ms_per_step"] / by["sgd"]["ms_per_step"]
                print(f"  alt (gate_bn=folded) / sgd step cost = {ratio:.3f} (target <= 1.4: "
                      f"{'met' if ratio <= 1.4 else 'MISSED'})", flush=True)
            if "alt-inner" in by and "sgd" in by:
                print(f"  alt-inner / sgd step cost = "
                      f"{by['alt-inner']['ms_per_step'] / by['sgd']['ms_per_step']:.3f}", flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"device": name, "torch": torch.__version__, "rows": rows}, indent=2))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
