"""The loop of :func:`altheory.alternation.alternation.alternate` calls its weight steps through
the module, at call time.

``proofs_checks/mutants.py`` replaces ``descent_step``, ``exact_layer_step`` and
``support_preserving_layer_step`` in that module to check that C8 and C9 catch a wrong step; a
loop that captured them when the module was imported (a dict of steps, a default argument, a
closure) would run the originals and those mutants would survive unseen. Each test patches one
step with a counting wrapper and checks that the loop ran the patched one, once per sub-step.
"""

from __future__ import annotations

import pytest

from altheory.alternation import alternation as A
from altheory.data import teacher_student

# (weight_step, the module attribute it must call, sub-steps per round for a one-hidden-layer MLP)
STEPS = [("descent", "descent_step", 1),
         ("exact", "exact_layer_step", 2),
         ("support-preserving", "support_preserving_layer_step", 2)]


@pytest.mark.parametrize("weight_step,name,per_round", STEPS)
def test_alternate_calls_the_step_held_by_the_module(monkeypatch, weight_step, name, per_round):
    ts = teacher_student(24, 3, widths=(3,), tau=0.1, seed=0)
    orig = getattr(A, name)
    calls = []

    def counted(*a, **k):
        calls.append(k)
        return orig(*a, **k)

    monkeypatch.setattr(A, name, counted)
    # biases on: the "exact" step sweeps the layers instead of the joint group-lasso step
    res = A.alternate(A.mlp(3, (4,), 1, tau=0.1, seed=1), ts.X, ts.Y, weight_step=weight_step,
                      max_rounds=2, descent_steps=3)
    assert len(calls) == per_round * res.n_rounds >= per_round
    assert all(s in ("optimal", "descent") for r in res.rounds[1:] for s in r.statuses)
