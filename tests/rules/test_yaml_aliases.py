"""YAML alias bombs and recursive aliases in configuration and policy files (issue 11).

A "billion laughs" document is a few hundred bytes whose aliases expand to hundreds of millions
of nodes: before the loader bounded expansion, a 9x9 bomb took ``mugaika config check`` to
6.5 GB, and an alias inside its own anchor ended in a RecursionError traceback. Each program
here runs as a real subprocess under an address-space limit (RLIMIT_AS), so a regression dies
quickly with MemoryError instead of eating the machine, and fails the test.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.yamlfile import MAX_YAML_NODES, parse_yaml
from rules.loader import load_policies
from tests.helpers.process import GatewayProcess

REPO = Path(__file__).resolve().parents[2]
# Address space for the child: ample for the interpreter, pydantic and the policies (about
# 300 MB when measured), far below what one level of a 9x9 bomb needs.
MEMORY_LIMIT = 1024 * 1024 * 1024


def bomb(levels: int = 9, width: int = 9, key: str = "lol") -> str:
    """A document with ``width ** levels`` leaves behind ``levels`` anchors; the last line
    holds the alias that expands everything."""
    lines = [f"{key}0: &{key}0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        refs = ", ".join([f"*{key}{level - 1}"] * width)
        lines.append(f"{key}{level}: &{key}{level} [{refs}]")
    return "\n".join(lines) + "\n"


def limited() -> Callable[[], None]:
    def apply() -> None:
        # Only the soft limit: the gateway's workers set their own (lower or higher) limits.
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, hard))

    return apply


def mugaika(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUGAIKA_")}
    env["MALLOC_ARENA_MAX"] = "2"
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=timeout,
        preexec_fn=limited(),
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    assert "MemoryError" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_config_check_refuses_a_9x9_alias_bomb_quickly(tmp_path: Path) -> None:
    config = tmp_path / "mugaika.yaml"
    config.write_text("listen: 127.0.0.1:2525\n" + bomb(), encoding="utf-8")
    line = one_line_error(mugaika("config", "check", str(config)))
    # Line 7 (lol5: nine aliases of lol4, 65,000 nodes each) is where expansion passes the
    # bound; nothing after it is composed.
    assert line.startswith(f"mugaika: {config}:7: invalid YAML: alias *lol4 "), line
    assert f"more than {MAX_YAML_NODES:,} nodes" in line


def test_config_check_refuses_a_recursive_alias(tmp_path: Path) -> None:
    config = tmp_path / "mugaika.yaml"
    config.write_text("listen: 127.0.0.1:2525\ntenants: &t\n  x.lg.jp: *t\n", encoding="utf-8")
    line = one_line_error(mugaika("config", "check", str(config)))
    assert line.startswith(f"mugaika: {config}:3: "), line
    assert "alias *t refers to a node that contains it" in line


def test_rules_check_refuses_a_bomb_in_a_policy(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "city.yaml").write_text(
        "extends: lgwan-base\ndescription: x\n" + bomb(key="x"), encoding="utf-8"
    )
    result = mugaika("rules", "check", str(policies))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    output = (result.stdout + result.stderr).strip()
    assert f"{policies / 'city.yaml'}:8: invalid YAML: alias *x4 " in output, output


def test_a_recursive_alias_in_a_policy_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "city.yaml").write_text(
        "extends: lgwan-base\nrules:\n  - &r\n    name: loop\n    when: {any: [*r]}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"city\.yaml:5: .*alias \*r refers to a node"):
        load_policies(tmp_path)


def test_legitimate_anchors_and_merge_keys_still_load(tmp_path: Path) -> None:
    config = tmp_path / "mugaika.yaml"
    config.write_text(
        "tenant_defaults: &defaults\n  retention_days: 90\n"
        "tenants:\n"
        "  a.example.lg.jp: {<<: *defaults, name: A}\n"
        "  b.example.lg.jp: {<<: *defaults, name: B}\n",
        encoding="utf-8",
    )
    # tenant_defaults is not a configuration key: the anchors load, validation names it.
    with pytest.raises(ConfigError, match=r"mugaika\.yaml:1: tenant_defaults: unknown key"):
        load_config(config, environ={})
    config.write_text(
        "tenants:\n  a.example.lg.jp: &a {retention_days: 90, name: A}\n  b.example.lg.jp: *a\n",
        encoding="utf-8",
    )
    loaded = load_config(config, environ={})
    assert loaded.tenants["b.example.lg.jp"].retention_days == 90


def test_the_bound_counts_expanded_nodes_not_bytes() -> None:
    # 3 levels of 9 stay far below the bound; 6 levels (531,441 leaves) pass it.
    small = parse_yaml(bomb(levels=3), "small.yaml")
    assert len(small.data["lol2"]) == 9
    with pytest.raises(ConfigError, match=r"^big\.yaml:6: .*alias \*lol4"):
        parse_yaml(bomb(levels=6), "big.yaml")


def test_environment_values_are_bounded_too() -> None:
    flow = "{a: &a [x, x, x, x, x, x, x, x, x], b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a],"
    for level in "cdefgh":
        previous = chr(ord(level) - 1)
        flow += f" {level}: &{level} [{', '.join([f'*{previous}'] * 9)}],"
    flow += " i: [*h, *h, *h, *h, *h, *h, *h, *h, *h]}"
    with pytest.raises(ConfigError, match=r"environment MUGAIKA_TENANTS: .*more than"):
        load_config(None, environ={"MUGAIKA_TENANTS": flow})


@pytest.mark.slow
def test_sighup_with_a_bomb_keeps_the_running_configuration(tmp_path: Path) -> None:
    config = tmp_path / "mugaika.yaml"
    config.write_text("smtp:\n  max_recipients: 7\n", encoding="utf-8")
    with GatewayProcess(
        "--config",
        str(config),
        "--data-dir",
        str(tmp_path / "data"),
        env={"MALLOC_ARENA_MAX": "2"},
    ) as gateway:
        assert gateway.process is not None
        # Bound the running gateway's main process from the outside (prlimit(2)).
        _soft, hard = resource.prlimit(gateway.process.pid, resource.RLIMIT_AS)
        resource.prlimit(gateway.process.pid, resource.RLIMIT_AS, (3 * MEMORY_LIMIT, hard))
        config.write_text("smtp:\n  max_recipients: 7\n" + bomb(), encoding="utf-8")
        gateway.signal(signal.SIGHUP)
        assert gateway.wait_for_output("reload failed; keeping the running configuration")
        assert f"{config}:8: invalid YAML: alias *lol4 " in gateway.output()
        assert "Traceback" not in gateway.output()
        assert gateway.process.poll() is None
        # Still serving SMTP with the old configuration.
        import smtplib

        with smtplib.SMTP("127.0.0.1", gateway.port, timeout=30) as client:
            assert client.noop()[0] == 250
