r"""Sharp checks where the code grew new paths: a check that a bug 2x or 10x off would pass is
no check.

1. Max-pool margins after PHT/ReLU, LeakyReLU/PReLU and ReLU6/Hardtanh are *sharp* (C2): a
   perturbation of the pool's input of size :math:`(1 - 10^{-6})\mu` keeps every support,
   one of size :math:`(1 + 10^{-3})\mu` along the worst direction flips the pool's selection.
2. Weights changed after :func:`altheory.support` by ``.data`` assignment, ``.data.copy_``, an
   edit through a numpy view, or ``load_state_dict``: every consumer refuses the stale support.
3. A resumed run logs what the uninterrupted run logs: every row, every column of
   ``metrics.csv``, ``steps.csv`` and the history, the timing columns (named) aside.
4. ``certify_run`` and the trainer's exact head with a bias penalty: the bracket holds around an
   independent cvxpy solve of the same problem, and the penalty changes the answer.
5. Regressions that only cost time: round and call counts of the solvers on fixed instances.

Float64 throughout; comparisons of computed floats by :mod:`altheory.floats`.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from altheory import FixedSupportNetwork, PHT, gated_forward, layer_operator, linearize, support
from altheory.floats import assert_close, assert_leq

from _train_helpers import _one_thread, tiny  # noqa: F401  (autouse fixture: one torch thread)

# ---------------------------------------------------------------------------------------------
# 1. max-pool margins are sharp after every activation kind
# ---------------------------------------------------------------------------------------------

C, HW = 3, 4                  # channels, input side: MaxPool2d(2) makes 2 x 2 windows per channel
N_SAMPLES = 2
CONV_SCALE = (2.0, 0.5, 4.0)  # the 1x1 conv in front: z_c = s_c x_c, exact (powers of two)
SPAN = 2.0                    # width in u (the pool's input) of every interval values are drawn in
BELOW, FLIP = 1.0 - 1e-6, 1.0 + 1e-3  # the two perturbation sizes, in units of the margin mu


@dataclasses.dataclass(frozen=True)
class _Act:
    """An activation with its regions, for designing pool inputs.

    ``slopes`` are the off-side slopes per channel (LeakyReLU, PReLU; None otherwise);
    ``A`` the distance in z of every designed entry to the activation's breakpoints (its own
    margin, larger than any perturbation made below, so the activation's support never flips).
    """

    name: str
    kind: str                 # "pht", "leaky" or "clamp"
    make: object
    A: float
    tau: float = 0.0
    slopes: tuple = ()
    bounds: tuple = ()

    def branches(self, c: int) -> list[tuple[float, float, float]]:
        """``(slope, u_lo, u_hi)`` of each region where the pool input ``u`` moves with ``z``
        (``u = slope * z``) in channel ``c``: the entries that compete inside a window."""
        A = self.A
        if self.kind == "pht":
            return [(1.0, self.tau + A, self.tau + A + SPAN)]
        if self.kind == "clamp":
            lo, hi = self.bounds
            return [(1.0, lo + A, hi - A)]
        a = self.slopes[c]
        neg = sorted((a * -A, a * -(A + SPAN / abs(a))))
        return [(1.0, A, A + SPAN), (a, neg[0], neg[1])]

    def constants(self) -> list[tuple[str, float, float]]:
        """``(region, z_lo, z_hi)`` of the regions where ``u`` is a constant (PHT: off; clamp:
        lower, upper): such entries never compete while the activation's support holds."""
        A = self.A
        if self.kind == "pht":
            return [("off", self.tau - A - 2.0, self.tau - A)]
        if self.kind == "clamp":
            lo, hi = self.bounds
            return [("lower", lo - A - 2.0, lo - A), ("upper", hi + A, hi + A + 2.0)]
        return []


def _prelu():
    m = nn.PReLU(C)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([0.25, 1.5, -0.5]))  # a slope above 1 and a negative one
    return m


ACTS = {
    "pht": _Act("pht", "pht", lambda: PHT(tau=0.5), A=0.1, tau=0.5),
    "relu": _Act("relu", "pht", nn.ReLU, A=0.1),
    "leaky": _Act("leaky", "leaky", lambda: nn.LeakyReLU(0.1), A=1.0, slopes=(0.1,) * C),
    "prelu": _Act("prelu", "leaky", _prelu, A=0.4, slopes=(0.25, 1.5, -0.5)),
    "relu6": _Act("relu6", "clamp", nn.ReLU6, A=0.1, bounds=(0.0, 6.0)),
    "hardtanh": _Act("hardtanh", "clamp", lambda: nn.Hardtanh(-1.0, 2.0), A=0.1,
                     bounds=(-1.0, 2.0)),
}


