"""The API-key check every entry point uses (REST API, Perspective API, /ready, UI login)."""

from __future__ import annotations

from toxiguard.settings import Settings


def test_only_configured_keys_are_accepted() -> None:
    settings = Settings.model_validate({"api_keys": " key-one, key-two ,"})
    assert settings.api_key_list == ["key-one", "key-two"]
    assert settings.accepts_api_key("key-one") and settings.accepts_api_key("key-two")
    for wrong in ("key-three", "key-one ", "", None):
        assert not settings.accepts_api_key(wrong)
    assert not Settings.model_validate({"api_keys": None}).accepts_api_key("anything")
