"""deploy/compose.yml: valid against the compose specification's schema, and coherent.

No container engine runs here: what can be checked without one is that the
file is what the specification allows, that every file it mounts or builds
from exists, and that each secret a config file reads is mounted into the
service that reads it.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from watcher.notify.config import parse_notify

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMA = json.loads((Path(__file__).parent / "compose-spec.json").read_text())


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yml").read_text())
    return doc


def errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def test_the_compose_file_matches_the_specification():
    assert errors(compose()) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("services", "redis", "restart_policy"), "always"),
        (("services", "liqwatch", "ports"), "9464:9464"),
        (("services", "grafana", "depends_on"), 5),
    ],
)
def test_the_schema_check_catches_a_mistake(path, value):
    doc = copy.deepcopy(compose())
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert errors(doc)


def test_it_runs_every_piece():
    services = compose()["services"]
    assert set(services) == {"redis", "liqwatch", "notify", "prometheus", "alertmanager", "grafana"}
    assert services["liqwatch"]["command"][0] == "run"
    assert services["notify"]["command"][0] == "notify"


def test_redis_runs_with_the_append_only_file():
    redis = compose()["services"]["redis"]
    conf = redis["command"][1]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in redis["volumes"]}
    assert conf in mounted
    text = (DEPLOY / mounted[conf]).read_text()
    assert re.search(r"^appendonly yes$", text, re.M)
    assert "--appendonly" not in redis["command"]  # nothing overrides it


def test_every_mounted_file_and_the_build_exist():
    doc = compose()
    for name, service in doc["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts a missing {source}"
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()


def secrets_read(text: str) -> set[str]:
    """The /run/secrets/<name> files a config names."""
    return set(re.findall(r"/run/secrets/([A-Za-z0-9_.-]+)", text))


def test_each_secret_a_config_reads_is_mounted_where_it_is_read():
    doc = compose()
    services = doc["services"]
    toml = (DEPLOY / "compose" / "liqwatch.toml").read_text()
    alertmanager = (DEPLOY / "alertmanager.yml").read_text()
    assert secrets_read(toml) <= set(services["notify"]["secrets"])
    assert secrets_read(alertmanager) <= set(services["alertmanager"]["secrets"])
    password = services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"]
    assert secrets_read(password) <= set(services["grafana"]["secrets"])
    declared = set(doc["secrets"])
    for service in services.values():
        assert set(service.get("secrets", [])) <= declared


def test_the_notify_table_of_the_compose_config_is_valid(tmp_path):
    toml = (DEPLOY / "compose" / "liqwatch.toml").read_text()
    for name in secrets_read(toml):
        (tmp_path / name).write_text("https://example.com/x" if "url" in name else "k")
    doc = tomllib.loads(toml.replace("/run/secrets/", f"{tmp_path}/"))
    notify = parse_notify(doc)
    assert {s.type.value for s in notify.sinks} == {"slack", "pagerduty", "webhook"}
    assert notify.metrics_listen == ("0.0.0.0", 9465)


def test_prometheus_scrapes_what_compose_exposes():
    services = compose()["services"]
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"][0]
        for job in prometheus["scrape_configs"]
    }
    assert targets == {"liqwatch": "liqwatch:9464", "liqwatch-notify": "notify:9465"}
    for target in targets.values():
        host, port = target.split(":")
        assert port in services[host]["expose"]
    toml = tomllib.loads((DEPLOY / "compose" / "liqwatch.toml").read_text())
    assert toml["metrics"]["listen"].endswith(":9464")
