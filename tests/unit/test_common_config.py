"""Settings resolve flag, then environment, then default, and reject bad values
with a message naming the setting: a typo in a deployment must not pass silently."""
from __future__ import annotations

import dataclasses

import pytest

from common.config import ServiceSettings, load_settings, setting


@dataclasses.dataclass
class DemoSettings(ServiceSettings):
    beam_size: int = setting(5, "beam")
    interim: bool = setting(True, "interims on/off")


def test_default_when_nothing_given(monkeypatch):
    monkeypatch.delenv("DEMO_BEAM_SIZE", raising=False)
    s = load_settings(DemoSettings, "DEMO_", [])
    assert s.beam_size == 5 and s.interim is True and s.device == "cpu"


def test_env_overrides_default(monkeypatch):
    monkeypatch.setenv("DEMO_BEAM_SIZE", "2")
    monkeypatch.setenv("DEMO_INTERIM", "off")
    s = load_settings(DemoSettings, "DEMO_", [])
    assert s.beam_size == 2 and s.interim is False


def test_flag_overrides_env(monkeypatch):
    monkeypatch.setenv("DEMO_BEAM_SIZE", "2")
    s = load_settings(DemoSettings, "DEMO_", ["--beam-size", "7", "--device", "cuda"])
    assert s.beam_size == 7 and s.device == "cuda"


def test_bad_value_names_the_setting(monkeypatch, capsys):
    monkeypatch.setenv("DEMO_BEAM_SIZE", "five")
    with pytest.raises(SystemExit):
        load_settings(DemoSettings, "DEMO_", [])
    assert "beam_size" in capsys.readouterr().err


def test_help_lists_env_and_default(capsys):
    with pytest.raises(SystemExit):
        load_settings(DemoSettings, "DEMO_", ["--help"])
    out = capsys.readouterr().out
    assert "DEMO_BEAM_SIZE" in out and "default: 5" in out


def test_logged_settings_never_hold_secrets(caplog):
    """Keys and passwords are resolved like any setting but never logged."""
    import logging

    from common.config import log_settings
    from services.gateway.settings import GatewaySettings

    s = GatewaySettings(api_keys="sk-local-0123456789abcdef", redis_url="redis://:hunter2pass@redis:6379/0",
                        api_keys_file="/run/secrets/gateway_api_keys")
    with caplog.at_level(logging.INFO):
        log_settings("gateway", s)
    line = caplog.text
    assert "sk-local-0123456789abcdef" not in line and "hunter2pass" not in line
    assert "api_keys='<redacted>'" in line and "redis://:***@redis:6379/0" in line
    assert "/run/secrets/gateway_api_keys" in line and f"max_sessions={s.max_sessions}" in line
