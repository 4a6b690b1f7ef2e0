"""The alerting files agree with each other and with the metrics liqwatch exports.

promtool checks the rules and runs their unit tests (make alerting); here:
every alert has a unit test that fires it, and every metric a rule or a
dashboard panel reads is one the daemon or the notifier exports, so a typo
cannot leave an alert that never fires.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from watcher.daemon.metrics import METRICS
from watcher.notify.metrics import NotifyMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# The daemon's metrics (watcher/daemon's metrics module), as issue 12 names them.
# The daemon's metrics, as its metrics module names them.
DAEMON_METRICS = set(METRICS)
HISTOGRAMS = {name for name, (kind, _) in METRICS.items() if kind == "histogram"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def notify_metrics() -> set[str]:
    registry = NotifyMetrics(["s"]).registry
    names = {sample.name for family in registry.collect() for sample in family.samples}
    # prometheus-client's creation times of counters: not read by anything.
    return {n for n in names if not n.endswith("_created")}


def known(name: str) -> bool:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in HISTOGRAMS:
            return True
    return name in DAEMON_METRICS or name in notify_metrics()


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bliqwatch_[a-z_]+", expr))


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "liqwatch.rules.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_every_alert_is_fired_by_a_unit_test():
    tests = yaml.safe_load((DEPLOY / "prometheus" / "tests.yml").read_text())
    fired = {
        check["alertname"]
        for case in tests["tests"]
        for check in case["alert_rule_test"]
        if check.get("exp_alerts")
    }
    assert {rule["alert"] for rule in rules()} <= fired


def test_every_alert_says_how_bad_and_what_happened():
    for rule in rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


def test_the_rules_cover_what_the_issue_asks_for():
    names = {rule["alert"] for rule in rules()}
    assert {
        "LiqwatchDown",
        "LiqwatchHeartbeatStale",
        "LiqwatchSymbolStale",
        "LiqwatchFeedReconnectStorm",
        "LiqwatchNoMarks",
        "LiqwatchInputLagGrowing",
        "LiqwatchInputDeadLetters",
        "LiqwatchNotifyDeadLetters",
        "LiqwatchLiquidationStuck",
        "LiqwatchLoopLag",
        "LiqwatchLiquidationSpike",
        "LiqwatchNotifierFailing",
        "LiqwatchRedisDegraded",
        "LiqwatchDataLost",
    } <= names


def test_the_rules_read_only_exported_metrics():
    unknown = {
        (rule["alert"], name)
        for rule in rules()
        for name in metric_names(rule["expr"])
        if not known(name)
    }
    assert not unknown


def test_the_checker_refuses_a_misspelt_metric():
    assert not known("liqwatch_notify_deliverd_total")
    assert not known("liqwatch_mark_live_bucket")
    assert known("liqwatch_tick_to_commit_seconds_bucket")
    assert known("liqwatch_notify_delivered_total")


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        (DEPLOY / "grafana" / "dashboards" / "liqwatch.json").read_text()
    )
    return doc


def test_the_dashboard_reads_only_exported_metrics():
    panels = [p for p in dashboard()["panels"] if p["type"] != "row"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    unknown = {n for e in exprs for n in metric_names(e) if not known(n)}
    assert not unknown
    shown = {n.removesuffix("_bucket") for e in exprs for n in metric_names(e)}
    # Every metric of the daemon and the notifier is on a panel.
    assert DAEMON_METRICS - {"liqwatch_up"} <= shown
    assert {n.removesuffix("_total") for n in notify_metrics()} <= {
        n.removesuffix("_total") for n in shown
    }


def test_the_dashboard_panels_do_not_overlap_and_use_the_provisioned_source():
    doc = dashboard()
    taken: set[tuple[int, int]] = set()
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    source = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]["uid"]
    for panel in doc["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & taken, panel["title"]
        taken |= cells
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == source
