"""Numbers as people read them: one rendering per kind of number, used by every report and metadata entry.

Dollars with thousands separators and cents, shares as percentages, relative changes as signed
percentages, scores rounded to three places, counts with separators. ``defs.metadata`` pairs each rendering with the raw value for tools; the drift
reports of ``core`` use the same functions, so a figure reads the same in the HTML and in Dagster.
"""

from __future__ import annotations

DOLLARS = "dollars"  # $43,640.65
SHARE = "share"  # 11.1%  (a fraction 0..1)
CHANGE = "change"  # +25.0%  (a relative change: new / old - 1)
SCORE = "score"  # 0.600  (a distance, a ratio, R²)
COUNT = "count"  # 12,345
MILLISECONDS = "milliseconds"  # 12.3 ms
SECONDS = "seconds"  # 4.2 s
KINDS = (DOLLARS, SHARE, CHANGE, SCORE, COUNT, MILLISECONDS, SECONDS)
MISSING = "n/a"

_FORMATS = {
    DOLLARS: lambda v: f"-${-v:,.2f}" if v < 0 else f"${v:,.2f}",
    SHARE: lambda v: f"{v:.1%}",
    CHANGE: lambda v: f"{v:+.1%}",
    SCORE: lambda v: f"{v:.3f}",
    COUNT: lambda v: f"{int(v):,}",
    MILLISECONDS: lambda v: f"{v:,.1f} ms",
    SECONDS: lambda v: f"{v:,.1f} s",
}


def for_people(value: float | int | None, kind: str) -> str:
    """``value`` as a person reads a number of ``kind`` (one of :data:`KINDS`); "n/a" for None or NaN."""
    if kind not in _FORMATS:
        raise ValueError(f"unknown kind of number '{kind}'; one of {', '.join(KINDS)}")
    if value is None or value != value:
        return MISSING
    return _FORMATS[kind](value)