def _pool_net(act: _Act) -> nn.Module:
    conv = nn.Conv2d(C, C, 1)
    with torch.no_grad():
        conv.weight.zero_()
        for c, s in enumerate(CONV_SCALE):
            conv.weight[c, c, 0, 0] = s
        conv.bias.zero_()
    return nn.Sequential(conv, act.make(), nn.MaxPool2d(2)).double().eval()


@dataclasses.dataclass
class _Design:
    """Pre-activations ``z`` of shape (n, C, 4, 4) built window by window, with per entry
    whether it competes in its window, the slope ``du/dz`` there (0 for constants) and whether
    it is an upper constant (clamp: its window outputs ``hi`` whatever the others do)."""

    z: np.ndarray
    competes: np.ndarray
    slope: np.ndarray
    upper: np.ndarray
    critical: list          # per sample: (c, window row, window col) of the smallest gap
    g0: list                # per sample: the smallest gap designed


def _windows():
    return [(c, wr, wc) for c in range(C) for wr in range(2) for wc in range(2)]


def _entries(c, wr, wc):
    return [(c, 2 * wr + a, 2 * wc + b) for a in range(2) for b in range(2)]


def _design(act: _Act, g0s: list[float], m_full: list[int], seed: int) -> _Design:
    """Windows with pairwise different gaps ``g0 * 1, g0 * 2, ..., g0 * m`` (in a random
    order over the windows) between their two largest competing entries; the other windows have
    fewer than two competing entries or (clamp) an upper constant: no constraint there."""
    rng = np.random.default_rng(seed)
    z = np.zeros((N_SAMPLES, C, HW, HW))
    competes = np.zeros(z.shape, bool)
    slope = np.zeros(z.shape)
    upper = np.zeros(z.shape, bool)
    critical = []
    consts = act.constants()
    for i in range(N_SAMPLES):
        wins = _windows()
        order = rng.permutation(len(wins))
        full = {wins[j]: mult + 1 for mult, j in enumerate(order[: m_full[i]])}
        critical.append(wins[order[0]])
        for (c, wr, wc) in wins:
            cells = [_entries(c, wr, wc)[j] for j in rng.permutation(4)]
            branches = act.branches(c)
            if (c, wr, wc) in full:
                k_comp = 4 if not consts else int(rng.integers(2, 5))
                g = g0s[i] * full[(c, wr, wc)]
                _, lo, hi = branches[int(rng.integers(len(branches)))]
                t = rng.uniform(lo + g + 0.3, hi)
                us = [t, t - g] + [t - g - rng.uniform(0.01, 0.3) for _ in range(2)]
                us = us[:k_comp]
                rest = [r for r in consts if r[0] != "upper"] * (4 - k_comp)
            else:  # fewer than two competing entries, or an upper constant (clamp)
                dominant = act.kind == "clamp" and rng.random() < 0.5
                k_comp = int(rng.integers(0, 4)) if dominant else int(rng.integers(0, 2))
                _, lo, hi = branches[0]
                us = list(rng.uniform(lo, hi, k_comp))
                if dominant and k_comp >= 2:
                    us[1] = us[0]  # a tie under the upper constant: no constraint either
                pool = [r for r in consts if r[0] != "upper"]
                rest = [consts[1]] + pool * 3 if dominant else pool * 4
                rest = rest[: 4 - k_comp]
            for cell, u in zip(cells, us):
                options = [(s, l, h) for (s, l, h) in branches if l <= u <= h]
                s = options[int(rng.integers(len(options)))][0]
                z[(i, *cell)] = u / s
                competes[(i, *cell)] = True
                slope[(i, *cell)] = s
            for cell, (region, zl, zh) in zip(cells[len(us):], rest):
                z[(i, *cell)] = rng.uniform(zl, zh)
                upper[(i, *cell)] = region == "upper"
    return _Design(z, competes, slope, upper, critical, list(g0s))


def _input(z: np.ndarray) -> torch.Tensor:
    """The input ``x`` whose conv output is ``z`` (exact: the conv scales by powers of two)."""
    s = np.asarray(CONV_SCALE)[None, :, None, None]
    return torch.from_numpy(z / s)


