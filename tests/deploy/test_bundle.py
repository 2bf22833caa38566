"""The shipped deploy/ bundle is wired as an operator would run it (no Docker engine needed):
compose services, Prometheus targets and rules, Alertmanager, Grafana provisioning, systemd."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from monitor.app.config import load_settings
from monitor.app.wiring import BUILDERS
from tests.deploy.bundle import (
    DEPLOY,
    ROLES,
    ROOT,
    compose,
    mounts,
    prometheus_config,
    role_of,
    role_services,
    scrape_targets,
    service_port,
)
from tests.deploy.procs import AMTOOL, PROMTOOL, need

COMPOSE_FILES = [DEPLOY / "compose.yaml", DEPLOY / "compose.gpu.yaml"]


def test_roles_are_the_daemon_builders():
    assert set(ROLES) == set(BUILDERS)


def test_every_role_is_one_compose_service_with_its_own_port_and_readyz_healthcheck():
    services = compose()["services"]
    roles = role_services()
    assert {role_of(s) for s in roles.values()} == set(ROLES)
    assert set(roles) == set(ROLES), "a role's service is named after the role"
    ports = {name: service_port(s) for name, s in roles.items()}
    assert None not in ports.values() and len(set(ports.values())) == len(ports), ports
    for name, s in roles.items():
        check = " ".join(s["healthcheck"]["test"])
        assert "/readyz" in check and "FINSENT_HTTP__PORT" in check, name
        deps = s["depends_on"]
        assert deps["kafka"]["condition"] == "service_healthy", name
        assert s["environment"]["FINSENT_HTTP__HOST"] == "0.0.0.0"
    for name in ("classify", "retrain"):
        assert roles[name]["depends_on"]["model-init"]["condition"] == "service_completed_successfully"
    init = services["model-init"]
    assert init["command"][:3] == ["finsent", "models", "ensure"] and init["restart"] == "no"
    assert "healthcheck" in services["kafka"] and services["kafka"]["image"].startswith("apache/kafka")


def test_every_depends_on_names_a_service_and_healthy_ones_have_a_healthcheck():
    for path in COMPOSE_FILES:
        services = yaml.safe_load(path.read_text())["services"]
        full = compose()["services"]
        for name, s in services.items():
            assert name in full, f"{path.name}: {name} is not a service of compose.yaml"
            for dep, cond in (s.get("depends_on") or {}).items():
                assert dep in full, f"{name} depends on unknown {dep}"
                if cond.get("condition") == "service_healthy":
                    hc = full[dep].get("healthcheck")
                    assert hc and not hc.get("disable"), f"{name} waits for {dep} to be healthy; it has no healthcheck"


def test_every_mounted_file_exists():
    for path in COMPOSE_FILES:
        for name, s in yaml.safe_load(path.read_text())["services"].items():
            for src, _ in mounts(s):
                assert (path.parent / src).exists(), f"{name} mounts {src}, which is not in the repo"


def test_prometheus_scrapes_every_role_service_on_its_port_and_alerts_alertmanager():
    config = prometheus_config()
    services = compose()["services"]
    targets = scrape_targets(config)
    finsent = [(job, host, port) for job, host, port in targets if job.startswith("finsent-")]
    assert {host for _, host, _ in finsent} == set(ROLES)
    for job, host, port in finsent:
        assert job == f"finsent-{host}"
        assert role_of(services[host]) == host and service_port(services[host]) == port, (job, host, port)
    for job in config["scrape_configs"]:
        if job["job_name"].startswith("finsent-"):
            (relabel,) = job["relabel_configs"]
            assert relabel == {"target_label": "role", "replacement": job["job_name"].removeprefix("finsent-")}
    am_targets = [t for a in config["alerting"]["alertmanagers"] for sc in a["static_configs"] for t in sc["targets"]]
    assert am_targets == ["alertmanager:9093"] and "alertmanager" in services
    # the mounted files are what prometheus.yml refers to
    prom_mounts = {Path(c).name: s for s, c in mounts(services["prometheus"])}
    for rule_file in config["rule_files"]:
        assert rule_file in prom_mounts
    # finsent's alertmanager receiver in the compose config points at the same service
    finsent_yaml = yaml.safe_load((DEPLOY / "finsent.compose.yaml").read_text())
    am = finsent_yaml["alerts"]["receivers"][finsent_yaml["alerts"]["default_receiver"]]
    assert am["type"] == "alertmanager" and am["url"] == "http://alertmanager:9093"


def test_alertmanager_routes_to_the_demo_sink():
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    services = compose()["services"]
    urls = [w["url"] for r in config["receivers"] for w in r.get("webhook_configs", [])]
    assert urls and all(u.startswith("http://webhook-sink:") for u in urls)
    port = services["webhook-sink"]["environment"]["HTTP_PORT"]
    assert all(f":{port}/" in u for u in urls)
    labels = prometheus_config()["global"]["external_labels"]
    (ops,) = config["route"]["routes"]
    assert ops["matchers"] == [f'monitor="{labels["monitor"]}"']


def test_grafana_datasource_uids_match_the_dashboards():
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"]
    uids = {d["uid"] for d in ds}
    assert [d["url"] for d in ds] == ["http://prometheus:9090"]
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/finsent.yml").read_text())["providers"][0]
    grafana_mounts = {c: s for s, c in mounts(compose()["services"]["grafana"])}
    assert provider["options"]["path"] in grafana_mounts
    dashboards = sorted((DEPLOY / "grafana/dashboards").glob("*.json"))
    assert {json.loads(p.read_text())["title"] for p in dashboards} >= {
        "finsent Overview",
        "finsent Sentiment",
        "finsent Model",
    }
    for path in dashboards:
        text = path.read_text()
        for panel_uid in {p["datasource"]["uid"] for p in json.loads(text)["panels"] if "datasource" in p}:
            assert panel_uid in uids, f"{path.name}: datasource uid {panel_uid} is not provisioned"


def test_dockerfile_has_cpu_and_cuda_variants():
    text = (DEPLOY / "Dockerfile").read_text()
    assert "ARG TORCH_VARIANT=cpu" in text and "download.pytorch.org/whl/cpu" in text and "cuda)" in text
    assert compose()["x-finsent"]["build"]["args"]["TORCH_VARIANT"] == "${FINSENT_TORCH:-cpu}"


def test_promtool_and_amtool_accept_the_shipped_files():
    need(PROMTOOL, AMTOOL)
    prom = DEPLOY / "prometheus"
    for argv in (
        [PROMTOOL, "check", "config", str(prom / "prometheus.yml")],
        [PROMTOOL, "check", "rules", str(prom / "rules.yml")],
        [AMTOOL, "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml")],
    ):
        out = subprocess.run(argv, capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run([PROMTOOL, "test", "rules", "rules.test.yml"], capture_output=True, text=True, cwd=prom)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


def test_every_alerting_rule_has_a_promtool_unit_test():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    names = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((DEPLOY / "prometheus" / "rules.test.yml").read_text())
    tested = {
        t["alertname"]
        for case in tests["tests"]
        for t in case.get("alert_rule_test", [])
        if any(t.get("exp_alerts") or [])
    }
    assert names == tested, f"rules without a firing unit test: {sorted(names - tested)}"


@pytest.mark.optional_tool
def test_systemd_template_runs_any_role_as_notify_with_a_watchdog(tmp_path: Path):
    unit = (DEPLOY / "systemd" / "finsent@.service").read_text()
    assert "ExecStart=/opt/finsent/.venv/bin/finsent run --stages %i " in unit
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "EnvironmentFile=-/etc/finsent/%i.env" in unit
    assert (DEPLOY / "systemd" / "finsent.env.example").exists()
    analyze = shutil.which("systemd-analyze")
    if analyze is None:  # the unit's text is checked above; systemd's own verifier is a bonus
        pytest.skip("systemd-analyze not available")
    finsent = shutil.which("finsent") or str(Path(__import__("sys").executable).parent / "finsent")
    paths = []
    for name, text in (
        ("finsent-model.service", (DEPLOY / "systemd" / "finsent-model.service").read_text()),
        ("finsent@classify.service", unit),
        ("finsent.service", (DEPLOY / "systemd" / "finsent.service").read_text()),
    ):
        path = tmp_path / name
        path.write_text(text.replace("/opt/finsent/.venv/bin/finsent", finsent))
        paths.append(str(path))
    # together: the role units require finsent-model.service, found beside them
    out = subprocess.run([analyze, "verify", *paths], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_systemd_unit_is_sandboxed_to_an_exposure_of_four_or_less(tmp_path: Path):
    """`systemd-analyze security` rates a unit's sandbox from 0 (locked down) to 10 (exposed);
    the units shipped before issue #29 rated 8.5."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not available")
    units = {
        "finsent@classify.service": "finsent@.service",
        "finsent.service": "finsent.service",
        "finsent-model.service": "finsent-model.service",
    }
    for name, source in units.items():
        path = tmp_path / name
        path.write_text((DEPLOY / "systemd" / source).read_text())
        out = subprocess.run(
            [analyze, "security", "--offline=true", "--no-pager", str(path)], capture_output=True, text=True
        )
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out.stdout + out.stderr)
        assert m, out.stdout + out.stderr
        assert float(m.group(1)) <= 4.0, f"{name}: exposure {m.group(1)}\n{out.stdout}"
    template = (DEPLOY / "systemd" / "finsent@.service").read_text()
    for unit in (template, (DEPLOY / "systemd" / "finsent.service").read_text()):
        assert "After=network-online.target finsent-model.service" in unit and "Requires=finsent-model.service" in unit
        assert "FINSENT_CLASSIFY__FIRST_MODEL=off" in unit  # a unit never trains under its start timeout
    model_unit = (DEPLOY / "systemd" / "finsent-model.service").read_text()
    assert (
        "Type=oneshot" in model_unit
        and "models ensure --profile quick --config /etc/finsent/finsent.yaml" in model_unit
    )
    assert "finsent.example.yaml /etc/finsent/finsent.yaml" in template  # the documented install puts the config file


