"""The Prometheus alert rules: valid, unit-tested with promtool, and about metrics that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import yaml

from telex.reference import exported_metrics
from tests.conftest import ROOT

RULES = ROOT / "deploy/prometheus/alerts.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool missing: `make test` installs it (scripts/system-deps.sh)"
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, check=False, cwd=RULES.parent
    )


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_fire_as_their_unit_tests_expect() -> None:
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_and_uses_real_metrics() -> None:
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    tests = yaml.safe_load((RULES.parent / "alerts.test.yml").read_text())
    tested = {case["alertname"] for t in tests["tests"] for case in t.get("alert_rule_test", [])}
    known = {name for name, *_ in exported_metrics()}
    for rule in rules:
        assert rule["alert"] in tested, f"{rule['alert']} has no promtool unit test"
        for metric in re.findall(r"\btelex_[a-z0-9_]+", rule["expr"]):
            base = re.sub(r"_(bucket|sum|count)$", "", metric)
            assert metric in known or base in known, f"{rule['alert']} uses unknown {metric}"


def test_grafana_dashboard_queries_real_metrics() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/telex.json").read_text())
    known = {name for name, *_ in exported_metrics()}
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    used = set()
    for expr in exprs:
        for metric in re.findall(r"\btelex_[a-z0-9_]+", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", metric)
            assert metric in known or base in known, f"dashboard uses unknown {metric}"
            used.add(metric if metric in known else base)
    # Every metric telex exports is on the dashboard somewhere.
    assert known <= used, f"not on the dashboard: {sorted(known - used)}"


def test_grafana_dashboard_is_built_from_its_panel_list() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "build_dashboard", ROOT / "deploy/grafana/build_dashboard.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (ROOT / "deploy/grafana/telex.json").read_text()
    assert committed == module.render(), "run python deploy/grafana/build_dashboard.py"
