r"""C2 — Linear region.

If the support :math:`S` of :math:`x` is consistent with margin :math:`\mu > 0`, it stays constant
on a neighbourhood of :math:`x`, and there :math:`f(x + \delta) - f(x) = A_S \delta` exactly.

Check, per instance (random network, input, direction :math:`\delta`):

* *inside*: with :math:`A_{\le l}` the explicit operator from the input to the input of selection
  layer :math:`l` and :math:`\mu_l` that layer's margin, the radius
  :math:`t^* = \min_l \mu_l / \|A_{\le l}\delta\|_\infty` bounds every pre-activation change by
  its margin; at :math:`t = t^*/2` the support of :math:`x + t\delta` must equal :math:`S` and
  :math:`\|f(x+t\delta) - f(x) - t A_S\delta\| \le 10^{-10}\,\max(\|f(x)\|, \|tA_S\delta\|)`;
* *crossing*: the first selection layer sees an exactly affine input, so the explicit operator
  predicts its support at :math:`x + t\delta` for every :math:`t`; the smallest :math:`t` that
  changes it is found by bisection and the support computed by the network there must equal the
  prediction (at least one flip, all detected).

* *sharp margin* (:func:`sharp_margin`: thresholds, max pooling, LeakyReLU, and Hardtanh with
  its two breakpoints): along the direction that
  attains the margin :math:`\mu` reported by :func:`altheory.nets.support.support`, the support
  is unchanged at :math:`t = (1 - 10^{-6})\mu` and changed at :math:`t = (1 + 10^{-6})\mu` — an
  inflated or deflated margin fails.

Random networks come from two families: the original one (PHT, ReLU) and, as many again
(seeds from base + 100 000), one that draws every piecewise-linear activation (LeakyReLU, PReLU,
ReLU6, Hardtanh with three states) and ``torch.cat`` blocks; the crossing check predicts the
support with each activation's own rule (three states for Hardtanh and ReLU6).

An instance whose margin is 0 (e.g. max pooling over a window of exact zeros after a ReLU, where
the argmax is a tie) has no certified region: *not-applicable*, reported with its count.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from altheory.nets.architectures import ACTIVATIONS, build, random_inputs, sample_spec
from altheory.nets.graph import act_select
from altheory.nets.operators import Linearization
from altheory.nets.support import support
from altheory.claims import ClaimReport, Condition, Instance, register

TOL = 1e-10
PL_SEED_OFFSET = 100_000  # seeds of the second family: every piecewise-linear activation + cat


def _predicted_selection(node, lin: Linearization, z: np.ndarray) -> np.ndarray:
    """The selection a first-layer node makes on the flat input ``z`` (its own rule)."""
    shape = lin.shapes[node.inputs[0]]
    zt = torch.from_numpy(z.reshape(1, *shape))
    if node.kind == "act":  # each activation's own rule (three states: 0 lower, 1 identity, 2 upper)
        s, up = act_select(node, zt)
        if up is None:
            return s.numpy().ravel()
        return (s.numpy().astype(np.int8) + 2 * up.numpy().astype(np.int8)).ravel()
    m = node.module
    _, idx = F.max_pool2d(zt, m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode,
                          return_indices=True)
    return idx.numpy().ravel()


def check_instance(model, x: torch.Tensor, i: int, delta: np.ndarray) -> dict:
    """Run the inside and crossing checks for sample ``i`` along direction ``delta``."""
    S = support(model, x)
    lin = Linearization(model, S, i)
    sel_nodes = [n for n in lin.graph.nodes if n.key is not None]
    xi = x[i].reshape(-1).numpy()
    lin_parts = lin.forward(delta, bias=False)
    base = lin.forward(xi, bias=True)
    A, c, _ = lin.compose()
    fx = A @ xi + c
    out: dict = {"margin": float(min((S[n.key].margin[i] for n in sel_nodes), default=np.inf))}
    # inside
    radii = []
    for n in sel_nodes:
        g = np.abs(lin_parts[n.inputs[0]]).max()
        mu = S[n.key].margin[i]
        radii.append(np.inf if g == 0 else mu / g)
    t_star = min(radii, default=np.inf)
    if not np.isfinite(t_star):
        t_star = 1.0  # no selection moves: the network is affine along delta
    if t_star <= 0:
        out["inside"] = "not-applicable"
    else:
        t = 0.5 * t_star
        xp = x.clone()
        xp[i] = xp[i] + torch.from_numpy(t * delta).reshape(xp[i].shape)
        Sp = support(model, xp[i:i + 1])
        same = Sp.hamming(S.subset([i])) == 0
        with torch.no_grad():
            fp = model(xp[i:i + 1]).reshape(-1).numpy()
        step = t * (A @ delta)
        err = np.linalg.norm(fp - fx - step) / max(np.linalg.norm(fx), np.linalg.norm(step), 1e-300)
        out.update(inside="pass" if (same and err <= TOL) else "fail", inside_error=float(err),
                   inside_support_same=bool(same), t=float(t))
    # crossing at the first selection layer
    if not sel_nodes:
        out["crossing"] = "not-applicable"
        return out
    first = sel_nodes[0]
    z0, g = base[first.inputs[0]], lin_parts[first.inputs[0]]
    s0 = _predicted_selection(first, lin, z0)
    changed = lambda t: not np.array_equal(_predicted_selection(first, lin, z0 + t * g), s0)  # noqa: E731
    hi = max(t_star, 1e-6) if np.isfinite(t_star) and t_star > 0 else 1e-6
    while not changed(hi) and hi < 1e6:
        hi *= 2
    if not changed(hi):
        out["crossing"] = "not-applicable"
        return out
    lo = 0.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if changed(mid) else (mid, hi)
    # step just past the first change, so rounding (1e-16) cannot put the network back before it
    hi *= 1 + 1e-6
    predicted = _predicted_selection(first, lin, z0 + hi * g)
    xp = x[i:i + 1] + torch.from_numpy(hi * delta).reshape(x[i:i + 1].shape)
    observed = support(model, xp)[first.key].flat(0)
    flips = int((predicted != s0).sum())
    ok = np.array_equal(observed, predicted) and flips >= 1
    out.update(crossing="pass" if ok else "fail", crossing_flips=flips, crossing_t=float(hi))
    return out


ETA = 1e-6  # "just below" / "just above" the margin: t = (1 -/+ ETA) mu


def _sharp_model(kind: str, rng: np.random.Generator):
    """A network whose first layer is the selection (so the input is its pre-activation)."""
    from torch import nn

    from altheory.nets.activations import PHT

    if kind == "threshold":
        d = int(rng.integers(3, 12))
        tau = float(rng.choice([0.0, 0.1, 0.5]))
        model = nn.Sequential(PHT(tau), nn.Linear(d, 2)).double().eval()
        x = torch.from_numpy(rng.standard_normal((1, d)))
        return model, x, {"kind": kind, "d": d, "tau": tau}
    if kind == "leaky":
        d = int(rng.integers(3, 12))
        slope = float(rng.choice([0.1, -0.2, 0.5]))
        model = nn.Sequential(nn.LeakyReLU(slope), nn.Linear(d, 2)).double().eval()
        x = torch.from_numpy(rng.standard_normal((1, d)))
        return model, x, {"kind": kind, "d": d, "slope": slope, "breakpoints": (0.0,)}
    if kind == "hardtanh":  # three states: lower constant, identity, upper constant
        d = int(rng.integers(3, 12))
        lo, hi = [(-0.5, 0.5), (0.0, 1.0), (-1.0, 0.25)][int(rng.integers(3))]
        model = nn.Sequential(nn.Hardtanh(lo, hi), nn.Linear(d, 2)).double().eval()
        x = torch.from_numpy(rng.standard_normal((1, d)))
        return model, x, {"kind": kind, "d": d, "lo": lo, "hi": hi, "breakpoints": (lo, hi)}
    if kind == "maxpool":
        k = int(rng.integers(2, 4))
        stride = int(rng.integers(1, k + 1))
        pad = int(rng.integers(0, k // 2 + 1))
        dil = int(rng.integers(1, 3))
        c, h = int(rng.integers(1, 3)), int(rng.integers(5, 9))
        pool = nn.MaxPool2d(k, stride, padding=pad, dilation=dil)
        with torch.no_grad():
            out = pool(torch.zeros(1, c, h, h, dtype=torch.float64))
        model = nn.Sequential(pool, nn.Flatten(), nn.Linear(out.numel(), 1)).double().eval()
        x = torch.from_numpy(rng.standard_normal((1, c, h, h)))
        return model, x, {"kind": kind, "kernel": k, "stride": stride, "padding": pad,
                          "dilation": dil, "c": c, "h": h}
    raise ValueError(f"kind must be 'threshold', 'leaky', 'hardtanh' or 'maxpool'; got {kind!r}.")


def _attaining_move(kind: str, model, x: torch.Tensor, spec: dict) -> tuple[np.ndarray, float]:
    """The unit-speed direction (in the selection's input, the network input here) that attains
    the margin, and the margin measured independently of :mod:`altheory.nets.support`."""
    xf = x.reshape(-1).numpy()
    if kind == "threshold":
        gaps = xf - spec["tau"]
        j = int(np.argmin(np.abs(gaps)))
        v = np.zeros_like(xf)
        v[j] = -np.sign(gaps[j]) if gaps[j] != 0 else -1.0
        return v, float(abs(gaps[j]))
    if kind in ("leaky", "hardtanh"):  # the entry nearest to any breakpoint, toward it
        gaps = np.stack([xf - b for b in spec["breakpoints"]])
        b, j = np.unravel_index(int(np.argmin(np.abs(gaps))), gaps.shape)
        v = np.zeros_like(xf)
        v[j] = -np.sign(gaps[b, j]) if gaps[b, j] != 0 else -1.0
        return v, float(abs(gaps[b, j]))
    pool = model[0]
    n, c, h, w = x.shape
    k, st, p, d = (pool.kernel_size, pool.stride, pool.padding, pool.dilation)
    pos = torch.arange(c * h * w, dtype=torch.float64).reshape(1, c, h, w)
    val = F.pad(x, (p, p, p, p), value=-np.inf)
    ids = F.pad(pos, (p, p, p, p), value=-1.0)
    with torch.no_grad():
        out_hw = pool(x).shape[2:]
    cv = F.unfold(val.reshape(c, 1, h + 2 * p, w + 2 * p), k, dilation=d, stride=st)
    ci = F.unfold(ids.reshape(c, 1, h + 2 * p, w + 2 * p), k, dilation=d, stride=st)
    cv, ci = cv[:, :, : out_hw[0] * out_hw[1]], ci[:, :, : out_hw[0] * out_hw[1]]
    top = cv.topk(2, dim=1)
    gap = (top.values[:, 0] - top.values[:, 1]) / 2
    gap = torch.where(torch.isfinite(top.values[:, 1]), gap, torch.tensor(np.inf, dtype=gap.dtype))
    flat = int(torch.argmin(gap))
    ch, col = divmod(flat, gap.shape[1])
    i1 = int(ci[ch, top.indices[ch, 0, col], col])
    i2 = int(ci[ch, top.indices[ch, 1, col], col])
    v = np.zeros_like(xf)
    v[i1], v[i2] = -1.0, 1.0
    return v, float(gap[ch, col])


def sharp_margin(kind: str, seed: int) -> dict:
    """Just below the margin along the attaining direction the support holds; just above it changes.

    ``mu`` is the margin reported by :func:`altheory.nets.support.support`; the direction moves
    the entries that attain the margin (threshold: the pre-activation closest to ``tau``, toward
    it; max pool: the largest entry of the tightest window down and the second largest up), one
    unit per unit of ``t`` in the infinity norm.
    """
    rng = np.random.default_rng(seed)
    model, x, spec = _sharp_model(kind, rng)
    S = support(model, x)
    key = next(iter(S.keys()))
    mu = float(S[key].margin[0])
    v, mu_ref = _attaining_move(kind, model, x, spec)
    out = {**spec, "margin": mu, "margin_independent": mu_ref}
    if not (np.isfinite(mu_ref) and mu_ref > 0):
        out["status"] = "not-applicable"  # a tie: no region to test
        return out
    if not (np.isfinite(mu) and mu > 0):
        out["status"] = "fail"  # the support reports no region where there is one
        return out
    vt = torch.from_numpy(v).reshape(x.shape)
    below = support(model, x + (1 - ETA) * mu * vt).hamming(S) == 0
    above = support(model, x + (1 + ETA) * mu * vt).hamming(S) > 0
    out.update(held_just_below=bool(below), changed_just_above=bool(above),
               rel_error=abs(mu - mu_ref) / mu_ref)
    out["status"] = "pass" if (below and above) else "fail"
    return out


@register("C2", "Linear region around a consistent support", asserted=True)
def check(profile: str = "quick", seed: int = 0) -> ClaimReport:
    report = ClaimReport("C2", "Linear region around a consistent support", asserted=True,
                         metric="relative error", conditions=[])
    count = 40 if profile == "quick" else 400
    zero_margin = 0
    for j in range(2 * count):
        pl = j >= count  # the second family: every piecewise-linear activation and cat blocks
        s = seed + (PL_SEED_OFFSET + j - count if pl else j)
        family = "mlp" if j % 2 == 0 else "cnn"
        spec = (sample_spec(s, family=family, activations=ACTIVATIONS, concat=True) if pl
                else sample_spec(s, family=family))
        model = build(spec)
        x = random_inputs(spec, 1, s)
        delta = np.random.default_rng(s).standard_normal(int(np.prod(spec.input_shape)))
        r = check_instance(model, x, 0, delta)
        parts = [r.get("inside"), r.get("crossing")]
        if "fail" in parts:
            status = "fail"
        elif "pass" in parts:
            status = "pass"
        else:
            status = "not-applicable"
        zero_margin += r.get("inside") == "not-applicable"
        report.add(Instance(s, {"family": family + ("-pl" if pl else ""), "arch": spec.describe(),
                                "d": int(delta.size)}, status, r.get("inside_error"), TOL, r))
    # the margin itself, sharply: thresholds, max pooling, LeakyReLU, Hardtanh (two breakpoints)
    n_sharp = 10 if profile == "quick" else 100
    for kind in ("threshold", "maxpool", "leaky", "hardtanh"):
        for j in range(n_sharp):
            s = seed + 10_000 + j
            r = sharp_margin(kind, s)
            report.add(Instance(s, {"check": "sharp-margin", "kind": kind}, r["status"],
                                r.get("rel_error"), ETA, r))
    count *= 2
    report.conditions.append(Condition("margin > 0", count - zero_margin > 0, f"{count - zero_margin}/{count}",
                                       "instances with a zero margin (ties) have no certified region"))
    report.notes.append(f"{zero_margin} of {count} instances had margin 0 (inside part not applicable); "
                        "replay: sample_spec(seed, family=...), random_inputs(spec, 1, seed); family "
                        f"'-pl' (seed >= base + {PL_SEED_OFFSET}): sample_spec(seed, family=..., "
                        "activations=ACTIVATIONS, concat=True)")
    return report
