"""``service.settings.Settings.from_env``: defaults, parsing, and errors naming the variable."""

from __future__ import annotations

import dataclasses

import pytest

from service.settings import Settings


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.database_url == "sqlite:///runs/service/service.db"
    assert (settings.lease_seconds, settings.max_attempts, settings.max_trials) == (60.0, 3, 100)
    assert (settings.max_body_bytes, settings.bootstrap_token) == (65536, None)


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "STRSEARCH_DATABASE_URL": "postgresql+psycopg://svc@db/strsearch",
            "STRSEARCH_LEASE_SECONDS": "2.5",
            "STRSEARCH_MAX_ATTEMPTS": "5",
            "STRSEARCH_MAX_TRIALS": "12",
            "STRSEARCH_MAX_BODY_BYTES": "1024",
            "STRSEARCH_BOOTSTRAP_TOKEN": "strs_secret",
            "STRSEARCH_WORKER_TOKEN": "strs_agents",
            "UNRELATED": "x",
        }
    )
    assert settings == Settings(
        database_url="postgresql+psycopg://svc@db/strsearch",
        lease_seconds=2.5,
        max_attempts=5,
        max_trials=12,
        max_body_bytes=1024,
        bootstrap_token="strs_secret",
        worker_token="strs_agents",
    )


def test_empty_values_keep_the_defaults() -> None:
    empty = {
        "STRSEARCH_LEASE_SECONDS": "",
        "STRSEARCH_BOOTSTRAP_TOKEN": "  ",
        "STRSEARCH_WORKER_TOKEN": "",
    }
    assert Settings.from_env(empty) == Settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STRSEARCH_LEASE_SECONDS", "soon"),
        ("STRSEARCH_LEASE_SECONDS", "0"),
        ("STRSEARCH_LEASE_SECONDS", "-1"),
        ("STRSEARCH_LEASE_SECONDS", "nan"),
        ("STRSEARCH_LEASE_SECONDS", "inf"),
        ("STRSEARCH_MAX_ATTEMPTS", "0"),
        ("STRSEARCH_MAX_ATTEMPTS", "2.5"),
        ("STRSEARCH_MAX_TRIALS", "many"),
        ("STRSEARCH_MAX_BODY_BYTES", "-5"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().max_attempts = 9  # type: ignore[misc]
