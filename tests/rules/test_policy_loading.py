"""Loading policies: shipped ones, validation errors with file:line:key, inheritance, reload."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest
from policy_helpers import TENANT, TENANTS, decide, envelope, headers, report

from gateway.config import Config, PolicyConfig, TenantConfig
from gateway.errors import ConfigError
from gateway.report import Verdict
from gateway.sanitizers.base import CONTENT_CLASSES
from rules import schema
from rules.engine import PolicySet
from rules.loader import SHIPPED_DIR, load_policies, reload_policies


def test_attachment_actions_name_exactly_the_content_classes() -> None:
    assert tuple(schema.AttachmentActions.model_fields) == CONTENT_CLASSES
    schema.check_classes_match()


def test_shipped_policies_load_and_name_their_files() -> None:
    policy_set = load_policies(None)
    assert policy_set.names() == ("internet-light", "lgwan-base", "strip-all")
    assert policy_set.default == "lgwan-base"
    strip_all = policy_set.policies["strip-all"]
    assert strip_all.sources == (
        str(SHIPPED_DIR / "lgwan-base.yaml"),
        str(SHIPPED_DIR / "strip-all.yaml"),
    )


def test_base_policy_implements_the_ministry_guideline() -> None:
    settings = load_policies(None).policies["lgwan-base"].settings
    actions = dict(settings.attachments)
    assert settings.html == "to-text"
    assert settings.urls.mode == "defang"
    for document in ("pdf", "ooxml", "ole", "rtf", "opendocument"):
        assert actions[document] == "rebuild"
    assert actions["encrypted_archive"] == "quarantine"
    assert actions["executable"] == "quarantine"
    assert actions["script"] == "quarantine"
    assert actions["unknown"] == "strip"
    assert settings.on_sanitize_failure == "quarantine"
    assert settings.action_for("no-such-class") == "strip"


def test_strip_all_strips_everything_and_internet_light_is_lighter() -> None:
    policies = load_policies(None).policies
    strip_all = dict(policies["strip-all"].settings.attachments)
    assert {a for c, a in strip_all.items()} <= {"strip", "quarantine"}
    assert all(strip_all[c] == "strip" for c in ("pdf", "ooxml", "image", "text", "message"))
    light = policies["internet-light"].settings
    assert light.html == "sanitize"
    assert light.urls.mode == "keep"
    assert dict(light.attachments)["executable"] == "quarantine"  # still held
    # Inherited rules: the spoofing rules apply to every shipped policy.
    for policy in policies.values():
        assert "spoofed-internal-from" in [r.name for r in policy.rules]


def test_settings_give_sanitize_options_with_member_actions() -> None:
    settings = load_policies(None).policies["lgwan-base"].settings
    options = settings.sanitize_options("pdf")
    assert options.mode == "rebuild"
    assert options.rasterize_dpi == 150
    assert options.archive_max_total_size == 256 * 1024 * 1024
    assert options.member_action("executable") == "quarantine"
    assert settings.sanitize_options("executable").mode == "rebuild"  # never "quarantine"


def test_documented_defaults_equal_the_schema_defaults() -> None:
    """lgwan-base.yaml lists every settings key with its default: keep it honest."""
    import yaml

    data = yaml.safe_load((SHIPPED_DIR / "lgwan-base.yaml").read_text(encoding="utf-8"))
    written = schema.PolicyFile.model_validate(data).model_dump(
        by_alias=True, exclude={"rules", "description", "extends"}
    )
    assert written == schema.dump_defaults()
    assert set(data) - {"rules", "description"} == set(schema.dump_defaults())


# --- errors ------------------------------------------------------------------------------


def _errors(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_policies(directory)
    return info.value.messages


def test_wrong_action_names_file_line_and_key(policy_dir: Callable[..., Path]) -> None:
    directory = policy_dir(
        city_a="""\
        extends: lgwan-base
        attachments:
          pdf: rebiuld
        rules:
          - name: x
            when: {subject: {contains: [a]}}
            action: quarantin
        """
    )
    messages = _errors(directory)
    path = directory / "city-a.yaml"
    assert f"{path}:3: attachments.pdf: 'rebiuld': Input should be" in messages[0]
    assert messages[1].startswith(f"{path}:7: rules[0].action: 'quarantin': Input should be")
    assert len(messages) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("colour: red\n", ":1: colour: unknown key"),
        ("attachments:\n  pdf: keep\n", ":2: attachments.pdf: 'keep'"),
        ("on_sanitize_failure: keep\n", ":1: on_sanitize_failure: 'keep'"),
        ("attachments:\n  executable: rebuild\n", ":2: attachments.executable: 'rebuild'"),
        ("urls:\n  mailto: 'yes'\n", ":2: urls.mailto: 'yes': Input should be a valid boolean"),
        ("limits:\n  max_depth: 0\n", ":2: limits.max_depth: 0: Input should be greater"),
        (
            "rules:\n  - name: r\n    when: {subject: {regex: '(['}}\n    action: tag\n",
            ":3: rules[0].when.subject.regex: '([': invalid regular expression",
        ),
        (
            "rules:\n  - name: Bad Name\n    when: {size: {over: 1}}\n    action: tag\n",
            ":2: rules[0].name: 'Bad Name': expected a kebab-case name",
        ),
        (
            "rules:\n  - name: r\n    when: {}\n    action: tag\n",
            ":3: rules[0].when: an empty condition would match every message",
        ),
        (
            "rules:\n  - name: r\n    when: {finding: [macro]}\n    action: tag\n",
            ":3: rules[0].when.finding[0]: 'macro': expected a finding code",
        ),
        (
            "rules:\n  - name: r\n    when: {size: {over: 1}}\n    action: skip-sanitizer\n"
            "    skip: [pdf]\n",
            ":2: rules[0]: skip-sanitizer needs trusted_domains",
        ),
        (
            "rules:\n  - name: r\n    when: {size: {over: 1}}\n    action: skip-sanitizer\n"
            "    skip: [executable]\n    trusted_domains: [partner.example]\n",
            ":2: rules[0]: unknown, executable and script can never be skipped",
        ),
        (
            "rules:\n  - name: r\n    when: {size: {over: 1}}\n    action: quarantine\n"
            "    reject_text: go away\n",
            ":2: rules[0]: reject_text is only for action reject",
        ),
        (
            "rules:\n  - name: r\n    when: {size: {over: 1}}\n    action: reject\n"
            '    reject_text: "\\u65e5"\n',
            ":5: rules[0].reject_text: '日': expected 1-200 printable ASCII characters",
        ),
        (
            "rules:\n  - name: r\n    when: {size: {over: 1}}\n    action: tag\n"
            "  - name: r\n    when: {size: {over: 2}}\n    action: tag\n",
            ":1: rules: rule name 'r' is used twice",
        ),
        ("attachments: [pdf]\n", ":1: attachments: Input should be"),
        (
            "rules:\n  - name: r\n    when: {client: {networks: [300.1.1.1/8]}}\n    action: tag\n",
            ":3: rules[0].when.client: '300.1.1.1/8'",
        ),
    ],
)
def test_each_error_names_its_line_and_key(
    policy_dir: Callable[..., Path], text: str, expected: str
) -> None:
    directory = policy_dir(city_a=text)
    messages = _errors(directory)
    assert any(m.startswith(f"{directory / 'city-a.yaml'}{expected}") for m in messages), messages


def test_yaml_syntax_error_names_the_line(policy_dir: Callable[..., Path]) -> None:
    directory = policy_dir(city_a="attachments:\n  pdf: rebuild\n  ole: [strip\n")
    messages = _errors(directory)
    assert messages[0].startswith(f"{directory / 'city-a.yaml'}:")
    assert "invalid YAML" in messages[0]


def test_every_broken_file_is_reported_not_only_the_first(policy_dir: Callable[..., Path]) -> None:
    directory = policy_dir(a="html: text\n", b="urls: {mode: hide}\n", c="extends: lgwan-base\n")
    messages = _errors(directory)
    assert any(m.startswith(f"{directory / 'a.yaml'}:1: html:") for m in messages)
    assert any(m.startswith(f"{directory / 'b.yaml'}:1: urls.mode:") for m in messages)
    assert not any("c.yaml" in m for m in messages)


def test_unknown_parent_and_loops_are_errors(policy_dir: Callable[..., Path]) -> None:
    directory = policy_dir(a="extends: nope\n", b="extends: c\n", c="\n\nextends: b\n")
    messages = _errors(directory)
    assert any(
        m.startswith(f"{directory / 'a.yaml'}:1: extends: 'nope': no such policy") for m in messages
    )
    assert any("inheritance loop" in m for m in messages)


def test_file_name_must_be_a_policy_name(tmp_path: Path) -> None:
    (tmp_path / "City A.yaml").write_text("html: to-text\n")
    assert "kebab-case" in _errors(tmp_path)[0]


def test_missing_directory_and_unknown_default_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="policy directory not found"):
        load_policies(tmp_path / "absent")
    with pytest.raises(ConfigError, match="'nosuch': no such policy"):
        load_policies(None, default="nosuch")


# --- inheritance -------------------------------------------------------------------------


def test_child_changes_only_what_it_names(policy_dir: Callable[..., Path]) -> None:
    directory = policy_dir(
        city_a="""\
        extends: lgwan-base
        attachments: {pdf: rasterize}
        urls: {allow_domains: [city.example.lg.jp]}
        """
    )
    policies = load_policies(directory).policies
    child, base = policies["city-a"].settings, policies["lgwan-base"].settings
    assert dict(child.attachments)["pdf"] == "rasterize"
    assert dict(child.attachments)["ooxml"] == dict(base.attachments)["ooxml"]
    assert child.urls.allow_domains == ("city.example.lg.jp",)
    assert child.urls.mode == "defang"  # inherited from the mapping it merged into
    assert [r.name for r in policies["city-a"].rules] == [
        r.name for r in policies["lgwan-base"].rules
    ]


def test_rules_merge_by_name_and_new_ones_append(policy_dir: Callable[..., Path]) -> None:
    directory = policy_dir(
        city_a="""\
        extends: lgwan-base
        rules:
          - name: lookalike-sender-domain
            mode: monitor
          - name: display-name-other-address
            enabled: false
          - name: big-mail
            when: {size: {over: 10 MiB}}
            action: tag
        """
    )
    policy = load_policies(directory).policies["city-a"]
    names = [r.name for r in policy.rules]
    assert "display-name-other-address" not in names
    assert names[-1] == "big-mail"
    lookalike = next(r for r in policy.rules if r.name == "lookalike-sender-domain")
    assert lookalike.mode == "monitor"
    assert lookalike.action == "quarantine"  # the parent's keys stay
    assert names.index("lookalike-sender-domain") < names.index("dmarc-policy-fail")


def test_three_level_chain_and_errors_point_at_the_file_that_wrote_the_value(
    policy_dir: Callable[..., Path],
) -> None:
    directory = policy_dir(
        region="extends: lgwan-base\nhtml: sanitize\nsanitize: {rasterize_dpi: 100}\n",
        city="extends: region\nsanitize:\n  rasterize_dpi: 120\n",
    )
    policy = load_policies(directory).policies["city"]
    assert policy.settings.html == "sanitize"
    assert policy.settings.rasterize_dpi == 120
    assert len(policy.sources) == 3
    (directory / "region.yaml").write_text("extends: lgwan-base\n\nhtml: sanitise\n")
    messages = _errors(directory)
    # The bad value is in region.yaml: reported there, once, though city inherits it.
    assert messages == [
        f"{directory / 'region.yaml'}:3: html: 'sanitise': Input should be 'to-text' or 'sanitize'"
    ]


def test_local_file_may_refine_the_shipped_policy_of_its_own_name(
    policy_dir: Callable[..., Path],
) -> None:
    directory = policy_dir(lgwan_base="extends: lgwan-base\nattachments: {image: strip}\n")
    policies = load_policies(directory).policies
    base = policies["lgwan-base"]
    assert dict(base.settings.attachments)["image"] == "strip"
    assert dict(base.settings.attachments)["pdf"] == "rebuild"
    # The shipped children now build on the refined policy.
    assert dict(policies["internet-light"].settings.attachments)["image"] == "strip"


# --- choosing a policy per recipient ------------------------------------------------------


def test_tenant_policy_default_and_strictest_for_mixed_recipients() -> None:
    policy_set = load_policies(None)
    tenants = {
        "a.example.lg.jp": TenantConfig(policy="strip-all"),
        "b.example.lg.jp": TenantConfig(policy="internet-light"),
    }
    assert policy_set.for_recipients(["a.example.lg.jp"], tenants).name == "strip-all"
    assert policy_set.for_recipients(["B.example.lg.jp."], tenants).name == "internet-light"
    assert policy_set.for_recipients(["elsewhere.example"], tenants).name == "lgwan-base"
    assert policy_set.for_recipients([], tenants).name == "lgwan-base"

    mixed = policy_set.for_recipients(["a.example.lg.jp", "b.example.lg.jp"], tenants)
    assert mixed.name == "strictest(internet-light+strip-all)"
    actions = dict(mixed.settings.attachments)
    assert actions["pdf"] == "strip"  # strip-all's
    assert actions["other_archive"] == "quarantine"  # internet-light's is stricter here
    assert mixed.settings.html == "to-text"
    assert mixed.settings.urls.mode == "remove"
    assert mixed.settings.urls.mailto is False
    assert mixed.settings.signed == "deliver-modified"
    assert mixed.internal_domains == frozenset(tenants)
    # Inherited rules appear once.
    names = [r.name for r in mixed.rules]
    assert len(names) == len(set(names))


def test_strictest_combination_keeps_every_rule(policy_dir: Callable[..., Path]) -> None:
    directory = policy_dir(
        a="extends: lgwan-base\nrules:\n  - name: only-a\n    when: {subject: {contains: [a]}}\n"
        "    action: quarantine\n",
        b="extends: lgwan-base\nrules:\n  - name: only-b\n    when: {subject: {contains: [b]}}\n"
        "    action: reject\n",
    )
    tenants = {"a.example": TenantConfig(policy="a"), "b.example": TenantConfig(policy="b")}
    mixed = load_policies(directory).for_recipients(["a.example", "b.example"], tenants)
    names = [r.name for r in mixed.rules]
    assert "only-a" in names
    assert "only-b" in names
    decision = decide(mixed, hdrs=headers(subject="b"))
    assert decision.verdict == Verdict.REJECT


# --- reload safety and the worker boundary --------------------------------------------------


def test_broken_reload_raises_and_the_running_set_keeps_working(
    policy_dir: Callable[..., Path],
) -> None:
    directory = policy_dir(
        city="extends: lgwan-base\nrules:\n  - name: block-x\n    when: {subject: {contains: "
        "[x]}}\n    action: quarantine\n"
    )
    config = Config(
        policy=PolicyConfig(name="city", dir=directory),
        tenants={TENANT: TenantConfig(policy="city")},
    )
    running = reload_policies(config)
    (directory / "city.yaml").write_text("extends: lgwan-base\nrules: [{name: b, action: x}]\n")
    with pytest.raises(ConfigError) as info:
        reload_policies(config)
    assert all(str(directory / "city.yaml") in m for m in info.value.messages)
    # The old set is untouched and still decides with the old rule.
    policy = running.for_recipients([TENANT], config.tenants)
    assert decide(policy, hdrs=headers(subject="x")).verdict == Verdict.QUARANTINE
    # A fixed file loads.
    (directory / "city.yaml").write_text("extends: lgwan-base\n")
    assert reload_policies(config).policies["city"].sources[-1] == str(directory / "city.yaml")


def test_reload_checks_tenant_policy_names(tmp_path: Path) -> None:
    config = Config(tenants={TENANT: TenantConfig(policy="no-such")})
    with pytest.raises(ConfigError, match=r"tenants\.city\.example\.lg\.jp\.policy: 'no-such'"):
        reload_policies(config)


def _decide_in_child(policy_set: PolicySet) -> tuple[int, tuple[str, ...]]:
    policy = policy_set.for_recipients([TENANT], TENANTS)
    decision = decide(
        policy,
        report(findings=["LIMIT_PARTS"]),
        envelope(),
        headers(from_="Boss <boss@city.examp1e.lg.jp>"),
    )
    return int(decision.verdict), tuple(h.rule for h in decision.hits)


def test_policy_set_pickles_and_decides_the_same_in_another_process() -> None:
    policy_set = load_policies(None)
    assert pickle.loads(pickle.dumps(policy_set)).names() == policy_set.names()  # noqa: S301
    here = _decide_in_child(policy_set)
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        there = pool.submit(_decide_in_child, policy_set).result(timeout=60)
    assert there == here
    assert here[0] == Verdict.QUARANTINE
    assert set(here[1]) == {"limits-exceeded", "lookalike-sender-domain"}
