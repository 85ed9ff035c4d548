#!/usr/bin/env bash
# One prepared check for a single-GPU machine without internet (needs python with torch,
# torchvision and numpy only; scipy/tqdm/tensorboard/rich are used if present, not required).
#
#   bash paper_repro/gpu_check.sh FASHION_MNIST_DIR [--tiny]
#
# 1. paper_repro/bench_step.py: images/s of relu-plain / sgd / alt / alt-inner steps,
#    ResNet-18 and ResNet-50 at 224 px, batch 128, bf16, channels_last, eager.
# 2. ResNet-20 (PHT, tau=0) on Fashion-MNIST with method sgd, then alt (gate refreshed once an
#    epoch), same seed, data order and budget; accuracy versus epochs and training seconds.
# 3. the benchmark again, torch.compile'd, for the archs in $COMPILE_ARCHS (default resnet18:
#    compiling ResNet-50 for four loops costs minutes); last, so a slow compile cuts nothing.
# Everything printed goes to $OUT/gpu_check.log too (when $OUT is set), with the bench JSON,
# the two summaries and the two per-epoch CSVs. Budget: under 8 minutes on an H100.
# --tiny (or TINY=1): tiny sizes, for a CPU smoke test (tests/test_train.py runs it).
set -euo pipefail
DATA="${1:?usage: gpu_check.sh FASHION_MNIST_DIR [--tiny]}"
TINY="${TINY:-0}"
if [[ "${2:-}" == "--tiny" ]]; then TINY=1; fi
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$HERE"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then  # the first python that imports torch
  for cand in python python3; do
    if command -v "$cand" >/dev/null && "$cand" -c "import torch" 2>/dev/null; then PY="$(command -v "$cand")"; break; fi
  done
fi
[[ -n "$PY" ]] || { echo "gpu_check: no python with torch found; set PYTHON=/path/to/python" >&2; exit 2; }
OUTDIR="${OUT:-$(mktemp -d)}"
mkdir -p "$OUTDIR"
WORK="$(mktemp -d)"
LOG="$OUTDIR/gpu_check.log"

run() {
echo "gpu_check: $(date -u +%FT%TZ) data=$DATA tiny=$TINY out=$OUTDIR"
"$PY" - <<'PY'
import torch, torchvision, numpy, sys
print("python", sys.version.split()[0], "torch", torch.__version__, "torchvision", torchvision.__version__,
      "numpy", numpy.__version__)
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
for m in ("scipy", "tqdm", "tensorboard", "rich"):
    try:
        __import__(m); print(f"  {m}: present")
    except ImportError:
        print(f"  {m}: missing (optional here)")
PY
T0=$SECONDS

echo "== 1. step benchmark =="
if [[ "$TINY" == 1 ]]; then
  "$PY" paper_repro/bench_step.py --arch resnet18 --size 32 --batch 4 --steps 2 --warmup 1 \
      --mode eager --json "$OUTDIR/bench.json" || echo "bench: some loop failed (see above)"
else
  "$PY" paper_repro/bench_step.py --arch resnet18,resnet50 --size 224 --batch 128 --steps 20 \
      --warmup 5 --mode eager --json "$OUTDIR/bench.json" || echo "bench: some loop failed (see above)"
fi
echo "bench done at $((SECONDS - T0)) s"

echo "== 2. ResNet-20 on Fashion-MNIST: sgd vs alt =="
if [[ "$TINY" == 1 ]]; then
  COMMON=(--dataset=fashion-mnist "--data_dir=$DATA" --arch=resnet8 --width=4 --train_subset=64
          --batch_size=16 --epochs=2 --lr=0.05 --crop_pad=2 --target_acc=0.5 --progress=false)
else
  COMMON=(--dataset=fashion-mnist "--data_dir=$DATA" --arch=resnet20 --width=16 --batch_size=512
          --epochs=12 --lr=0.2 --warmup_steps=100 --weight_decay=5e-4 --crop_pad=2
          --target_acc=0.92 --progress=false)
fi
for METHOD in sgd alt; do
  "$PY" - "$METHOD" "$WORK/$METHOD" "${COMMON[@]}" <<'PY'
import sys, types
from pathlib import Path
root = Path.cwd()
try:
    import altheory  # noqa: F401  (needs scipy through altheory.nets.operators)
except ModuleNotFoundError as exc:  # a torch-only machine: load the trainer without the package root
    print(f"note: {exc.name} missing; loading altheory.train without altheory/__init__")
    for k in [k for k in sys.modules if k.startswith("altheory")]:
        del sys.modules[k]
    pkg = types.ModuleType("altheory"); pkg.__path__ = [str(root / "altheory")]
    sys.modules["altheory"] = pkg
from altheory.train.cli import main
method, out, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
rc = main([f"--method={method}", f"--out_dir={out}", "--tensorboard=false", *rest])
raise SystemExit(rc)
PY
  cp "$WORK/$METHOD/summary.json" "$OUTDIR/${METHOD}_summary.json"
  cp "$WORK/$METHOD/metrics.csv" "$OUTDIR/${METHOD}_metrics.csv"
  echo "$METHOD done at $((SECONDS - T0)) s"
done

echo "== accuracy versus epochs and seconds =="
"$PY" - "$OUTDIR" <<'PY'
import json, sys
out = sys.argv[1]
S = {m: json.load(open(f"{out}/{m}_summary.json")) for m in ("sgd", "alt")}
print(f"{'epoch':>5} | {'sgd val accuracy':>16} {'sgd s':>8} | {'alt val accuracy':>16} {'alt s':>8} {'alt flips':>9}")
for a, b in zip(S["sgd"]["history"], S["alt"]["history"]):
    fl = "" if b.get("flip_frac") is None else f"{b['flip_frac']:.2e}"
    print(f"{a['epoch']:>5} | {a['val_acc']:>16.4f} {a['train_seconds']:>8.1f} | {b['val_acc']:>16.4f} "
          f"{b['train_seconds']:>8.1f} {fl:>9}")
for m, s in S.items():
    print(f"{m}: final accuracy {s['final_val_acc']:.4f}, best {s['best_val_acc']:.4f}, "
          f"epochs-to-{s['target_acc']} {s['epochs_to_target']}, seconds-to-target {s['seconds_to_target']}, "
          f"{s['images_per_s']:.0f} images/s, device {s['device']}")
PY
if [[ "$TINY" != 1 ]]; then
  echo "== 3. step benchmark, compiled (last: compile time is the least predictable part) =="
  "$PY" paper_repro/bench_step.py --arch "${COMPILE_ARCHS:-resnet18}" --size 224 --batch 128 \
      --steps 20 --warmup 5 --mode compiled --json "$OUTDIR/bench_compiled.json" \
      || echo "bench (compiled): some loop failed (see above)"
fi
echo "gpu_check finished in $((SECONDS - T0)) s"
}

run 2>&1 | tee -a "$LOG"
exit "${PIPESTATUS[0]}"
