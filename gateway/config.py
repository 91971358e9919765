"""Gateway configuration: one YAML file, ``MUGAIKA_*`` environment overrides, CLI flags.

Precedence, lowest first: built-in defaults, the YAML file, environment variables, flags.
Every key is validated once, here, by pydantic models with ``extra="forbid"`` (an unknown key
is an error, not a silent no-op) and strict scalars (``yes`` is not a bool, ``"10"`` is not an
int). A problem is reported as one line naming where it came from::

    mugaika.yaml:7: smtp.max_recipients: 'many': Input should be a valid integer
    environment MUGAIKA_SMTP__MAX_RECIPIENTS: smtp.max_recipients: ...

Environment variables name a key path with ``__`` between levels:
``MUGAIKA_SMTP__MAX_RECIPIENTS=20``, ``MUGAIKA_DOWNSTREAM=10.0.0.5:25``. Their values are read
as YAML scalars or flow collections (``[a.lg.jp, b.lg.jp]``).

The documented example with every key and its default is ``deploy/mugaika.example.yaml``;
``tests/gateway/test_config.py`` checks that it validates and matches these defaults.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.errors import ConfigError
from gateway.yamlfile import (
    ExpansionError,
    Loc,
    YamlDocument,
    clean_loc,
    compose_bounded,
    dotted,
    load_yaml,
    validation_messages,
)

ENV_PREFIX = "MUGAIKA_"
# Variables with our prefix that are not configuration keys.
ENV_NOT_CONFIG = frozenset({"MUGAIKA_VENV", "MUGAIKA_CONFIG", "MUGAIKA_TESTING", "MUGAIKA_CORPUS"})

StrictInt = Annotated[int, Strict()]
StrictBool = Annotated[bool, Strict()]
StrictFloat = Annotated[float, Strict(False), Field(allow_inf_nan=False)]


def parse_host_port(value: str) -> tuple[str, int]:
    """``"127.0.0.1:2525"``, ``"[::1]:2525"``, ``"mx.example:25"`` → (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError("expected HOST:PORT")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError("port must be 0..65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("write IPv6 addresses in brackets: [::1]:2525")
    return host, port


def _check_host_port(value: str) -> str:
    parse_host_port(value)
    return value


def _check_domain(value: str) -> str:
    value = value.strip().lower().rstrip(".")
    if not value or " " in value or "@" in value:
        raise ValueError("expected a domain name such as city.example.lg.jp")
    return value


def _check_time_zone(value: str) -> str:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError("expected an IANA time zone such as Asia/Tokyo or UTC") from None
    return value


def _check_clock(value: str) -> str:
    hours, sep, minutes = value.partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError("expected a time of day such as 08:30")
    if not (0 <= int(hours) <= 23 and 0 <= int(minutes) <= 59):
        raise ValueError("expected a time of day such as 08:30")
    return f"{int(hours):02d}:{minutes}"


HostPort = Annotated[str, Strict(), AfterValidator(_check_host_port)]
TimeZone = Annotated[str, Strict(), AfterValidator(_check_time_zone)]
Clock = Annotated[str, Strict(), AfterValidator(_check_clock)]
Domain = Annotated[str, Strict(), AfterValidator(_check_domain)]
Network = Annotated[ipaddress.IPv4Network | ipaddress.IPv6Network, Field()]

LOOPBACK = ["127.0.0.0/8", "::1/128"]


def _loopback() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(network) for network in LOOPBACK]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class TlsConfig(_Model):
    """STARTTLS for inbound sessions."""

    cert: Path | None = None
    key: Path | None = None
    required: StrictBool = False  # refuse MAIL before STARTTLS (RFC 3207 section 4)


class SmtpConfig(_Model):
    """The inbound SMTP server. Limits answer with the precise reply named beside each."""

    hostname: str | None = None  # greeting and Received: by-name; default: this host's FQDN
    max_message_size: StrictInt = Field(50 * 1024 * 1024, ge=1024)  # 552 5.3.4
    max_recipients: StrictInt = Field(100, ge=1)  # 452 4.5.3
    # Octets per line including CRLF; 500 5.5.2 when longer. RFC 5321 section 4.5.3.1.6 says
    # 1000, but real mail exceeds it (12 of the 1,269 corpus mails, e.g. GMX bounces) and
    # Postfix accepts longer lines; every part we rebuild is re-encoded within the limit anyway.
    max_line_length: StrictInt = Field(32768, ge=1000, le=1_048_576)
    max_commands: StrictInt = Field(1000, ge=10)  # per session; 421 4.7.0, then close
    # Commands that do not advance a mail transaction (NOOP, RSET, HELP, VRFY, HELO/EHLO,
    # XFORWARD, refused commands...) since the last completed one; then 421 4.7.0 and close.
    # Postfix in front sends at most four per message (EHLO, two XFORWARD, RSET).
    max_commands_without_progress: StrictInt = Field(20, ge=5)
    # Seconds without a command inside a mail transaction (after MAIL); RFC 5321 4.5.3.2.7.
    idle_timeout: StrictFloat = Field(300.0, gt=0)
    # Seconds without a command outside one (after the greeting, after each message); the
    # shorter of this and idle_timeout. Idle sessions then give their slot back sooner.
    idle_timeout_before_mail: StrictFloat = Field(30.0, gt=0)
    max_sessions: StrictInt = Field(100, ge=1)  # 421 4.3.2 at connect when full
    # Concurrent sessions from one client address (IPv6: one /64); more → 421 4.7.0 at
    # connect. Keep it above Postfix's maxproc for the mugaika transport (10 in deploy/postfix).
    max_sessions_per_client: StrictInt = Field(20, ge=1)
    # Clients allowed to relay to any recipient (Postfix mynetworks).
    permitted_networks: list[Network] = Field(default_factory=_loopback)
    # Recipient domains anyone may send to (Postfix relay_domains); subdomains not included.
    accepted_domains: list[Domain] = Field(default_factory=list)
    # Clients whose XFORWARD attributes are believed (Postfix smtpd_authorized_xforward_hosts).
    xforward_hosts: list[Network] = Field(default_factory=_loopback)
    tls: TlsConfig = TlsConfig()


class DeliveryConfig(_Model):
    """The downstream connection (when ``downstream`` is set)."""

    connect_timeout: StrictFloat = Field(30.0, gt=0)
    command_timeout: StrictFloat = Field(300.0, gt=0)  # RFC 5321 4.5.3.2: 5 min per command
    pool_size: StrictInt = Field(4, ge=0)  # idle connections kept for reuse
    max_reuse: StrictInt = Field(100, ge=1)  # messages per connection before QUIT
    starttls: Literal["off", "opportunistic", "required"] = "opportunistic"
    helo_name: str | None = None  # default: smtp.hostname
    # How the downstream learns the original client: xforward (logged by Postfix as
    # orig_client; its Received: names the gateway) or xclient (Postfix XCLIENT: the
    # downstream's Received:, log and access checks name the internet client; needs
    # smtpd_authorized_xclient_hosts there; one connection per message).
    forward_client: Literal["xforward", "xclient"] = "xforward"


class WorkersConfig(_Model):
    """The content-processing worker processes."""

    count: StrictInt | None = Field(None, ge=1)  # default: one per CPU core
    message_timeout: StrictFloat = Field(120.0, gt=0)  # wall clock per message
    memory_limit_mb: StrictInt = Field(2048, ge=128)  # address space per worker (RLIMIT_AS)
    document_timeout: StrictFloat = Field(30.0, gt=0)  # per attachment sanitizer run
    document_memory_limit_mb: StrictInt = Field(1024, ge=64)
    max_jobs: StrictInt = Field(500, ge=1)  # a worker is replaced after this many messages
    # A message whose worker crashed, hung or ran out of memory: quarantine (the original is
    # held, 250: a message that kills workers is not retried for days) or tempfail (451).
    on_failure: Literal["tempfail", "quarantine"] = "quarantine"


def _check_clamd_address(value: str) -> str:
    kind, _, rest = value.partition(":")
    if kind == "unix" and rest.startswith("/"):
        return value
    if kind == "tcp":
        parse_host_port(rest)
        return value
    raise ValueError("expected unix:/path/to/clamd.ctl or tcp:HOST:PORT")


def _check_icap_url(value: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme != "icap" or not parts.hostname or not parts.path.strip("/"):
        raise ValueError("expected icap://HOST[:PORT]/SERVICE")
    parts.port  # noqa: B018 (raises ValueError for a bad port)
    return value


class AntivirusConfig(_Model):
    """Known-malware scanning of every part and archive member (``gateway/antivirus.py``)."""

    enabled: StrictBool = False
    # clamd's socket (Debian clamav-daemon: unix:/run/clamav/clamd.ctl) or tcp:HOST:PORT;
    # null: no clamd.
    clamd: Annotated[str, Strict(), AfterValidator(_check_clamd_address)] | None = (
        "unix:/run/clamav/clamd.ctl"
    )
    # An ICAP RESPMOD service (commercial engines, c-icap): icap://HOST:PORT/SERVICE; null: none.
    icap: Annotated[str, Strict(), AfterValidator(_check_icap_url)] | None = None
    icap_preview: StrictInt = Field(4096, ge=0, le=1024 * 1024)  # bytes sent before 100/204
    # An engine that cannot answer (down, killed mid-scan, timeout): tempfail (451, the sender
    # retries; nothing is delivered unscanned) or hold (quarantine the message).
    on_unavailable: Literal["tempfail", "hold"] = "tempfail"
    timeout: StrictFloat = Field(30.0, gt=0)  # seconds per object and engine
    # Objects larger than this are not sent (finding VIRUS_SCAN_SKIPPED); keep it at or below
    # clamd's StreamMaxLength.
    max_size: StrictInt = Field(25 * 1024 * 1024, ge=1)


class PolicyConfig(_Model):
    name: str = "lgwan-base"  # a shipped policy or a file in ``dir``
    dir: Path | None = None  # extra policy files; overrides shipped ones of the same name


# --- auth: section (issue 7; owned by gateway/auth.py) ---------------------------------------
def _check_selector(value: str) -> str:
    # RFC 6376 section 3.1: a selector is one or more dot-separated sub-domain labels.
    if not value or not all(
        part and part.replace("-", "").isalnum() and part.isascii() for part in value.split(".")
    ):
        raise ValueError("expected a DKIM selector such as mugaika2025")
    return value


def _check_ip(value: str) -> str:
    ipaddress.ip_address(value)  # ValueError names the problem
    return value


def _check_key_file(value: Path) -> Path:
    try:
        data = value.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read: {exc.strerror}") from None
    if b"PRIVATE KEY-----" not in data:
        raise ValueError("not a PEM private key")
    return value


class SigningKeyConfig(_Model):
    """A private key and the ``d=`` domain and ``s=`` selector it signs for."""

    domain: Domain
    selector: Annotated[str, Strict(), AfterValidator(_check_selector)]
    key_file: Annotated[Path, AfterValidator(_check_key_file)]  # PEM, RSA >= 1024 bits


class AuthConfig(_Model):
    """Sender authentication (SPF, DKIM, DMARC, ARC) and signing."""

    enabled: StrictBool = True
    # RFC 8601 authserv-id of our Authentication-Results; default: smtp.hostname.
    authserv_id: Domain | None = None
    dns_timeout: StrictFloat = Field(5.0, gt=0, le=60)  # seconds per DNS lookup
    spf_lifetime: StrictFloat = Field(20.0, gt=0, le=120)  # RFC 7208 4.6.4: whole SPF check
    dns_cache_size: StrictInt = Field(1024, ge=0)  # answers kept per worker (TTL-bounded)
    # DNS servers to ask (IP addresses); empty: those of /etc/resolv.conf.
    nameservers: list[Annotated[str, Strict(), AfterValidator(_check_ip)]] = Field(
        default_factory=list
    )
    # Their port: 53, unless the resolver listens elsewhere (a local unbound on 5353; tests).
    dns_port: StrictInt = Field(53, ge=1, le=65535)
    arc_seal: SigningKeyConfig | None = None  # ARC-seal delivered mail (RFC 8617); null: off
    # DKIM keys to sign what the gateway rebuilt, chosen by recipient domain (or its nearest
    # parent); read only by the signer process (gateway/signer.py).
    dkim_sign: list[SigningKeyConfig] = Field(default_factory=list)


# --- end of auth: section ---------------------------------------------------------------------


class ReleaseConfig(_Model):
    """How held items leave the quarantine (``quarantine/release.py``)."""

    # single: an admin allowed to release may release an original alone; two_person: one admin
    # requests with a reason and a different approver approves (sanitized copies: always single).
    originals: Literal["single", "two_person"] = "single"
    # A release claimed longer ago than this and never finished (the node died between claim
    # and send) is marked interrupted and returned to "held"; re-releasing it needs --force.
    stale_claim_minutes: StrictInt = Field(15, ge=1)


class QuarantineConfig(_Model):
    # SQLAlchemy URL: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB; default sqlite under
    # data_dir (created and migrated on first start); any other needs `mugaika db upgrade`.
    url: str | None = None
    retain_originals: StrictBool = True  # keep originals of sanitized-and-delivered mail
    retention_days: StrictInt = Field(30, ge=1)  # default; tenants.<domain>.retention_days wins
    # Where message bytes live. auto: files under data_dir/blobs for SQLite, the database's
    # blobs table for PostgreSQL (every node of a cluster must read every blob).
    blobs: Literal["auto", "files", "database"] = "auto"
    purge_interval: StrictFloat = Field(3600.0, ge=1)  # seconds between purges inside `serve`
    release: ReleaseConfig = ReleaseConfig()

    @model_validator(mode="after")
    def _originals_reachable_from_every_node(self) -> QuarantineConfig:
        # A PostgreSQL quarantine is shared by gateway nodes; an original stored as a file
        # would exist on the node that held it only, and die with that node's disk.
        if self.blobs == "files" and (self.url or "").startswith("postgresql"):
            raise ValueError(
                "blobs: files keeps originals on one node's disk, but a PostgreSQL quarantine "
                "is shared by nodes that must all read them: use database (or auto)"
            )
        return self


class HeaderAuthConfig(_Model):
    """Single sign-on by a reverse proxy that authenticates and names the user in a header."""

    header: str | None = None  # e.g. X-Remote-User; null: off (password login only)
    # Only requests from these addresses may assert the header; others are ignored and logged.
    trusted_proxies: list[Network] = Field(default_factory=_loopback)


class AdminConfig(_Model):
    """The admin web UI and the JSON API (``quarantine/web``)."""

    listen: HostPort | None = "127.0.0.1:8025"  # null: no admin UI in `serve`
    language: Literal["ja", "en"] = "ja"  # default UI language (user setting and browser win)
    page_size: StrictInt = Field(50, ge=10, le=500)  # list rows per page
    session_idle_minutes: StrictInt = Field(60, ge=5)  # a session unused this long ends
    session_max_hours: StrictInt = Field(12, ge=1)  # and every session ends after this
    # auto: Secure cookies except over plain http to a loopback address (local testing);
    # always: Secure cookies everywhere (put TLS or a TLS proxy in front).
    cookie_secure: Literal["auto", "always"] = "auto"
    # Failed logins per (user name, client address) within the window, then 429 for that pair
    # only; a client failing for 10x this many names in the window is blocked as a whole.
    login_attempts: StrictInt = Field(5, ge=1)
    login_window_seconds: StrictInt = Field(300, ge=10)
    # Reverse proxies whose X-Forwarded-For names the client (rate limits, audit log); from any
    # other peer the header is ignored. Empty: the TCP peer is the client.
    trusted_proxies: list[Network] = Field(default_factory=list)
    header_auth: HeaderAuthConfig = HeaderAuthConfig()


class MetricsConfig(_Model):
    listen: HostPort | None = "127.0.0.1:9125"  # null: no metrics endpoint


class LoggingConfig(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_lines: StrictBool = Field(False, alias="json")

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, populate_by_name=True
    )


class DigestConfig(_Model):
    """The daily digest of held mail (``quarantine/digest.py``), for tenants that enable it."""

    # Local time (``time_zone``) at which ``serve`` sends it once a day; null: only by
    # ``mugaika digest send``. Several nodes may run ``serve``: one digest per tenant and day.
    send_at: Clock | None = "08:30"
    sender: str | None = None  # envelope and From: address; null: mugaika-digest@smtp.hostname


class RequestsConfig(_Model):
    """Recipients help themselves by mail (``gateway/requests.py``, issue 17): a mail to
    ``address`` from ``internal_networks`` asks for an original (the approval queue) or
    carries the password of a held encrypted archive. Off while ``address`` is null."""

    # The request address every notice names, e.g. mugaika-request@gateway.city.example.lg.jp.
    address: str | None = None
    # Clients on the internal (LGWAN) side whose mail to ``address`` is consumed; from any
    # other client ``address`` is refused at RCPT (550 5.7.1), so it is never relayed.
    internal_networks: list[Network] = Field(default_factory=list)
    language: Literal["ja", "en"] = "ja"  # the replies' language
    # Request mails per requester address within ``window_seconds``; more get no action.
    max_per_address: StrictInt = Field(10, ge=1)
    window_seconds: StrictInt = Field(3600, ge=60)
    # Wrong passwords by request mail before the held archive locks (an admin decides then).
    max_wrong_passwords: StrictInt = Field(5, ge=1, le=100)
    # true: a request is believed only with a DKIM signature that verifies and whose d= is
    # aligned with the From: domain (DMARC relaxed alignment), looked up through auth.nameservers.
    # false (default): LGWAN-side servers often do not sign internal mail, so the internal
    # network, envelope sender == From: and the tenant domain are what is trusted; a signature
    # of the From: domain that fails is refused either way.
    require_dkim: StrictBool = False

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        local, at, domain = value.strip().rpartition("@")
        if not (at and local and domain and value.isascii() and " " not in value):
            raise ValueError("expected an address such as mugaika-request@gateway.example.lg.jp")
        return value.strip().lower()


class TenantDigestConfig(_Model):
    """Per tenant: whether its recipients and admins get the daily digest."""

    enabled: StrictBool = False
    recipients: StrictBool = True  # one mail to each recipient that had mail held
    admins: list[str] = Field(default_factory=list)  # addresses getting the tenant's whole list
    # How to ask for a release, quoted in the digest (e.g. "情報政策課（内線 1234）").
    contact: str = ""


class TenantConfig(_Model):
    """One tenant (a municipality), keyed by its recipient domain in ``tenants``."""

    name: str = ""  # display name, e.g. 〇〇市
    policy: str | None = None  # policy for mail to this domain; default policy.name
    retention_days: StrictInt | None = Field(None, ge=1)  # default quarantine.retention_days
    digest: TenantDigestConfig = TenantDigestConfig()


class Config(_Model):
    """The whole gateway configuration. ``source`` names where it was read from."""

    listen: HostPort = "127.0.0.1:2525"
    downstream: HostPort | None = None  # null: the embedded Maildir under data_dir
    data_dir: Path = Path("mugaika-data")
    # Times are stored in UTC and shown in this zone (admin UI, CLI, notices, digests).
    time_zone: TimeZone = "Asia/Tokyo"
    smtp: SmtpConfig = SmtpConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    workers: WorkersConfig = WorkersConfig()
    antivirus: AntivirusConfig = AntivirusConfig()
    policy: PolicyConfig = PolicyConfig()
    auth: AuthConfig = AuthConfig()
    quarantine: QuarantineConfig = QuarantineConfig()
    admin: AdminConfig = AdminConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    digest: DigestConfig = DigestConfig()
    requests: RequestsConfig = RequestsConfig()
    # Known tenants by recipient domain. Bounds the tenant label of metrics ("other" for the
    # rest) and scopes admins; mail to other domains still flows (relay rules decide that).
    tenants: dict[Domain, TenantConfig] = Field(default_factory=dict)

    @property
    def hostname(self) -> str:
        return self.smtp.hostname or _fqdn()

    @property
    def worker_count(self) -> int:
        return self.workers.count or os.cpu_count() or 1

    @property
    def zone(self) -> datetime.tzinfo:
        """``time_zone`` as a tzinfo (validated at load)."""
        import zoneinfo

        return zoneinfo.ZoneInfo(self.time_zone)

    @property
    def maildir(self) -> Path:
        return self.data_dir / "maildir"

    @property
    def quarantine_url(self) -> str:
        return self.quarantine.url or f"sqlite:///{(self.data_dir / 'quarantine.db').resolve()}"


@functools.cache
def _fqdn() -> str:
    # getfqdn() asks the resolver: once per process, not once per SMTP session.
    return socket.getfqdn()


def _set_path(data: dict[Any, Any], loc: Loc, value: Any) -> None:
    node = data
    for key in loc[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[loc[-1]] = value


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[Loc, Any, str]]:
    out: list[tuple[Loc, Any, str]] = []
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in ENV_NOT_CONFIG:
            continue
        loc = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        try:
            value = compose_bounded(raw)[1] if raw.strip() else None
        except ExpansionError as exc:  # bounded like a file (gateway/yamlfile.py)
            raise ConfigError(f"environment {name}: {exc.problem}") from None
        except yaml.YAMLError:
            value = raw
        out.append((loc, value, f"environment {name}"))
    return out


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the configuration; raise ConfigError with one line per problem.

    ``overrides`` are CLI flags as dotted keys (``{"listen": "0.0.0.0:25"}``); only the flags
    actually given should be passed (None is a value: it disables an optional listener).
    """
    environ = os.environ if environ is None else environ
    if path is None and environ.get("MUGAIKA_CONFIG"):
        path = Path(environ["MUGAIKA_CONFIG"])
    doc = load_yaml(path) if path is not None else YamlDocument(source="(defaults)", data={})
    if not isinstance(doc.data, dict):
        raise ConfigError(f"{doc.source}:1: the top level must be a mapping of keys")
    origins: dict[Loc, str] = {}
    changes = _env_overrides(environ)
    changes += [
        (tuple(key.split(".")), value, f"--{key.replace('_', '-').replace('.', '-')}")
        for key, value in (overrides or {}).items()
    ]
    for loc, value, origin in changes:
        _set_path(doc.data, loc, value)
        origins[loc] = origin
    try:
        return Config.model_validate(doc.data)
    except ValidationError as exc:
        messages = []
        for error, message in zip(exc.errors(), validation_messages(exc, doc), strict=True):
            loc = clean_loc(error["loc"])
            given_by = next((o for k, o in origins.items() if loc[: len(k)] == k), None)
            if given_by is not None:
                # A flag names its key already: "--listen: 'bogus': expected HOST:PORT", not
                # "--listen: listen: 'bogus'" (issue 16); an environment variable keeps it.
                problem = message.split(": ", 2)[-1]
                flag = given_by.startswith("--") and origins.get(loc) == given_by
                message = (
                    f"{given_by}: {problem}" if flag else f"{given_by}: {dotted(loc)}: {problem}"
                )
            messages.append(message)
        more = f" (and {len(messages) - 1} more)" if len(messages) > 1 else ""
        raise ConfigError(messages[0] + more, messages) from None
