"""Build deploy/grafana/telex.json from deploy/grafana/panels.json.

Edit the panel list (rows of panels, each with a title, PromQL targets and a unit), then run
`python deploy/grafana/build_dashboard.py`; a test checks the committed dashboard is current.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}


def build(spec: list[dict[str, Any]]) -> dict[str, Any]:
    """The Grafana dashboard model for a list of rows."""
    panels: list[dict[str, Any]] = []
    y = 0
    for row in spec:
        panels.append(
            {"type": "row", "title": row["row"], "collapsed": False, "id": len(panels) + 1,
             "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []}
        )  # fmt: skip
        y += 1
        x = 0
        for panel in row["panels"]:
            width = panel.get("w", 8)
            if x + width > 24:
                x, y = 0, y + 8
            targets = [
                {"refId": chr(65 + i), "expr": expr, "legendFormat": legend,
                 "datasource": DATASOURCE}
                for i, (expr, legend) in enumerate(panel["targets"])
            ]  # fmt: skip
            panels.append(
                {"type": "timeseries", "title": panel["title"], "id": len(panels) + 1,
                 "description": panel.get("desc", ""), "datasource": DATASOURCE,
                 "gridPos": {"x": x, "y": y, "w": width, "h": 8},
                 "fieldConfig": {"defaults": {"unit": panel.get("unit", "short")}, "overrides": []},
                 "targets": targets}
            )  # fmt: skip
            x += width
        y += 8
    return {
        "uid": "telex", "title": "telex pipeline", "tags": ["telex"], "timezone": "utc",
        "schemaVersion": 39, "version": 1, "editable": True, "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": []}, "annotations": {"list": []},
        "panels": panels,
    }  # fmt: skip


def render() -> str:
    """The dashboard JSON text, as committed."""
    spec = json.loads((HERE / "panels.json").read_text())
    return json.dumps(build(spec), indent=2) + "\n"


if __name__ == "__main__":
    (HERE / "telex.json").write_text(render())
    sys.stdout.write(f"wrote {HERE / 'telex.json'}\n")
