"""Configuration: defaults, file/env/flag precedence, and one-line errors naming file and line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import Config, load_config, parse_host_port
from gateway.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "mugaika.example.yaml"


def test_defaults_are_closed_to_the_world_and_local():
    config = load_config(environ={})
    assert config.listen == "127.0.0.1:2525"
    assert config.downstream is None
    assert [str(n) for n in config.smtp.permitted_networks] == ["127.0.0.0/8", "::1/128"]
    assert config.smtp.accepted_domains == []


def test_shipped_example_validates_and_states_the_defaults():
    assert load_config(EXAMPLE, environ={}) == Config()


def test_precedence_file_then_environment_then_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("listen: 0.0.0.0:25\nsmtp:\n  max_recipients: 5\n  max_sessions: 7\n")
    config = load_config(
        path,
        environ={"MUGAIKA_SMTP__MAX_RECIPIENTS": "9", "MUGAIKA_LISTEN": "0.0.0.0:26"},
        overrides={"listen": "127.0.0.1:27", "metrics.listen": None},
    )
    assert config.smtp.max_sessions == 7
    assert config.smtp.max_recipients == 9
    assert config.listen == "127.0.0.1:27"
    assert config.metrics.listen is None


def test_environment_lists_and_nested_keys(tmp_path):
    config = load_config(
        environ={
            "MUGAIKA_SMTP__ACCEPTED_DOMAINS": "[City.LG.JP, b.lg.jp]",
            "MUGAIKA_LOGGING__JSON": "true",
        }
    )
    assert config.smtp.accepted_domains == ["city.lg.jp", "b.lg.jp"]
    assert config.logging.json_lines is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "smtp:\n  max_recipients: many\n",
            "c.yaml:2: smtp.max_recipients: 'many': Input should be a valid integer",
        ),
        ("smtp:\n  bogus: 1\n", "c.yaml:2: smtp.bogus: unknown key"),
        ("listen: 1.2.3.4\n", "c.yaml:1: listen: '1.2.3.4': expected HOST:PORT"),
        (
            "workers:\n  on_failure: drop\n",
            "c.yaml:2: workers.on_failure: 'drop': Input should be 'tempfail' or 'quarantine'",
        ),
        (
            "smtp:\n  max_recipients: '10'\n",
            "c.yaml:2: smtp.max_recipients: '10': Input should be a valid integer",
        ),
        ("smtp: [\n", "c.yaml:2: invalid YAML"),
        ("- a\n- b\n", "c.yaml:1: the top level must be a mapping of keys"),
    ],
)
def test_errors_name_file_line_key_and_problem(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value).replace(str(tmp_path) + "/", "").startswith(message)


def test_errors_from_environment_name_the_variable():
    with pytest.raises(
        ConfigError, match=r"^environment MUGAIKA_SMTP__MAX_SESSIONS: smtp.max_sessions: 'x'"
    ):
        load_config(environ={"MUGAIKA_SMTP__MAX_SESSIONS": "x"})
    with pytest.raises(ConfigError, match=r"^environment MUGAIKA_NOPE: nope: unknown key$"):
        load_config(environ={"MUGAIKA_NOPE": "1"})


def test_missing_file_is_an_error_not_defaults(tmp_path):
    with pytest.raises(ConfigError, match=r"nothere\.yaml: file not found"):
        load_config(tmp_path / "nothere.yaml", environ={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:25", ("127.0.0.1", 25)),
        ("[::1]:2525", ("::1", 2525)),
        ("mx.lg.jp:0", ("mx.lg.jp", 0)),
    ],
)
def test_host_port(text, expected):
    assert parse_host_port(text) == expected


def test_cli_config_check_exit_codes_and_one_line_errors(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("listen: 127.0.0.1:2600\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: 127.0.0.1:2600\nsmtp:\n  max_sessions: -1\n")
    ok = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "config", "check", str(good)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert ok.returncode == 0
    assert "OK" in ok.stdout
    failed = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "config", "check", str(bad)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert failed.returncode == 2
    assert failed.stderr == (
        f"mugaika: {bad}:3: smtp.max_sessions: -1: Input should be greater than or equal to 1\n"
    )
    assert "Traceback" not in failed.stderr


def test_serve_with_a_bad_file_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("downstream: nowhere\n")
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(bad)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == f"mugaika: {bad}:1: downstream: 'nowhere': expected HOST:PORT\n"


def _model_paths(model: type, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    from pydantic import BaseModel

    paths = set()
    for name, field in model.model_fields.items():
        key = field.alias or name
        path = (*prefix, key)
        paths.add(path)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths |= _model_paths(annotation, path)
    return paths


def _yaml_paths(data: object, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    paths = set()
    if isinstance(data, dict):
        for key, value in data.items():
            paths.add((*prefix, key))
            paths |= _yaml_paths(value, (*prefix, key))
    return paths


def test_shipped_example_documents_every_key():
    import yaml

    documented = _yaml_paths(yaml.safe_load(EXAMPLE.read_text()))
    missing = sorted(".".join(p) for p in _model_paths(Config) - documented)
    # tenants.<domain> keys are shown in a comment (a mapping keyed by domain).
    assert missing == []
