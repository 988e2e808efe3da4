"""deploy/ checked statically (no container engine here): the compose file parses with
docker-compose, every file is lint-clean, every RIVERRUN_* variable is a real setting,
ports and probe paths are the worker's, the PrometheusRule carries the shipped rules,
and every file a manifest names exists.

`python -m tests.unit.test_deploy` regenerates deploy/k8s/prometheusrule.yaml.
"""

import os
import re
import shlex
import subprocess
import sys
from typing import Any

import pytest
import yaml

from streams.settings import Settings, env_name
from tests.paths import PROJECT_DIR

DEPLOY = PROJECT_DIR / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKER_COMPOSE = PROJECT_DIR / ".cache" / "docker-compose" / "bin" / "docker-compose"
PORT = Settings.model_fields["metrics_port"].default
API_PORT = Settings.model_fields["api_port"].default
SETTINGS = {env_name(name) for name in Settings.model_fields}
# `${NAME:-default}` in compose.yaml: the demo's value when NAME is unset.
SUBSTITUTION = re.compile(r"\$\{[A-Za-z0-9_]+:-([^}]*)\}")


def k8s_documents() -> dict[str, dict[str, Any]]:
    """kind -> the manifest of that kind, for every resource of the kustomization."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    documents: dict[str, dict[str, Any]] = {}
    for resource in kustomization["resources"]:
        for document in yaml.safe_load_all((K8S / resource).read_text()):
            documents.setdefault(document["kind"], document)  # (the first of each kind)
    return documents


def prometheus_rule() -> str:
    """deploy/k8s/prometheusrule.yaml as generated from deploy/prometheus/rules.yml."""
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    document = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "riverrun"},
        "spec": {"groups": rules["groups"]},
    }
    header = (
        "# Generated from deploy/prometheus/rules.yml, the same groups (tests/unit/test_deploy.py\n"
        "# checks it); regenerate with: python -m tests.unit.test_deploy\n---\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, width=100)


def image_environment() -> dict[str, str]:
    """The ENV of the Dockerfile's final stage: what every container starts with."""
    final = DOCKERFILE.read_text().replace("\\\n", " ").split("\nFROM ")[-1]
    environment: dict[str, str] = {}
    for line in final.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                name, _, value = pair.partition("=")
                environment[name] = value
    return environment


