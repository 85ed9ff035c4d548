r"""C1 — Linear given the support.

For every :math:`W` and :math:`x` with :math:`S = S(W, x)`:
:math:`f(x; W) = A_S(W)\,x + c_S(W)` with :math:`A_S = W_L D^{L-1} \cdots D^1 W_1`, and
:math:`A_S = \partial f / \partial x`.

Check: for random MLPs and CNNs (conv of any stride, padding, dilation and groups; average,
adaptive and max pooling; batch norm in eval; BasicBlock / Bottleneck residual blocks; PHT in
threshold and top-k form, ReLU), build :math:`A_S` explicitly (:func:`altheory.linearize`, never
autograd), and measure in float64 the relative errors
:math:`\|A x + c - f(x)\| / \|f(x)\|` and :math:`\|A - J\|_F / \|J\|_F` with :math:`J` the
autograd Jacobian. Asserted: both <= 1e-10 on every instance. A second family, as many
instances again, draws every piecewise-linear activation (PHT, ReLU, LeakyReLU, PReLU, ReLU6,
Hardtanh) and DenseNet-like ``torch.cat`` blocks (seeds from base + 100 000; the first family
keeps the specs it always drew). The thorough profile adds a PHT ResNet-18 (torchvision) on
3x24x24 inputs and a PHT mobilenet_v2 (every ReLU6 replaced) and the plain one (ReLU6 kept) on
3x32x32, batch norm calibrated on a random batch (:func:`~altheory.nets.architectures.calibrate_batchnorm`).
"""

from __future__ import annotations

import numpy as np
import torch

from altheory.nets.architectures import ACTIVATIONS, build, calibrate_batchnorm, random_inputs, sample_spec
from altheory.nets.operators import linearize
from altheory.nets.support import support
from altheory.claims import ClaimReport, Condition, Instance, register

TOL = 1e-10
PL_SEED_OFFSET = 100_000  # seeds of the second family: every piecewise-linear activation + cat


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    den = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / den) if den > 0 else float(np.linalg.norm(a - b))


def measure(model: torch.nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Worst forward and Jacobian relative errors of :func:`linearize` over the batch ``x``."""
    S = support(model, x)
    with torch.no_grad():
        y = model(x).reshape(x.shape[0], -1).numpy()
    worst_f = worst_j = 0.0
    for i in range(x.shape[0]):
        A, c = linearize(model, S, i)
        xi = x[i].reshape(-1).numpy()
        worst_f = max(worst_f, _rel(A @ xi + c, y[i]))
        J = torch.autograd.functional.jacobian(lambda v: model(v[None])[0], x[i])
        worst_j = max(worst_j, _rel(A, J.reshape(y.shape[1], -1).numpy()))
    return {"forward_rel_error": worst_f, "jacobian_rel_error": worst_j, "margin": S.margin,
            "support_entries": int(sum(l.size for l in S.layers.values()))}


@register("C1", "Linear given the support", asserted=True)
def check(profile: str = "quick", seed: int = 0) -> ClaimReport:
    report = ClaimReport("C1", "Linear given the support", asserted=True, metric="relative error",
                         conditions=[Condition("support consistent", True, "S = S(W, x) by construction")])
    count = 60 if profile == "quick" else 600
    for j in range(count):
        s = seed + j
        family = "mlp" if j % 3 == 0 else "cnn"
        spec = sample_spec(s, family=family)
        model = build(spec)
        x = random_inputs(spec, 2, s)
        m = measure(model, x)
        err = max(m["forward_rel_error"], m["jacobian_rel_error"])
        report.add(Instance(s, {"family": family, "arch": spec.describe(), "n": 2, "depth": spec.depth},
                            "pass" if err <= TOL else "fail", err, TOL, m))
    for j in range(count):
        s = seed + PL_SEED_OFFSET + j
        family = "mlp" if j % 3 == 0 else "cnn"
        spec = sample_spec(s, family=family, activations=ACTIVATIONS, concat=True)
        model = build(spec)
        x = random_inputs(spec, 2, s)
        m = measure(model, x)
        err = max(m["forward_rel_error"], m["jacobian_rel_error"])
        report.add(Instance(s, {"family": family + "-pl", "arch": spec.describe(), "n": 2,
                                "depth": spec.depth, "activation": spec.activation[0]},
                            "pass" if err <= TOL else "fail", err, TOL, m))
    if profile == "thorough":
        from torchvision.models import resnet18

        from altheory.nets.activations import replace_relu

        torch.manual_seed(seed)
        model = replace_relu(resnet18(num_classes=10), tau=0.01).double().eval()
        x = torch.randn(1, 3, 24, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        m = measure(model, x)
        err = max(m["forward_rel_error"], m["jacobian_rel_error"])
        report.add(Instance(seed, {"family": "resnet18", "input": "3x24x24", "n": 1},
                            "pass" if err <= TOL else "fail", err, TOL, m))
        from torchvision.models import mobilenet_v2

        for label, relu6 in (("mobilenet_v2-pht", True), ("mobilenet_v2-relu6", False)):
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            model = replace_relu(mobilenet_v2(num_classes=10), tau=0.01, relu6=relu6).double()
            # batch norm calibrated on a random batch: at torchvision's initialisation the
            # activations shrink and PHT(0.01) zeroes them all (A = J = 0 would prove nothing)
            calibrate_batchnorm(model, torch.randn(16, 3, 32, 32, dtype=torch.float64, generator=gen))
            x = torch.randn(1, 3, 32, 32, dtype=torch.float64, generator=gen)
            m = measure(model, x)
            err = max(m["forward_rel_error"], m["jacobian_rel_error"])
            report.add(Instance(seed, {"family": label, "input": "3x32x32", "n": 1},
                                "pass" if err <= TOL else "fail", err, TOL, m))
    report.notes.append(f"{count} random architectures (1/3 MLP, 2/3 CNN), instance seed = base seed + j; "
                        "replay: altheory.nets.architectures.sample_spec(seed, family=...)")
    report.notes.append(f"{count} more with every piecewise-linear activation and cat blocks (family "
                        f"'mlp-pl'/'cnn-pl'), seed = base seed + {PL_SEED_OFFSET} + j; replay: "
                        "sample_spec(seed, family=..., activations=ACTIVATIONS, concat=True)")
    return report