def _reference_margins(u: np.ndarray, competes: np.ndarray,
                       upper: np.ndarray) -> tuple[np.ndarray, list]:
    """Half the gap between the two largest competing entries of every window without an upper
    constant, its minimum per sample and the (top, second, window) cells attaining it (slow,
    obviously right)."""
    mus, worst = [], []
    for i in range(u.shape[0]):
        best = (math.inf, None)
        for (c, wr, wc) in _windows():
            cells = [e for e in _entries(c, wr, wc) if competes[(i, *e)]]
            if len(cells) < 2 or any(upper[(i, *e)] for e in _entries(c, wr, wc)):
                continue
            cells.sort(key=lambda e: -u[(i, *e)])
            half = (u[(i, *cells[0])] - u[(i, *cells[1])]) / 2
            if half < best[0]:
                best = (half, (cells[0], cells[1], (c, wr, wc)))
        mus.append(best[0])
        worst.append(best[1])
    return np.array(mus), worst


def _perturbed(model, x, design: _Design, du: np.ndarray, dz_const: np.ndarray | None = None):
    """The support at the input whose pool input is ``u + du`` (competing entries: ``du / slope``
    in z) and whose constant entries move by ``dz_const`` in z."""
    dz = np.where(design.competes, du / np.where(design.slope == 0, 1.0, design.slope), 0.0)
    if dz_const is not None:
        dz = dz + np.where(design.competes, 0.0, dz_const)
    return support(model, x + _input(dz))


@pytest.mark.parametrize("name", list(ACTS))
@given(data=st.data())
def test_C2_maxpool_margin_is_sharp_after_each_activation(name, data):
    """C2 sharp, max pooling after every activation kind: windows with pairwise different gaps
    (the smallest in a drawn window of a drawn channel), windows without a constraint (one
    competing entry, PHT's zeros, clamp constants, ties under an upper constant). The reported
    per-sample margin mu equals the reference half-gap; every perturbation of the pool's input
    of size (1 - 1e-6) mu (the worst direction, and corners of the box) keeps every support;
    (1 + 1e-3) mu along the worst direction flips exactly one selection of the pool and none
    of the activation. A margin 2x too small, or too large, fails."""
    act = ACTS[name]
    g0s = [data.draw(st.floats(0.02, 0.1), label=f"g0[{i}]") for i in range(N_SAMPLES)]
    lo_m = 12 if act.kind == "leaky" else 3
    m_full = [data.draw(st.integers(lo_m, 12), label=f"full windows[{i}]")
              for i in range(N_SAMPLES)]
    design = _design(act, g0s, m_full, data.draw(st.integers(0, 2**32 - 1), label="seed"))
    model = _pool_net(act)
    x = _input(design.z)
    S = support(model, x)
    with torch.no_grad():
        u = model[1](model[0](x)).numpy()
    np.testing.assert_array_equal(model[0](x).detach().numpy(), design.z)  # the conv is exact
    mu = S["2"].margin
    ref, worst = _reference_margins(u, design.competes, design.upper)
    for i in range(N_SAMPLES):
        # the smallest designed gap is the one found: the windows' gaps differ by g0 or more
        assert worst[i][2] == design.critical[i]
        assert_close(2 * ref[i], design.g0[i], scale=float(np.abs(u[i]).max()),
                     what="smallest gap vs the designed one")
        (top, second, _) = worst[i]
        for size, flips in ((BELOW, 0), (FLIP, 1)):
            du = np.zeros_like(u)
            du[(i, *top)] = -size * mu[i]
            du[(i, *second)] = size * mu[i]
            T = _perturbed(model, x, design, du)
            assert T.flips(S) == {"1": 0, "2": flips}, (i, size, T.flips(S))
        rng = np.random.default_rng(i)
        for _ in range(6):  # corners of the box of radius (1 - 1e-6) mu around u (and around z)
            corner = BELOW * mu[i] * rng.choice([-1.0, 1.0], size=u.shape)
            corner[np.arange(N_SAMPLES) != i] = 0.0
            T = _perturbed(model, x, design, corner, dz_const=corner)
            assert T == S, (i, T.flips(S))
    # sharp, hence equal to the reference (asserted after the perturbations, which decide)
    assert_close(mu, ref, scale=float(np.abs(u).max()), what="max-pool margin vs reference")


# ---------------------------------------------------------------------------------------------
# 2. weights changed after support(): every consumer refuses the stale support
# ---------------------------------------------------------------------------------------------