def settings_of(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings of a process whose RIVERRUN_* variables are exactly `environment`."""
    for name in list(os.environ):
        if name.startswith("RIVERRUN_"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_the_compose_file_is_valid_for_docker_compose() -> None:
    assert DOCKER_COMPOSE.exists(), (
        f"{DOCKER_COMPOSE} is missing: run `make test` (or deploy/compose/install.sh), which "
        "installs Debian's docker-compose to validate deploy/compose.yaml"
    )
    done = subprocess.run(
        [str(DOCKER_COMPOSE), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr


def test_deploy_files_are_lint_clean() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "deploy", ".yamllint"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_riverrun_variable_in_deploy_is_a_setting_and_the_literal_values_are_valid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    texts = [COMPOSE.read_text(), DOCKERFILE.read_text()] + [
        path.read_text() for path in K8S.glob("*.yaml")
    ]
    used = {name for text in texts for name in re.findall(r"\bRIVERRUN_[A-Z0-9_]+", text)}
    assert used - SETTINGS == set()
    assert {"RIVERRUN_BROKER", "RIVERRUN_CHECKPOINT_KEY", "RIVERRUN_TRANSACTIONAL_ID"} <= used

    documents = k8s_documents()
    values = {**documents["ConfigMap"]["data"], **documents["Secret"]["stringData"]}
    settings = settings_of(values, monkeypatch)  # every value as the pods get it
    assert settings.security_protocol == "SASL_SSL" and settings.worker_problems() == []


def test_every_container_starts_with_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    image = image_environment()
    assert image["RIVERRUN_METRICS_HOST"] == "0.0.0.0"  # scraped from outside the container

    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in ("worker-1", "worker-2", "replay"):
        environment = {
            key: SUBSTITUTION.sub(r"\1", str(value))
            for key, value in services[name]["environment"].items()
        }
        settings = settings_of({**image, **environment}, monkeypatch)
        assert (settings.broker, settings.topic_partitions) == ("kafka:9092", 2), name
        if name != "replay":  # the workers of one group share the demo's checkpoint key
            assert settings.worker_problems() == [], name

    # A pod: the image's ENV, then the ConfigMap and the Secret, then its own name.
    documents = k8s_documents()
    pod = {
        **image,
        **documents["ConfigMap"]["data"],
        **documents["Secret"]["stringData"],
        "RIVERRUN_TRANSACTIONAL_ID": "riverrun-0",
    }
    settings = settings_of(pod, monkeypatch)
    assert settings.worker_problems() == []
    # The root filesystem is read-only: the data directory must be a volume of the pod.
    spec = documents["StatefulSet"]["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert "emptyDir" in volumes[mounts[str(settings.data_dir)]]
    assert settings.data_dir.is_absolute()


def test_compose_builds_the_image_it_runs_and_keeps_the_brokers_data() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    built = {service["image"] for service in services.values() if "build" in service}
    runners = [name for name, service in services.items() if service.get("image") in built]
    assert len(runners) == 3  # two workers and the replay job
    for name in runners:
        # Compose pulls a service's image when it has no build: a first `up` would fail.
        assert "build" in services[name], f"{name} runs an image it does not build"
    assert "version" not in compose  # obsolete: Compose v2 warns on every command
    kafka = services["kafka"]
    # With any KAFKA_* variable the image drops its default configuration, log.dirs too.
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"]
    assert [v for v in kafka["volumes"] if v.split(":")[1] == log_dirs], kafka["volumes"]


def test_ports_and_probe_paths_are_the_workers() -> None:
    documents = k8s_documents()
    container = documents["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": PORT, "api": API_PORT}
    assert documents["ConfigMap"]["data"]["RIVERRUN_API_PORT"] == str(API_PORT)
    advertised = {e["name"]: e for e in container["env"]}["RIVERRUN_API_ADVERTISED_URL"]
    assert advertised["value"] == f"http://$(RIVERRUN_TRANSACTIONAL_ID).riverrun:{API_PORT}"
    services = [d for d in yaml.safe_load_all((K8S / "service.yaml").read_text())]
    assert {(d["metadata"]["name"], p["port"]) for d in services for p in d["spec"]["ports"]} == {
        ("riverrun", PORT),
        ("riverrun", API_PORT),
        ("riverrun-api", API_PORT),
    }
    assert documents["ConfigMap"]["data"]["RIVERRUN_METRICS_PORT"] == str(PORT)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    endpoint = documents["PodMonitor"]["spec"]["podMetricsEndpoints"][0]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    assert documents["Service"]["spec"]["ports"][0]["port"] == PORT
    env = {e["name"]: e for e in container["env"]}
    assert env["RIVERRUN_TRANSACTIONAL_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.name"
    )

    compose = yaml.safe_load(COMPOSE.read_text())
    for name in ("worker-1", "worker-2"):
        service = compose["services"][name]
        assert service["environment"]["RIVERRUN_METRICS_PORT"] == str(PORT)
        assert service["environment"]["RIVERRUN_API_ADVERTISED_URL"] == f"http://{name}:{API_PORT}"
        assert any(port.endswith(f":{API_PORT}") for port in service["ports"])
        assert any(port.endswith(f":{PORT}") for port in service["ports"])
        assert f"127.0.0.1:{PORT}/readyz" in " ".join(service["healthcheck"]["test"])
    transactional = {
        compose["services"][n]["environment"]["RIVERRUN_TRANSACTIONAL_ID"]
        for n in ("worker-1", "worker-2")
    }
    assert len(transactional) == 2
    scrape = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"worker-1:{PORT}", f"worker-2:{PORT}"]

    dockerfile = DOCKERFILE.read_text()
    assert f"EXPOSE {PORT} {API_PORT}" in dockerfile
    assert f"http://127.0.0.1:{PORT}/healthz" in dockerfile


def test_the_serve_tier_answers_on_its_api_port_and_is_scraped_there() -> None:
    documents = list(yaml.safe_load_all((K8S / "serve.yaml").read_text()))
    kinds = {d["kind"]: d for d in documents}
    assert set(kinds) == {"Deployment", "Service", "PodMonitor"}
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == ["serve"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"api": API_PORT}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "api"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "api"}
    assert [
        e["configMapRef" if "configMapRef" in e else "secretRef"]["name"]
        for e in container["envFrom"]
    ] == ["riverrun", "riverrun"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    component = kinds["Deployment"]["spec"]["selector"]["matchLabels"]
    assert kinds["Service"]["spec"]["selector"] == component
    assert kinds["PodMonitor"]["spec"]["selector"]["matchLabels"] == component
    endpoint = kinds["PodMonitor"]["spec"]["podMetricsEndpoints"][0]
    assert (endpoint["port"], endpoint["path"]) == ("api", "/metrics")


def test_the_prometheus_rule_carries_the_shipped_rules() -> None:
    shipped = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    assert k8s_documents()["PrometheusRule"]["spec"]["groups"] == shipped["groups"]
    assert (K8S / "prometheusrule.yaml").read_text() == prometheus_rule()


def test_every_file_a_manifest_names_exists() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    for service in compose["services"].values():
        build = service.get("build")
        if build:
            context = (DEPLOY / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file()
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (PROJECT_DIR / source).exists(), source
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource


def test_the_image_is_multi_stage_non_root_and_checks_its_health() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    stages = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    assert len(stages) >= 2
    final = lines[stages[-1] :]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any(line.startswith("HEALTHCHECK") for line in final)
    assert 'ENTRYPOINT ["riverrun"]' in final
    assert not [line for line in final if re.search(r"\b(gcc|build-essential|g\+\+)\b", line)]
    assert any(line.startswith("ENV RIVERRUN_APP=") for line in final)


if __name__ == "__main__":
    (K8S / "prometheusrule.yaml").write_text(prometheus_rule())