# -- scaling, tokens, image (issue #29) --------------------------------------------------------
SCALED = ("classify", "aggregate")  # consumer groups: docs/DEPLOY.md, "Scaling"


def published(service: dict) -> list[tuple[str, str]]:
    """(host part, container port) of each published port; host "" when compose picks one."""
    out = []
    for spec in service.get("ports") or []:
        host, _, container = str(spec).rpartition(":")
        out.append((host, container))
    return out


def test_scaled_roles_publish_no_fixed_host_port():
    roles = role_services()
    assert roles["classify"]["deploy"]["replicas"] >= 2
    assert roles["retrain"]["deploy"]["replicas"] == 2  # a standby pair (the retrain lease)
    assert "ports" not in roles["retrain"]  # scraped by DNS service discovery, not a host port
    for name in SCALED:
        for host, container in published(roles[name]):
            first, dash, last = host.partition("-")
            assert host == "" or (dash and int(last) - int(first) >= 1), (
                f"{name} publishes {container} on the fixed host port {host}: a second replica cannot start"
            )
    assert ("9110-9119", "9103") in published(roles["aggregate"])


def test_every_finsent_service_runs_under_an_init_and_gets_the_api_token():
    x = compose()["x-finsent"]
    assert x["init"] is True
    token = x["environment"]["FINSENT_API_TOKEN"]
    assert token.startswith("${FINSENT_API_TOKEN:?"), "compose must refuse to start without a token"
    config = yaml.safe_load((DEPLOY / "finsent.compose.yaml").read_text())
    tokens = config["http"]["auth"]["tokens"]
    assert [t["env"] for t in tokens] == ["FINSENT_API_TOKEN"] and set(tokens[0]["scopes"]) == {"read", "write"}
    for name, s in compose()["services"].items():
        if role_of(s) or name == "model-init":
            assert s["init"] is True and s["environment"]["FINSENT_API_TOKEN"] == token, name


