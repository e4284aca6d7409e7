"""The day's drift HTML: the platform's verdict first, then Evidently's detail — small, and never contradicting.

Evidently renders a snapshot as one HTML file that inlines its 3.5 MB JavaScript viewer; the day's
data (aggregated histograms of at most ``DriftConfig.max_rows`` sampled rows) is about 0.6 MB whatever
the traffic. So the viewer is written once per folder, next to the reports (``js/evidently-<version>.js``,
as Evidently's own "folder" save mode of its legacy reports does), and each day's page links it by a
relative path: the state folder stays relocatable, and the day's page stays well under 1 MB.

Evidently's first counter reads "Dataset Drift is NOT detected. Dataset drift detection threshold is
0.5" — its dataset-share rule, which is only one of the platform's four (``core.drift_rules``). Left
as it is, it contradicts a check failed on a key feature. It is rewritten to say which rule it is and
what the platform concluded. Above everything, :meth:`DriftVerdict.to_html` states the check's result
in static HTML, readable even where the viewer script does not load (e.g. an MLflow artifact view).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import evidently
from evidently.core.report import Snapshot
from evidently.legacy.utils.dashboard import STATIC_PATH

from housing_platform.core.drift_verdict import DriftVerdict
from housing_platform.core.schema import FEATURE_COLUMNS

LIB_FOLDER = "js"
LIB_FILE = f"evidently-{evidently.__version__}.js"
# Evidently's dataset-drift counter (legacy/metrics/data_drift/dataset_drift_metric.py), as JSON in the page.
_EVIDENTLY_HEADLINE = re.compile(
    r'\{"value": "Dataset Drift", "label": "Dataset Drift is (?:NOT )?detected\. '
    r'Dataset drift detection threshold is [0-9.eE+-]+"\}'
)
_DRAW_CALL = "window.drawDashboard("
_STYLE = (
    "<style>#platform-verdict{font-family:system-ui,sans-serif;margin:16px 24px;padding:12px 20px;"
    "border-left:8px solid #2e7d32;background:#f4f9f4}#platform-verdict.failed{border-color:#c62828;"
    "background:#fdf3f3}#platform-verdict h1{font-size:22px;margin:4px 0 8px}#platform-verdict li.fired{"
    "font-weight:600}#platform-verdict table{border-collapse:collapse;margin:8px 0}#platform-verdict td,"
    "#platform-verdict th{border:1px solid #ccc;padding:2px 8px;text-align:right}#platform-verdict td:first-child"
    "{text-align:left}</style>"
)


def write_drift_html(path: str | Path, verdict: DriftVerdict, snapshot: Snapshot | None, dataset_share_text: str) -> Path:
    """Write the day's page to ``path`` (and the shared viewer beside it, once); return ``path``.

    ``dataset_share_text`` is what replaces Evidently's own dataset-drift headline: the rule's figures
    and the platform's verdict, e.g. from :func:`evidently_headline`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if snapshot is None:
        page = (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>Drift report: {verdict.verdict}</title>{_STYLE}</head><body>\n{verdict.to_html()}\n</body></html>\n"
        )
        path.write_text(page, encoding="utf-8")
        return path
    library = _shared_library(path.parent)
    page = snapshot.get_html_str(as_iframe=False)
    inlined = f"<script>{Path(STATIC_PATH, 'index.js').read_text(encoding='utf-8')}</script>"
    if inlined not in page:
        raise RuntimeError(f"Evidently {evidently.__version__} no longer inlines its viewer as expected; see {__name__}")
    missing = (
        "<p id='evidently-missing' hidden style='margin:0 24px;font-family:system-ui,sans-serif'>Evidently's "
        f"detail needs {LIB_FOLDER}/{library.name} next to this page.</p>"
    )
    page = page.replace(
        inlined,
        f"<script src='{LIB_FOLDER}/{library.name}' "
        "onerror=\"document.getElementById('evidently-missing').hidden=false\"></script>",
        1,
    )
    page = page.replace(_DRAW_CALL, f"window.drawDashboard && {_DRAW_CALL}", 1)
    headline = json.dumps({"value": "Dataset share rule (Evidently)", "label": dataset_share_text})
    page, replaced = _EVIDENTLY_HEADLINE.subn(lambda _: headline.replace("</", "<\\/"), page, count=1)
    if replaced != 1:
        raise RuntimeError(f"Evidently {evidently.__version__}'s dataset-drift headline was not found; see {__name__}")
    page = page.replace("<head>", f"<head><title>Drift report: {verdict.headline}</title>{_STYLE}", 1)
    page = page.replace("<body>", f"<body>\n{verdict.to_html()}\n{missing}", 1)
    path.write_text(page, encoding="utf-8")
    return path


def evidently_headline(summary: dict, verdict: DriftVerdict) -> str:
    """Evidently's dataset-drift counter, reworded: its rule's figures, then the platform's check result."""
    met = "met" if summary["dataset_drift"] else "NOT met"
    share = float(summary["drifted_share"])
    return (
        f"Evidently's dataset-drift rule (≥ {summary['drift_share_threshold']:.0%} of features drifted) is {met}: "
        f"{len(summary['drifted_columns'])} of {sum(r['column'] in FEATURE_COLUMNS for r in summary['table'])} features "
        f"({share:.0%}). It is one of the platform's four rules. {verdict.headline}."
    )


def _shared_library(folder: Path) -> Path:
    """Evidently's viewer in ``folder/js``, copied once per Evidently version."""
    source = Path(STATIC_PATH, "index.js")
    target = folder / LIB_FOLDER / LIB_FILE
    if not target.is_file() or target.stat().st_size != source.stat().st_size:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        shutil.copyfile(source, partial)
        partial.replace(target)  # never a half-written viewer under the real name
    return target
