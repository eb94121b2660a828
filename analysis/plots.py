"""The report's sections. Figures, CSV files and intervals come from :mod:`metarl.analysis.plots` and
:mod:`metarl.analysis.intervals`; the report draws with the Agg backend (no display needed)."""
from __future__ import annotations

from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")


@dataclass
class Section:
    """One part of ``report.md``: figures (PNG + the CSV behind it), notes and optional markdown."""

    title: str
    figures: list[tuple[str, str, str]] = field(default_factory=list)  # (caption, png, csv)
    notes: list[str] = field(default_factory=list)
    markdown: str = ""
