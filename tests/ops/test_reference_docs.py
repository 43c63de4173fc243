"""The operator documents generated from the code are committed up to date, and the metrics
follow the naming conventions."""

from __future__ import annotations

import re

import pytest

from telex.config import Config
from telex.reference import config_markdown, exported_metrics, metrics_markdown
from tests.conftest import ROOT

# A label whose values are unbounded would make a time series per URL or user.
UNBOUNDED_LABELS = {"url", "id", "user", "user_id", "update_id", "ip", "path", "host", "title"}


@pytest.mark.parametrize(
    ("path", "render"),
    [("docs/metrics.md", metrics_markdown), ("docs/configuration.md", config_markdown)],
)
def test_generated_docs_are_current(path: str, render: object) -> None:
    committed = (ROOT / path).read_text()
    assert callable(render)
    assert committed == render(), f"{path} is stale: run `make docs` and commit it"


def test_metric_names_follow_conventions() -> None:
    metrics = exported_metrics()
    assert len(metrics) >= 10
    for name, kind, labels, help_ in metrics:
        assert re.fullmatch(r"telex_[a-z0-9_]+", name), name
        assert help_.strip(), f"{name} has no help text"
        if kind == "counter":
            assert name.endswith("_total"), name
        else:
            assert not name.endswith("_total"), name
        if kind == "histogram":
            assert name.endswith(("_seconds", "_bytes", "_records", "_ratio")), name
        assert not UNBOUNDED_LABELS & set(labels), f"{name} has an unbounded label"


def test_every_config_key_is_documented() -> None:
    for section, field in Config.model_fields.items():
        model = field.annotation
        if isinstance(model, type):
            for key, sub in model.model_fields.items():
                assert sub.description, f"[{section}] {key} has no description"


def test_docs_index_lists_every_page() -> None:
    docs = ROOT / "docs"
    index = (docs / "README.md").read_text()
    linked = set(re.findall(r"\]\(([^)#]+\.md)\)", index))
    pages = {p.name for p in docs.glob("*.md")} - {"README.md"}
    assert pages == linked, f"missing from docs/README.md: {sorted(pages - linked)}"
