r"""The scaled-up trainer: PHT ResNets trained by ``sgd``, ``alt`` or ``alt-inner``.

Alternation at scale (docs/claims.md C9 with C1/C3): the support :math:`S` of a step comes from a
gate copy of the weights and is held while the weights take gradient steps on the gated network
:math:`f_S(x; W)`, which is linear in ``x`` and in each layer. ``--exact-head`` solves the last
layer exactly for the current features (C8) and logs the gap of the SGD-trained head.

Modules: :mod:`.config` (TrainConfig, TOML, overrides), :mod:`.models` (ResNets with PHT),
:mod:`.methods` (GatedPHT, Gating), :mod:`.pipeline` (batches), :mod:`.head` (exact head),
:mod:`.loop` (train), :mod:`.checkpoint`, :mod:`.distributed`, :mod:`.cli`, :mod:`.runs`
(``load_run``: reload a run for analysis), :mod:`.certify` (``certify_run``: the support and the
certified head of a trained run, ``altheory certify RUN_DIR``).

Imports only torch, numpy and the standard library (tqdm and tensorboard are used when present),
so it runs on a GPU machine without the rest of altheory's dependencies.
"""

from altheory.train.config import TrainConfig, load_config
from altheory.train.loop import train
from altheory.train.runs import Run, load_run


def __getattr__(name):  # certify loads lazily (``python -m altheory.train.certify`` stays clean)
    if name in ("CertifyReport", "certify_run"):
        from altheory.train import certify

        return getattr(certify, name)
    raise AttributeError(f"module 'altheory.train' has no attribute {name!r}")


__all__ = ["TrainConfig", "load_config", "train", "Run", "load_run", "CertifyReport", "certify_run"]
