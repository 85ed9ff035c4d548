r"""Shared figure style: Agg backend, paper rcParams, column-width sizes, PNG+PDF output.

Every figure script in ``figures/`` calls :func:`setup` first and :func:`save` last, so all
figures share fonts, line widths and sizes and are readable at a journal's column width
(3.4 in; :data:`DOUBLE` = 7.0 in for a figure spanning both columns).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["COLUMN", "DOUBLE", "setup", "figure", "save", "COLORS", "method_style", "METADATA"]

COLUMN = 3.4   # inches, one column
DOUBLE = 7.0   # inches, two columns

RC = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 6.5,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.1, "lines.markersize": 3,
    "axes.linewidth": 0.6, "grid.linewidth": 0.4, "grid.alpha": 0.4, "axes.grid": True,
    "legend.frameon": False, "savefig.dpi": 300, "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02, "pdf.fonttype": 42, "ps.fonttype": 42,
    "axes.spines.top": False, "axes.spines.right": False, "font.family": "DejaVu Sans",
}

# one colour per method family, stable across figures
COLORS = {
    "alt-exact": "#d62728", "alt-descent": "#ff7f0e", "alt-support-preserving": "#8c564b",
    "sgd": "#1f77b4", "momentum": "#2ca02c", "adam": "#9467bd",
}


def method_style(name: str) -> dict:
    """Colour and line style of a method label like ``adam-mini`` or ``alt-exact``."""
    base = name if name.startswith("alt-") else name.split("-")[0]
    ls = "--" if name.endswith("-full") else "-"
    return {"color": COLORS.get(base, "0.3"), "linestyle": ls}


def setup() -> None:
    """Apply the shared rcParams (idempotent)."""
    plt.rcParams.update(RC)


def figure(width: float = COLUMN, aspect: float = 0.7, ncols: int = 1, nrows: int = 1, **kw):
    """``plt.subplots`` at ``width`` inches and height ``aspect * width / ncols * nrows``."""
    setup()
    return plt.subplots(nrows, ncols, figsize=(width, aspect * width / ncols * nrows),
                        constrained_layout=True, **kw)


# Metadata that would change the bytes of a file drawn twice from the same data: the PDF's
# creation date, and the producing software's version (PDF and PNG). Dropped, so that
# `altheory figures` leaves the committed files untouched when the data did not change.
METADATA = {
    ".pdf": {"CreationDate": None, "Creator": None, "Producer": None},
    ".png": {"Software": None},
}


def save(fig, stem: str | Path) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf``, byte-reproducible; returns both paths.

    The same figure drawn twice gives identical files (no creation date, no software version
    in the metadata); a file whose bytes would not change is not rewritten at all.
    """
    import io

    from altheory.io import write_bytes_atomic

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for p in out:
        buf = io.BytesIO()
        fig.savefig(buf, format=p.suffix[1:], metadata=METADATA[p.suffix])
        data = buf.getvalue()
        if not (p.is_file() and p.read_bytes() == data):
            write_bytes_atomic(p, data)
    plt.close(fig)
    return out


import logging as _logging  # noqa: E402

_logging.getLogger("fontTools").setLevel(_logging.WARNING)  # PDF font subsetting chatter
_logging.getLogger("matplotlib").setLevel(_logging.WARNING)
