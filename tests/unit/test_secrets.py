"""Secrets for a machine without any in its environment: made once, kept private, never changed."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from integrations import launcher
from integrations.launcher import SECRET_NAMES, StackConfig, local_secrets
from records import crypto


@pytest.fixture
def secrets_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "var" / "secrets.env"
    monkeypatch.setattr(launcher, "SECRETS_FILE", path)
    return path


def _read(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


def test_all_four_secrets_are_made_and_written(secrets_file: Path) -> None:
    values = local_secrets()
    assert set(SECRET_NAMES) == {
        "XINQIAO_RASA_TOKEN",
        "XINQIAO_SESSION_SECRET",
        crypto.KEYS_VARIABLE,
        crypto.LOOKUP_VARIABLE,
    }
    assert set(values) == set(SECRET_NAMES)
    assert all(len(value) >= 32 for value in values.values())
    assert len(set(values.values())) == 4  # each made on its own
    assert _read(secrets_file) == values


def test_the_file_is_readable_by_its_owner_only(secrets_file: Path) -> None:
    local_secrets()
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600


def test_the_file_stays_private_when_a_secret_is_added(secrets_file: Path) -> None:
    secrets_file.parent.mkdir(parents=True)
    secrets_file.write_text("XINQIAO_RASA_TOKEN=kept\n")
    secrets_file.chmod(0o644)
    local_secrets()
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600


def test_the_encryption_key_is_a_fernet_key(secrets_file: Path) -> None:
    key = local_secrets()[crypto.KEYS_VARIABLE]
    fernet = Fernet(key.encode())
    assert fernet.decrypt(fernet.encrypt(b"note")) == b"note"
    keyring = crypto.Keyring.from_values(key, local_secrets()[crypto.LOOKUP_VARIABLE])
    assert keyring.fernet.decrypt(keyring.fernet.encrypt(b"note")) == b"note"


def test_a_second_call_returns_the_same_values_and_leaves_the_file_alone(secrets_file: Path) -> None:
    first = local_secrets()
    written = secrets_file.read_text()
    assert local_secrets() == first
    assert secrets_file.read_text() == written


@pytest.mark.parametrize("missing", SECRET_NAMES)
def test_a_missing_secret_is_added_without_changing_the_others(secrets_file: Path, missing: str) -> None:
    first = local_secrets()
    secrets_file.write_text("".join(f"{k}={v}\n" for k, v in first.items() if k != missing))
    second = local_secrets()
    assert {k: v for k, v in second.items() if k != missing} == {
        k: v for k, v in first.items() if k != missing
    }
    assert second[missing] and second[missing] != first[missing]
    assert _read(secrets_file) == second
    assert local_secrets() == second


def test_an_empty_value_is_made_again(secrets_file: Path) -> None:
    first = local_secrets()
    secrets_file.write_text(
        "".join(f"{k}={'' if k == 'XINQIAO_SESSION_SECRET' else v}\n" for k, v in first.items())
    )
    second = local_secrets()
    assert second["XINQIAO_SESSION_SECRET"]
    assert second[crypto.KEYS_VARIABLE] == first[crypto.KEYS_VARIABLE]


def test_an_isolated_stack_gets_fresh_encryption_keys(tmp_path: Path) -> None:
    one = StackConfig.isolated(tmp_path / "one")
    two = StackConfig.isolated(tmp_path / "two")
    assert one.encryption_keys != two.encryption_keys
    assert one.lookup_key != two.lookup_key
    for config in (one, two):
        Fernet(config.encryption_keys.encode())  # a valid key, not a placeholder
        assert config.lookup_key
        assert config.rasa_token and config.session_secret
        assert config.encryption_keys != StackConfig().encryption_keys
    assert one.database_url.endswith(str(tmp_path / "one" / "xinqiao.db"))