def _small_cnn() -> nn.Module:
    """Conv -> BatchNorm (eval, running statistics) -> PReLU -> MaxPool -> Linear: parameters
    in every kind of layer, buffers included."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.PReLU(3),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3 * 2 * 2, 2)).double()
    with torch.no_grad():
        net[1].running_mean.normal_()
        net[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


def _up(t: torch.Tensor, j: int) -> torch.Tensor:
    """A copy of ``t`` with flat entry ``j`` moved one unit in the last place up."""
    u = t.detach().clone()
    u.view(-1)[j] = torch.nextafter(u.view(-1)[j], torch.tensor(math.inf, dtype=u.dtype))
    return u


def _edit_data_assignment(net):
    net[0].weight.data = _up(net[0].weight, 5)           # a new tensor behind the Parameter


def _edit_data_copy(net):
    net[5].weight.data.copy_(_up(net[5].weight, 7))      # in place, autograd's counter unmoved


def _edit_numpy_view(net):
    w = net[2].weight.detach().numpy()                   # PReLU's slopes, shared memory
    w[1] = np.nextafter(w[1], np.inf)


def _edit_numpy_view_buffer(net):
    v = net[1].running_var.numpy()                       # a BatchNorm buffer
    v[2] = np.nextafter(v[2], np.inf)


def _edit_load_state_dict(net):
    net.load_state_dict({**net.state_dict(), "0.bias": _up(net[0].bias, 1)})


# each edit moves one value by one unit in the last place, through another path
EDITS = {"data-assignment": _edit_data_assignment, "data-copy_": _edit_data_copy,
         "numpy-view": _edit_numpy_view, "numpy-view-buffer": _edit_numpy_view_buffer,
         "load_state_dict": _edit_load_state_dict}

CONSUMERS = {
    "gated_forward": lambda net, S, x: gated_forward(net, S, x),
    "linearize": lambda net, S, x: linearize(net, S, 1),
    "layer_operator": lambda net, S, x: layer_operator(net, S, "0", x),
    "FixedSupportNetwork": lambda net, S, x: FixedSupportNetwork(net, S, x,
                                                                 np.zeros((x.shape[0], 2))),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_C1_every_consumer_refuses_a_support_whose_weights_were_edited(edit):
    """A support recorded before an edit of one weight by one ulp (through ``.data``, a numpy
    view that bypasses autograd's version counter, or ``load_state_dict``) is refused by every
    consumer; put back, the same support is accepted again (the refusal is about the values,
    not about the path)."""
    net = _small_cnn()
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    S = support(net, x)
    for use in CONSUMERS.values():
        use(net, S, x)  # accepted before the edit
    saved = copy.deepcopy(net.state_dict())
    with torch.no_grad():
        EDITS[edit](net)
    moved = {k: int((v != saved[k]).sum()) for k, v in net.state_dict().items()}
    assert sorted(moved.values())[-2:] == [0, 1], moved  # the edit moved exactly one value
    for use in CONSUMERS.values():
        with pytest.raises(ValueError, match="recorded with other weights"):
            use(net, S, x)
    gated_forward(net, S.for_any_weights(), x)  # held on purpose: accepted
    net.load_state_dict(saved)
    for use in CONSUMERS.values():
        use(net, S, x)  # the values are back: accepted again



def _set(module_index: int, **values):
    def edit(net):
        for k, v in values.items():
            setattr(net[module_index], k, v)
    return edit


# constants that are not parameters or buffers but define the support or f_S
CONSTANT_EDITS = {
    "PHT-tau": (lambda: nn.Sequential(nn.Linear(4, 5), PHT(tau=0.1), nn.Linear(5, 2)),
                _set(1, tau=0.3)),
    "LeakyReLU-slope": (lambda: nn.Sequential(nn.Linear(4, 5), nn.LeakyReLU(0.1), nn.Linear(5, 2)),
                        _set(1, negative_slope=0.2)),
    "Hardtanh-bounds": (lambda: nn.Sequential(nn.Linear(4, 5), nn.Hardtanh(-0.5, 0.5),
                                              nn.Linear(5, 2)), _set(1, max_val=0.25)),
    "BatchNorm-eps": (lambda: nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), PHT(0.1),
                                            nn.Linear(5, 2)), _set(1, eps=0.5)),
}


@pytest.mark.parametrize("edit", list(CONSTANT_EDITS))
def test_C1_consumers_refuse_a_support_recorded_with_other_module_constants(edit):
    """Found here: a PHT threshold, a LeakyReLU slope, Hardtanh bounds or a BatchNorm eps
    changed after support() are no parameter or buffer values, and the stale support was
    accepted: gated_forward then differed from the model (PHT: by 0.07 on this net) and
    linearize gave the Jacobian of another network. The fingerprint now holds them; held on
    purpose (for_any_weights) the support is still accepted."""
    make, change = CONSTANT_EDITS[edit]
    torch.manual_seed(0)
    net = make().double().eval()
    x = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    S = support(net, x)
    change(net)
    for use in CONSUMERS.values():
        with pytest.raises(ValueError, match="recorded with other weights"):
            use(net, S, x)
    gated_forward(net, S.for_any_weights(), x)


# ---------------------------------------------------------------------------------------------
# 3. a resumed run logs what the uninterrupted run logs: every row, every column
# ---------------------------------------------------------------------------------------------

# the only values allowed to differ between two runs of one trajectory: wall-clock timings
TRAIN_TIMING = ("train_seconds", "images_per_s")                  # metrics.csv, history, summary
ALT_TIMING = ("seconds", "wall", "seconds_to_target", "seconds_to_loose_target", "total_seconds")


def _differences(a, b, skip: tuple[str, ...], where: str = "") -> list[str]:
    """Paths at which ``a`` and ``b`` differ (dicts, lists, tensors, numbers compared exactly:
    bit for bit in float64), keys in ``skip`` ignored at every depth."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = [k for k in dict.fromkeys([*a, *b]) if k not in skip]
        return [d for k in keys for d in _differences(a.get(k, "<missing>"), b.get(k, "<missing>"),
                                                        skip, f"{where}/{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where}: length {len(a)} vs {len(b)}"]
        return [d for j, (u, v) in enumerate(zip(a, b))
                for d in _differences(u, v, skip, f"{where}[{j}]")]
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        same = a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        return [] if same else [f"{where}: tensors differ"]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    return [] if (type(a) is type(b) and a == b) else [f"{where}: {a!r} vs {b!r}"]


def _csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        return list(r.fieldnames or []), list(r)


def _train_files(out: Path) -> dict:
    from altheory.train.checkpoint import load_checkpoint

    ck = load_checkpoint(out / "checkpoint.pt")
    ck["config"] = {k: v for k, v in ck["config"].items() if k != "out_dir"}
    summary = json.loads((out / "summary.json").read_text())
    summary["config"] = {k: v for k, v in summary["config"].items() if k != "out_dir"}
    return {"metrics.csv": _csv(out / "metrics.csv"), "steps.csv": _csv(out / "steps.csv"),
            "summary.json": summary, "checkpoint": ck}


@pytest.mark.parametrize("method", ["sgd", "alt", "alt-inner"])
def test_resumed_run_logs_every_row_and_column_of_the_uninterrupted_run(tmp_path, method):
    """Two epochs of 4 steps with the exact head, per-step logs and the cosine schedule; the
    second run is stopped mid-epoch (step 3), at an epoch's end (4) and mid-epoch again (6),
    and each time killed hard after rows were logged past its checkpoint (rows the resume must
    drop). Its metrics.csv, steps.csv, summary.json (history included) and final checkpoint
    (model, gate, optimizer, schedule, RNG, epoch sums) equal the uninterrupted run's, header
    and every column of every row, bit for bit; only the named timings may differ."""
    from altheory.train import train
    from altheory.train.loop import CSV_FIELDS, STEP_FIELDS

    # gate refreshes every 2 steps: flips counted before each interruption (3 and 6)
    kw = dict(method=method, epochs=2, log_every=1, exact_head=True, alt_every=2, inner_steps=2)
    full = tiny(tmp_path / "full", **kw)
    train(full, quiet=True)
    part = tiny(tmp_path / "part", **kw)
    out = Path(part.out_dir)
    for stop in (3, 4, 6):
        train(dataclasses.replace(part, stop_step=stop), resume=stop != 3, quiet=True)
        # killed hard after logging one more step (and an epoch's row) than the checkpoint holds
        with open(out / "steps.csv", "a") as f:
            f.write(f"{stop + 1},0.5,9.9,9.9,0.0,1,1.0\n")
        with open(out / "metrics.csv", "a") as f:
            f.write(f"9,{stop + 1}" + ",7.0" * (len(CSV_FIELDS) - 2) + "\n")
    train(part, resume=True, quiet=True)
    a, b = _train_files(Path(full.out_dir)), _train_files(out)
    assert a["metrics.csv"][0] == b["metrics.csv"][0] == list(CSV_FIELDS)
    assert a["steps.csv"][0] == b["steps.csv"][0] == list(STEP_FIELDS)
    assert [int(r["step"]) for r in b["steps.csv"][1]] == list(range(1, 9))
    assert [int(r["step"]) for r in b["metrics.csv"][1]] == [4, 8]
    if method != "sgd":  # the columns that only some methods fill are filled here
        assert all(r["flip_frac"] not in ("", None) for r in b["metrics.csv"][1])
    assert all(r["head_status"] == "optimal" for r in b["metrics.csv"][1])
    diff = _differences(a, b, skip=TRAIN_TIMING)
    assert not diff, diff


def test_alternate_resume_writes_the_files_of_the_uninterrupted_run(tmp_path):
    """``altheory alternate --resume`` after a kill in the middle of a row of runs.csv: runs.csv
    (every column; the run column parsed), runs.json, summary.json and config.json equal the
    uninterrupted run's; only the named timings may differ."""
    from altheory.cli.main import main
    from altheory.experiments.store import read_rows

    args = ["alternate", "--data", "teacher-student", "--n-train", "40", "--n-test", "20",
            "--pca", "3", "--width", "3", "--seeds", "1", "--no-relu", "--steps", "exact",
            "--methods", "adam", "--rounds", "2", "--descent-steps", "3", "--lr-points", "1",
            "--epochs-mini", "2", "--epochs-full", "3", "--batch-size", "10", "-q"]
    full, part = tmp_path / "full", tmp_path / "killed"
    assert main([*args, "--out", str(full)]) == 0
    part.mkdir()
    (part / "config.json").write_text((full / "config.json").read_text())
    lines = (full / "runs.csv").read_text().splitlines(keepends=True)
    assert len(lines) == 4  # a header and three runs
    (part / "runs.csv").write_text("".join(lines[:2]) + lines[2][:60])
    assert main([*args, "--out", str(part), "--resume"]) == 0

    def files(d: Path) -> dict:
        header, rows = read_rows(d / "runs.csv")
        for r in rows:
            r["run"] = json.loads(r["run"])
        named = ("runs.json", "summary.json", "config.json")
        return {"runs.csv": (header, rows),
                **{name: json.loads((d / name).read_text()) for name in named}}

    a, b = files(full), files(part)
    assert len(b["runs.csv"][1]) == 3
    diff = _differences(a, b, skip=ALT_TIMING)
    assert not diff, diff


# ---------------------------------------------------------------------------------------------
# 4. the head certificate with a bias penalty lam_b > 0 (certify_run, the trainer's exact head)
# ---------------------------------------------------------------------------------------------

CVX_ACC = 1e-7  # accuracy of Clarabel's optimal value on these head problems (its tolerance)


@pytest.fixture(scope="module")
def head_run(tmp_path_factory):
    """A tiny trained run (one epoch) and, independently of altheory.train.certify, the features
    of its first 40 training samples (the input of its last linear layer, eval mode)."""
    from altheory.train import load_run, train
    from altheory.train.distributed import DistInfo
    from altheory.train.models import final_linear
    from altheory.train.pipeline import build_data

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = tiny(tmp_path_factory.mktemp("head"), synthetic_n=48, epochs=1)
        train(cfg, quiet=True)
        run = load_run(cfg.out_dir)
        model = run.model.double().eval()
        data = build_data(cfg, DistInfo(0, 1, 0, torch.device("cpu"), False), torch.float64)
        x, y = next(data.eval_batches("train", limit=40, shard=False, batch_size=64))
        store = []
        h = final_linear(model).register_forward_hook(lambda m, i, o: store.append(i[0].detach()))
        with torch.no_grad():
            model(x)
        h.remove()
    finally:
        torch.set_num_threads(n)
    head = final_linear(model)
    W, b = head.weight.detach().numpy(), head.bias.detach().numpy()
    return cfg, store[0].numpy(), y.numpy(), W, b


def _cvx_head(Phi, y, k, lam, lam_b):
    """The head problem by cvxpy/Clarabel (log_sum_exp): its value and its point."""
    cp = pytest.importorskip("cvxpy")
    n, p = Phi.shape
    W, b = cp.Variable((k, p)), cp.Variable(k)
    Z = Phi @ W.T + np.ones((n, 1)) @ cp.reshape(b, (1, k), order="C")
    obj = (cp.sum(cp.log_sum_exp(Z, axis=1)) - cp.sum(cp.multiply(np.eye(k)[y], Z))) / n \
        + lam / 2 * cp.sum_squares(W) + lam_b / 2 * cp.sum_squares(b)
    prob = cp.Problem(cp.Minimize(obj))
    prob.solve(solver="CLARABEL")
    assert prob.status == "optimal", prob.status
    return float(prob.value), W.value, b.value


@pytest.mark.parametrize("lam_b", [0.05, 1.0])
def test_C8_certify_run_brackets_the_head_optimum_with_a_bias_penalty(head_run, lam_b):
    """certify_run(lam_b > 0): status optimal; F_star_lower <= F(W, b) at cvxpy's point of the
    same problem (weak duality: exact, up to rounding), F_star_upper equals cvxpy's optimum to
    its accuracy, F_trained is the objective of the trained head with the bias penalty, and the
    optimum moves with lam_b by more than both certificates' widths (lam_b is not ignored)."""
    from altheory.solvers.softmax_head import softmax_head_objective
    from altheory.train import certify_run

    cfg, Phi, y, W_tr, b_tr = head_run
    k, lam = W_tr.shape[0], cfg.weight_decay
    rep = certify_run(cfg.out_dir, subset=40, lam_b=lam_b, out="")
    rep0 = certify_run(cfg.out_dir, subset=40, lam_b=0.0, out="")
    assert rep.status == rep0.status == "optimal" and rep.lam_b == lam_b and rep.n == 40
    F_cvx, W_cvx, b_cvx = _cvx_head(Phi, y, k, lam, lam_b)
    F_at_cvx = softmax_head_objective(Phi, y, W_cvx, b_cvx, lam, lam_b=lam_b)
    assert_leq(rep.F_star_lower, F_at_cvx, what="certified lower bound vs cvxpy's point")
    assert_leq(rep.F_star_lower, rep.F_star_upper, what="bracket")
    assert abs(rep.F_star_upper - F_cvx) <= CVX_ACC, (rep.F_star_upper, F_cvx)
    assert_close(rep.F_trained, softmax_head_objective(Phi, y, W_tr, b_tr, lam, lam_b=lam_b),
                 what="F_trained with the bias penalty")
    assert_leq(rep.F_star_upper, rep.F_trained, what="the trained head is feasible")
    assert_leq(rep.gap_lower, rep.gap_certified, what="gap interval")
    assert_leq(rep.gap_certified, rep.gap_self_certified, scale=rep.F0, what="self-certified gap")
    # the penalty moves the optimum up by more than the two brackets' widths
    F0_cvx, _, _ = _cvx_head(Phi, y, k, lam, 0.0)
    assert abs(rep0.F_star_upper - F0_cvx) <= CVX_ACC
    assert rep.F_star_lower - rep0.F_star_upper > 10 * CVX_ACC, (rep.F_star_lower,
                                                                  rep0.F_star_upper)
    assert F_cvx - F0_cvx > 10 * CVX_ACC


def test_C8_trainer_exact_head_penalises_the_bias_as_stated(head_run):
    """The trainer's exact head (altheory.train.head, (l2/2)(||W||^2 + ||b||^2)): its optimum
    is cvxpy's with lam_b = l2, its certified lower bound is below the objective at cvxpy's
    point, and it equals the certified softmax head solver's with lam_b = l2 (two solvers, two
    certificates); without the bias penalty the optimum is lower by more than the brackets."""
    from altheory.solvers.softmax_head import softmax_head_objective, solve_softmax_head
    from altheory.train.head import solve_head

    cfg, Phi, y, W_tr, b_tr = head_run
    k, l2 = W_tr.shape[0], cfg.head_l2
    sol = solve_head(torch.from_numpy(Phi), torch.from_numpy(y), k, l2=l2, tol=1e-10)
    assert sol.status == "optimal"
    F_cvx, W_cvx, b_cvx = _cvx_head(Phi, y, k, l2, l2)
    assert_leq(sol.F_lower, softmax_head_objective(Phi, y, W_cvx, b_cvx, l2, lam_b=l2),
               what="head.py's certified bound vs cvxpy's point")
    assert abs(sol.F - F_cvx) <= CVX_ACC
    both = solve_softmax_head(Phi, y, k, lam=l2, lam_b=l2, tol=1e-12)
    assert both.status == "optimal"
    assert_leq(sol.F_lower, both.primal, what="head.py's bound vs the softmax head's value")
    assert_leq(both.dual, sol.F, what="the softmax head's bound vs head.py's value")
    free = solve_softmax_head(Phi, y, k, lam=l2, lam_b=0.0, tol=1e-12)
    assert sol.F_lower - free.primal > 10 * CVX_ACC, (sol.F_lower, free.primal)


# ---------------------------------------------------------------------------------------------
# 5. regressions that only cost time: rounds and calls on fixed instances
# ---------------------------------------------------------------------------------------------

from _instances import teacher as _teacher  # noqa: E402


# today's counts (this 2-core VM; one and two threads, OPENBLAS_CORETYPE set or not, give the
# same FISTA iterations and rounds; Newton steps moved by up to 3). Asserted: at most 2x today's.
# CG iterations are not bounded this tightly: the Newton preconditioner is rebuilt on a time
# budget (fast._pcg), so its CG count follows the machine's speed (measured 117-297 on one
# instance); 8x today's catches only a runaway.
FAST_COUNTS = {
    # (n, d, p), loss, lambda / lambda_max: fista, newton, working-set rounds, cg
    ((300, 8, 200), "squared", 0.01): dict(fista=380, newton=18, working_set_rounds=8, cg=137),
    ((600, 5, 300), "squared", 0.02): dict(fista=240, newton=15, working_set_rounds=5, cg=173),
    ((300, 8, 200), "logistic", 0.01): dict(fista=740, newton=9, working_set_rounds=7, cg=35),
}


@pytest.mark.parametrize("case", list(FAST_COUNTS),
                         ids=lambda c: f"{'x'.join(map(str, c[0]))}-{c[1]}-{c[2]}")
def test_C4_fast_solver_rounds_and_iterations_stay_at_todays_counts(case):
    """A change that makes the fast solver do 2x the screening, FISTA, Newton or working-set
    rounds on a fixed instance (fixed seed and size) fails here, before any benchmark notices:
    counts, not times. (Screening passes 10x longer: FISTA 2.1x-3.5x on these.)"""
    from altheory.solvers.fast import lambda_max, solve_group_lasso

    size, loss, frac = case
    X, G, y = _teacher(*size)
    if loss == "logistic":
        y = np.where(y > np.median(y), 1.0, -1.0)
    r = solve_group_lasso(X, G, y, frac * lambda_max(X, G, y, loss=loss), loss=loss)
    assert r.status == "optimal"
    today, it = FAST_COUNTS[case], r.iterations
    for key in ("fista", "newton", "working_set_rounds"):
        assert it[key] <= 2 * today[key], (key, it, today)
    assert it["cg"] <= 8 * today["cg"], (it, today)
    assert len(r.history) == it["working_set_rounds"]


# today's counts, identical with one or two threads and OPENBLAS_CORETYPE set or not
PE_COUNTS = {
    # (n, d), lambda: working-set rounds, NNLS calls (altheory.solvers.nnls.solve_checked)
    ((40, 3), 0.01): dict(rounds=3, nnls=29),
    ((40, 3), 1e-3): dict(rounds=5, nnls=43),
    ((16, 5), 0.05): dict(rounds=1, nnls=259),
}


@pytest.mark.parametrize("case", list(PE_COUNTS), ids=lambda c: f"{'x'.join(map(str, c[0]))}-{c[1]}")
def test_C5_pilanci_ergen_rounds_and_nnls_calls_stay_at_todays_counts(case, monkeypatch):
    """Pilanci-Ergen on every pattern of fixed instances: working-set rounds and NNLS calls
    (cone bounds and exact projections) at most 2x today's. (Rounds adding a tenth of the
    violators: 5 -> 15 rounds at (40, 3), 1e-3; the feasibility step without its batched
    projections: 43 -> 119 NNLS calls.)"""
    import altheory.solvers.nnls as nnls
    from altheory.solvers.arrangements import enumerate_patterns
    from altheory.solvers.pilanci_ergen import solve_pilanci_ergen

    (n, d), lam = case
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d))
    y = np.maximum(X @ rng.standard_normal(d), 0) + 0.1 * rng.standard_normal(n)
    calls = []
    orig = nnls.solve_checked
    monkeypatch.setattr(nnls, "solve_checked", lambda *a, **k: calls.append(1) or orig(*a, **k))
    r = solve_pilanci_ergen(X, enumerate_patterns(X).G, y, lam)
    assert r.status == "optimal"
    today = PE_COUNTS[case]
    assert r.iterations["rounds"] <= 2 * today["rounds"], (r.iterations, today)
    assert 0 < len(calls) <= 2 * today["nnls"], (len(calls), today)
