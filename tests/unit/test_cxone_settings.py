"""The CXone settings of issue 16: defaults, and the checks on the new keys."""

from __future__ import annotations

import pytest

from connector.config import CXoneSettings, load_settings
from connector.errors import ConfigError


def test_defaults() -> None:
    cx = CXoneSettings()
    assert cx.api_version == "v34.0" and cx.auth_method == "password" and cx.access_key_token_url == ""
    assert cx.dnc_phone_format == "digits" and cx.time_zone_column == "timeZone" and cx.default_time_zone == ""
    assert cx.remove_prospects is False and cx.prospect_source_name == ""


@pytest.mark.parametrize(("cxone", "key"), [
    ({"api_version": "34"}, "cxone.api_version"),
    ({"api_version": "v34.1"}, "cxone.api_version"),
    ({"auth_method": "oauth"}, "cxone.auth_method"),
    ({"access_key_token_url": "ftp://x"}, "cxone.access_key_token_url"),
    ({"dnc_phone_format": "string"}, "cxone.dnc_phone_format"),
    ({"time_zone_column": "phone"}, "cxone.time_zone_column"),
    ({"remove_prospects": True}, "cxone.remove_prospects"),  # the v2 profile has none
])
def test_bad_values_are_refused(cxone: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"cxone": cxone}, env={})
    assert key in [k for k, _ in err.value.problems]


def test_env_overrides_reach_the_new_keys() -> None:
    env = {"CXONE_CONNECTOR__CXONE__PROFILE": "call-lists", "CXONE_CONNECTOR__CXONE__AUTH_BASE_URL": "http://a",
           "CXONE_CONNECTOR__CXONE__AUTH_METHOD": "access_key", "CXONE_CONNECTOR__CXONE__REMOVE_PROSPECTS": "true",
           "CXONE_CONNECTOR__CXONE__DNC_PHONE_FORMAT": "e164", "CXONE_CONNECTOR__CXONE__API_VERSION": "v35.0"}
    cx = load_settings({}, env=env).cxone
    assert (cx.auth_method, cx.remove_prospects, cx.dnc_phone_format, cx.api_version) == (
        "access_key", True, "e164", "v35.0")
