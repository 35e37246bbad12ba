"""Configuration: defaults, overrides, secrets and error reporting."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.cli import main
from connector.config import Secret, all_keys, env_var_name, load_file, load_settings
from connector.errors import ConfigError


def test_defaults_load_without_a_file() -> None:
    s = load_settings({}, env={})
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.window.max_items == 10_000
    assert s.cxone.profile == "v2"
    assert s.topics.dnc == "dnc.numbers"


def test_environment_overrides_file() -> None:
    env = {
        env_var_name("kafka", "bootstrap_servers"): "broker:29092",
        env_var_name("window", "max_age_s"): "2.5",
        env_var_name("dnc", "publish_opt_outs"): "true",
        env_var_name("callbacks", "urls"): "http://a/x, http://b/y",
        env_var_name("callbacks", "secret"): "env:HOOK_SECRET",
        "HOOK_SECRET": "s3cr3t",
    }
    s = load_settings({"kafka": {"bootstrap_servers": "file:9092"}}, env=env)
    assert s.kafka.bootstrap_servers == "broker:29092"
    assert s.window.max_age_s == 2.5
    assert s.dnc.publish_opt_outs is True
    assert s.callbacks.urls == ("http://a/x", "http://b/y")
    assert s.callbacks.secret is not None and s.callbacks.secret.get() == "s3cr3t"


def test_every_problem_is_reported_at_once() -> None:
    data = {
        "kafka": {"consume_batch_size": "many", "bogus": 1},
        "window": {"max_items": 20_000},
        "cxone": {"profile": "v3", "client_secret": "plain-text"},
        "nonsense": {},
    }
    with pytest.raises(ConfigError) as info:
        load_settings(data, env={})
    keys = {key for key, _ in info.value.problems}
    assert {"kafka.consume_batch_size", "kafka.bogus", "cxone.profile", "cxone.client_secret", "nonsense"} <= keys
    reasons = dict(info.value.problems)
    assert "never inline" in reasons["cxone.client_secret"]
    assert "unknown key" in reasons["kafka.bogus"]


def test_v2_item_limit_is_enforced() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"window": {"max_items": 10_001}}, env={})
    assert info.value.problems[0][0] == "window.max_items"


def test_secret_from_file_never_shows_itself(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("hunter2\n")
    s = load_settings({"cxone": {"client_secret": f"file:{secret_file}"}}, env={})
    secret = s.cxone.client_secret
    assert isinstance(secret, Secret) and secret.get() == "hunter2"
    assert "hunter2" not in repr(s) and "hunter2" not in str(secret)


def test_missing_secret_variable_is_a_problem() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"cxone": {"client_secret": "env:NOPE_NOT_SET"}}, env={})
    assert "NOPE_NOT_SET is not set" in info.value.problems[0][1]


def test_passthrough_librdkafka_settings() -> None:
    env = {"CXONE_CONNECTOR__KAFKA_COMMON__SASL_MECHANISM": "PLAIN"}
    s = load_settings({"kafka_common": {"security.protocol": "SASL_SSL", "socket.keepalive.enable": True}}, env=env)
    assert s.kafka_common == {
        "security.protocol": "SASL_SSL",
        "socket.keepalive.enable": "true",
        "sasl.mechanism": "PLAIN",
    }


def test_all_keys_names_every_section() -> None:
    sections = {section for section, _, _ in all_keys()}
    assert {"kafka", "topics", "phones", "dnc", "window", "cxone", "monitor", "callbacks", "server"} <= sections


def test_check_config_cli_reports_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[kafka]\nconsume_batch_size = -1\n[cxone]\nclient_secret = "hunter2"\n')
    assert main(["check-config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "kafka.consume_batch_size: must not be negative" in err
    assert "cxone.client_secret" in err and "hunter2" not in err

    good = tmp_path / "good.toml"
    good.write_text('[cxone]\nprofile = "v2"\n')
    assert main(["check-config", str(good)]) == 0
    assert "ok" in capsys.readouterr().out


def test_unparseable_file(tmp_path: Path) -> None:
    f = tmp_path / "x.toml"
    f.write_text("[kafka\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_file(f, env={})


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["run", "--help"], ["check-config", "--help"], ["simulate", "--help"],
                 ["demo", "--help"], ["produce-sample", "--help"], ["dnc", "load", "--help"],
                 ["dnc", "sync", "--help"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0
        assert "usage: cxone-connector" in capsys.readouterr().out


def test_example_configuration_is_valid() -> None:
    root = Path(__file__).resolve().parents[2]
    env = {"CXONE_CLIENT_SECRET": "x", "CXONE_WEBHOOK_SECRET": "y"}
    s = load_file(root / "deploy/connector.example.toml", env=env)
    assert s.cxone.client_secret is not None and s.callbacks.secret is not None


# -- [dnc.lists.<name>]: freshness policies ------------------------------------------------


def test_dnc_list_policies_from_tables_of_tables(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[dnc.lists.national]\nmax_age_days = 31\n\n[dnc.lists.crm-opt-out]\nenforce = false\n")
    s = load_file(f, env={})
    assert s.dnc.lists["national"].max_age_days == 31 and s.dnc.lists["national"].enforce is True
    assert s.dnc.lists["crm-opt-out"].max_age_days is None and s.dnc.lists["crm-opt-out"].enforce is False
    assert load_settings({}, env={}).dnc.lists == {}
    assert s.topics.dnc_lists == "dnc.lists"


def test_dnc_list_policies_from_the_environment() -> None:
    data = {"dnc": {"lists": {"national": {"max_age_days": 31}, "crm-opt-out": {"max_age_days": 90}}}}
    env = {"CXONE_CONNECTOR__DNC__LISTS__NATIONAL__ENFORCE": "false",
           "CXONE_CONNECTOR__DNC__LISTS__CRM_OPT_OUT__MAX_AGE_DAYS": "7"}
    s = load_settings(data, env=env)
    assert s.dnc.lists["national"].enforce is False and s.dnc.lists["national"].max_age_days == 31
    assert s.dnc.lists["crm-opt-out"].max_age_days == 7
    whole = load_settings(data, env={env_var_name("dnc", "lists"): '{"state-fl": {"max_age_days": 31}}'})
    assert list(whole.dnc.lists) == ["state-fl"]  # the JSON variable replaces the file's tables


@pytest.mark.parametrize(("data", "env", "key", "reason"), [
    ({"lists": {"nat/ional": {}}}, {}, "dnc.lists.nat/ional", "not a valid DNC list name"),
    ({"lists": {"national": {"max_age_days": 0}}}, {}, "dnc.lists.national.max_age_days", "at least 1"),
    ({"lists": {"national": {"max_age": 31}}}, {}, "dnc.lists.national.max_age", "unknown key"),
    ({"lists": {"national": 31}}, {}, "dnc.lists", "expected a table of tables"),
    ({"lists": {"a-b": {}, "a_b": {}}}, {}, "dnc.lists.a_b", "shares its environment overrides"),
    ({}, {"CXONE_CONNECTOR__DNC__LISTS": "national=31"}, "CXONE_CONNECTOR__DNC__LISTS", "JSON object"),
    ({"lists": {"national": {}}}, {"CXONE_CONNECTOR__DNC__LISTS__NATIONAL__MAX_AGE_DAYS": "soon"},
     "CXONE_CONNECTOR__DNC__LISTS__NATIONAL__MAX_AGE_DAYS", "expected an integer"),
])
def test_dnc_list_policy_problems(data: dict[str, object], env: dict[str, str], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"dnc": data}, env=env)
    assert any(k == key and reason in r for k, r in info.value.problems), info.value.problems


def test_the_config_list_name_rule_is_the_dnc_key_rule() -> None:
    from connector.config import DNC_LIST_NAME_RE
    from connector.core.dnc_keys import LIST_NAME_RE

    assert DNC_LIST_NAME_RE.pattern == LIST_NAME_RE.pattern


def test_all_keys_give_factory_defaults() -> None:
    assert ("dnc", "lists", {}) in all_keys()


def test_calling_hours_keys_default_to_send_without_a_zone_and_check_the_zone() -> None:
    default = load_settings({}, env={}).calling_hours
    assert (default.default_time_zone, default.unknown) == ("", "send")
    chosen = load_settings({"calling_hours": {"default_time_zone": "America/Chicago"}},
                           env={"CXONE_CONNECTOR__CALLING_HOURS__UNKNOWN": "refuse"}).calling_hours
    assert (chosen.default_time_zone, chosen.unknown) == ("America/Chicago", "refuse")
    with pytest.raises(ConfigError) as err:
        load_settings({"calling_hours": {"default_time_zone": "Central Time", "unknown": "drop"}}, env={})
    keys = {key for key, _ in err.value.problems}
    assert keys == {"calling_hours.default_time_zone", "calling_hours.unknown"}
