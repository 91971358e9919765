"""The Grafana dashboard is importable: valid JSON with a data source and a tenant variable.

Grafana is not installed here, so this checks the model Grafana's import reads (schema fields,
variables, every panel bound to the data source variable, unique ids, a grid that does not
overlap). Which metrics the panels query is checked in test_metric_names.py.
"""

from __future__ import annotations

import json
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "mugaika-dashboard.json"


def _load() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_importable_model() -> None:
    dashboard = _load()
    assert dashboard["uid"] == "mugaika-overview"
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard["schemaVersion"] >= 36
    # An exported-for-sharing dashboard must not pin a datasource uid of one Grafana.
    assert "id" not in dashboard or dashboard["id"] is None


def test_datasource_and_tenant_variables() -> None:
    variables = {v["name"]: v for v in _load()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    tenant = variables["tenant"]
    assert tenant["type"] == "query"
    assert tenant["datasource"]["uid"] == "${datasource}"
    assert tenant["multi"] is True
    assert tenant["includeAll"] is True
    assert "tenant)" in tenant["query"]["query"]
    assert variables["instance"]["includeAll"] is True


def test_every_panel_uses_the_datasource_variable() -> None:
    dashboard = _load()
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_tenant_variable_filters_the_tenant_panels() -> None:
    for panel in _load()["panels"]:
        for target in panel.get("targets", []):
            for metric in ("mugaika_messages_total", "mugaika_quarantine_items"):
                if metric in target["expr"]:
                    assert 'tenant=~"$tenant"' in target["expr"], panel["title"]


def test_unique_ids_and_no_overlapping_panels() -> None:
    panels = _load()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
