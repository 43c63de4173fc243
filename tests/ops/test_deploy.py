"""The deployment files: docker-compose.yml through a real compose parser, the Kubernetes
manifests' structure, and the Dockerfile's promises. (No Docker engine runs here: nothing is
built or started; see README.)"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from telex.cli import _parser
from telex.config import load
from telex.kafka import required_topics
from telex.notifier.service import notifier_topics
from tests.conftest import ROOT
from tests.kafka_cluster import DURABILITY, NODES, kafka_version

TELEX_SERVICES = ("poller", "processor", "gateway", "notifier")
KAFKA_NODES = tuple(f"kafka-{n}" for n in range(1, NODES + 1))
BOOTSTRAP = ",".join(f"{node}:9092" for node in KAFKA_NODES)


def telex_commands() -> set[str]:
    sub = next(a for a in _parser()._actions if a.dest == "command")
    assert isinstance(sub.choices, dict)
    return set(sub.choices)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose missing: `make test` installs it (scripts/system-deps.sh)"
    result = subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = yaml.safe_load(result.stdout)
    return parsed


def test_compose_runs_kafka_in_kraft_mode_and_every_stage(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for node in KAFKA_NODES:
        assert services[node]["image"].startswith("apache/kafka:")
        assert "controller" in services[node]["environment"]["KAFKA_PROCESS_ROLES"]
    commands = telex_commands()
    for name in TELEX_SERVICES:
        service = services[name]
        assert service["command"][0] == name
        assert service["command"][0] in commands
        assert service["environment"]["TELEX_KAFKA_BOOTSTRAP"] == BOOTSTRAP
        assert service["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
        # Scalable with --scale: no fixed container name, no single fixed host port.
        assert "container_name" not in service
    assert services["replay"]["command"][0] in commands
    assert {"prometheus", "grafana"} <= set(services)


def test_compose_runs_the_kafka_version_the_tests_run(compose: dict[str, Any]) -> None:
    # The suite's cluster runs the broker the pom pins; the compose file must ship the same.
    version = kafka_version()
    for name in (*KAFKA_NODES, "kafka-init"):
        assert compose["services"][name]["image"] == f"apache/kafka:{version}", name
    text = (ROOT / "docker-compose.yml").read_text()
    assert text.count("apache/kafka:") == text.count(f"apache/kafka:{version}")


def test_compose_cluster_has_the_settings_the_tests_run(compose: dict[str, Any]) -> None:
    # The suite's cluster (tests/kafka_cluster.py): as many combined nodes, the same
    # replication and min.insync.replicas; and the topics made with them.
    services = compose["services"]
    nodes = [n for n, s in services.items() if s.get("image", "").startswith("apache/kafka:")]
    assert sorted(nodes) == sorted([*KAFKA_NODES, "kafka-init"])
    voters = {s["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for n, s in services.items()
              if n in KAFKA_NODES}  # fmt: skip
    assert voters == {",".join(f"{n + 1}@{node}:9093" for n, node in enumerate(KAFKA_NODES))}
    for node in KAFKA_NODES:
        env = services[node]["environment"]
        given = {
            k[6:].lower().replace("_", "."): str(v) for k, v in env.items() if k[:6] == "KAFKA_"
        }
        for setting, value in DURABILITY.items():
            assert given.get(setting) == str(value), f"{node}: {setting}"
        assert given["process.roles"] == "broker,controller", node
    init = services["kafka-init"]["environment"]
    assert init["BOOTSTRAP"] == BOOTSTRAP
    assert init["REPLICATION"] == str(DURABILITY["default.replication.factor"])
    assert init["MIN_INSYNC_REPLICAS"] == str(DURABILITY["min.insync.replicas"])
    script = "\n".join(services["kafka-init"]["command"])
    assert '--replication-factor "$$REPLICATION"' in script
    assert '--config min.insync.replicas="$$MIN_INSYNC_REPLICAS"' in script


def test_compose_creates_every_topic_with_its_policy(compose: dict[str, Any]) -> None:
    script = "\n".join(compose["services"]["kafka-init"]["command"])
    line = re.compile(r"^\s*create (?P<topic>\S+) (?:\S+) (?P<policy>delete|compact)\s*$", re.M)
    created = {m["topic"]: m["policy"] for m in line.finditer(script)}
    config = load(ROOT / "deploy/compose/telex.toml", {})
    for spec in [*required_topics(config.topics), *notifier_topics(config)]:
        assert spec.name in created, f"kafka-init does not create {spec.name}"
        assert created[spec.name] == ("compact" if spec.compact else "delete"), spec.name


def test_compose_config_file_is_valid_telex_config() -> None:
    config = load(ROOT / "deploy/compose/telex.toml", {"TELEX_KAFKA_BOOTSTRAP": "kafka:9092"})
    assert config.sources and config.topics.partitions == 6


def test_prometheus_and_grafana_files_exist_and_parse(compose: dict[str, Any]) -> None:
    for service in ("prometheus", "grafana"):
        for volume in compose["services"][service]["volumes"]:
            # docker-compose v1 prints "source:target[:mode]"; v2 prints a mapping.
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if "/" in source:  # a bind mount, not a named volume
                assert (ROOT / source).exists(), source
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    names = prometheus["scrape_configs"][0]["dns_sd_configs"][0]["names"]
    assert set(TELEX_SERVICES) <= set(names)


def k8s_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((ROOT / "deploy/k8s").glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def test_k8s_deployments_have_probes_resources_and_valid_commands() -> None:
    docs = k8s_documents()
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert {f"telex-{s}" for s in TELEX_SERVICES} <= set(deployments)
    commands = telex_commands()
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    for name, deployment in deployments.items():
        spec = deployment["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        (container,) = spec["containers"]
        assert container["args"][0] in commands, name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert name in services, f"{name} has no Service"
        labels = deployment["spec"]["selector"]["matchLabels"]
        assert labels.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_k8s_gateway_has_a_disruption_budget_and_time_to_drain() -> None:
    docs = k8s_documents()
    (pdb,) = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "telex-gateway"
    gateway = next(d for d in docs if d["metadata"]["name"] == "telex-gateway")
    grace = gateway["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= 45  # the drain paces reconnects over tens of seconds at most.


def test_dockerfile_is_slim_non_root_with_healthcheck() -> None:
    text = (ROOT / "deploy/Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    final = stages[-1]
    assert final.startswith("python:3.11-slim")
    assert re.search(r"^USER telex$", final, re.M)
    assert "HEALTHCHECK" in final and "/healthz" in final
    assert not re.search(r"apt-get|gcc|build-essential", final)
    assert re.search(r'^ENTRYPOINT \["telex"\]$', final, re.M)
