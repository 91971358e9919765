"""The ``mugaika`` command.

Exit codes (all subcommands): 0 success; 1 a runtime failure (the message says what);
2 a usage or configuration error (one line naming file, line and key). Subcommand-specific
codes are listed in each subcommand's ``--help``.

Subcommands are contributed by their packages: each ``COMMAND_MODULES`` entry has
``add_commands(subparsers, common)``, where ``common`` is the parent parser with the shared
``--config`` / ``--data-dir`` options.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway import __version__, logs
from gateway.config import Config, load_config
from gateway.errors import ConfigError, MugaikaError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

# Packages that add their own subcommands (quarantine, rules, scan, users, db, admin).
COMMAND_MODULES: tuple[str, ...] = ("gateway.scan", "rules.cli", "quarantine.cli", "gateway.milter")


def common_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="configuration file (YAML); default: built-in defaults",
    )
    parent.add_argument(
        "--data-dir", metavar="DIR", help="where the Maildir, quarantine and state live"
    )
    return parent


DISABLED = ("", "off", "none")


def given(**flags: Any) -> dict[str, Any]:
    """The flags the user actually gave; ``off``/``none``/empty turn an optional listener off."""
    out: dict[str, Any] = {}
    for key, value in flags.items():
        if value is None:
            continue
        out[key] = None if isinstance(value, str) and value.lower() in DISABLED else value
    return out


def config_from_args(args: argparse.Namespace, **flags: Any) -> Config:
    """Load the configuration with the flags every subcommand shares, plus ``flags``."""
    overrides = given(data_dir=getattr(args, "data_dir", None), **flags)
    return load_config(getattr(args, "config", None), overrides=overrides)


def _serve(args: argparse.Namespace) -> int:
    from gateway.server import serve

    overrides = given(
        listen=args.listen,
        downstream=args.downstream,
        data_dir=args.data_dir,
        **{"admin.listen": args.admin_listen, "metrics.listen": args.metrics_listen},
    )
    config = load_config(args.config, overrides=overrides)
    logs.configure(config.logging.level, config.logging.json_lines)
    try:
        asyncio.run(serve(config, args.config, overrides))
    except OSError as exc:
        print(f"mugaika serve: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _config_check(args: argparse.Namespace) -> int:
    config = load_config(args.file, environ={})
    print(
        f"{args.file}: OK (listen {config.listen}, downstream "
        f"{config.downstream or 'embedded Maildir'}, policy {config.policy.name})"
    )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mugaika",
        description="Mugaika email sanitization gateway.",
        epilog="Exit codes: 0 OK, 1 runtime failure, 2 usage or configuration error.",
    )
    parser.add_argument("--version", action="version", version=f"mugaika {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = common_options()

    serve = sub.add_parser("serve", parents=[common], help="run the gateway")
    serve.add_argument("--listen", metavar="HOST:PORT", help="SMTP listener (127.0.0.1:2525)")
    serve.add_argument(
        "--downstream",
        metavar="HOST:PORT",
        help="downstream SMTP server; absent: the embedded Maildir",
    )
    serve.add_argument(
        "--admin-listen",
        metavar="HOST:PORT",
        help="admin web UI and API (127.0.0.1:8025; off disables)",
    )
    serve.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="Prometheus /metrics, /healthz, /readyz (127.0.0.1:9125; off disables)",
    )
    serve.set_defaults(func=_serve)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_sub.add_parser("check", help="validate a configuration file and exit")
    check.add_argument("file", type=Path, metavar="FILE")
    check.set_defaults(func=_config_check)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        for line in exc.messages:
            print(f"mugaika: {line}", file=sys.stderr)
        return EXIT_USAGE
    except MugaikaError as exc:
        print(f"mugaika: {exc.code}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