def test_the_compose_config_with_a_token_is_a_valid_finsent_config(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FINSENT_API_TOKEN", "t" * 48)
    settings = load_settings(DEPLOY / "finsent.compose.yaml")
    (token,) = settings.http.auth.tokens
    assert token.name == "operator" and token.reveal() == "t" * 48
    assert settings.http.auth.problems() == []


def test_the_image_installs_dependencies_in_a_layer_of_their_own():
    text = (DEPLOY / "Dockerfile").read_text()
    deps = text.index("pip install -c /tmp/constraints.txt")
    assert (
        deps < text.index("COPY README.md") < text.index("COPY monitor")
        and "pip install --no-deps ." in text[text.index("COPY monitor") :]
    )
    assert text.index("COPY deploy/requirements.lock") < text.index('pip install "torch==$torch"')
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests", "deploy/kafka/libs"} <= set(ignored)


def test_the_cluster_override_runs_three_brokers_and_replicates_three_ways():
    base = compose()["services"]
    over = yaml.safe_load((DEPLOY / "compose.cluster.yaml").read_text())["services"]
    nodes = {name: s for name, s in over.items() if name.startswith("kafka")}
    assert set(nodes) == {"kafka", "kafka-2", "kafka-3"}
    voters = {s["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for s in nodes.values()}
    assert voters == {"1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"}
    assert sorted(s["environment"]["KAFKA_NODE_ID"] for s in nodes.values()) == [1, 2, 3]
    assert {s["environment"]["KAFKA_MIN_INSYNC_REPLICAS"] for s in nodes.values()} == {2}
    for name in (*ROLES, "model-init"):
        env = over[name]["environment"]
        assert name in base
        if name != "model-init":
            assert set(over[name]["depends_on"]) == set(nodes), name  # every broker healthy first
        assert env["FINSENT_KAFKA__REPLICATION_FACTOR"] == "3" and env["FINSENT_KAFKA__MIN_INSYNC_REPLICAS"] == "2"
        assert len(env["FINSENT_KAFKA__BOOTSTRAP"].split(",")) == 3
