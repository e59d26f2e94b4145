"""Keys come from the environment or an encrypted keystore; they never show up in text."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from eth_account import Account

from hip3.runtime.secrets import SecretError, SigningKey, check_signer, load_signing_key

KEY = "0x" + "4c" * 32


def test_key_from_environment_never_prints() -> None:
    k = load_signing_key({"HIP3_PRIVATE_KEY": KEY})
    assert k is not None and k.address == Account.from_key(KEY).address.lower()
    for text in (repr(k), str(k), f"{k}", f"{k!r}"):
        assert "4c4c4c" not in text and "REDACTED" in text
    assert pickle.loads(pickle.dumps(k)).reveal() == KEY


def test_no_key_configured_is_none() -> None:
    assert load_signing_key({}) is None


def test_bad_key_error_does_not_echo_it() -> None:
    bad = "0x" + "zz" * 32
    with pytest.raises(SecretError) as e:
        load_signing_key({"HIP3_PRIVATE_KEY": bad})
    assert bad not in str(e.value) and "HIP3_PRIVATE_KEY" in str(e.value)


def test_encrypted_keystore(tmp_path: Path) -> None:
    ks = tmp_path / "ks.json"
    ks.write_text(json.dumps(Account.encrypt(KEY, "correct horse", iterations=2)))
    k = load_signing_key({"HIP3_KEYSTORE": str(ks), "HIP3_KEYSTORE_PASSWORD": "correct horse"})
    assert k is not None and k.reveal() == KEY
    pw = tmp_path / "pw"
    pw.write_text("correct horse\n")
    k2 = load_signing_key({"HIP3_KEYSTORE": str(ks), "HIP3_KEYSTORE_PASSWORD_FILE": str(pw)})
    assert k2 is not None and k2.address == k.address
    with pytest.raises(SecretError) as e:
        load_signing_key({"HIP3_KEYSTORE": str(ks), "HIP3_KEYSTORE_PASSWORD": "hunter2-not-it"})
    assert "hunter2-not-it" not in str(e.value) and "cannot decrypt" in str(e.value)
    with pytest.raises(SecretError, match="neither"):
        load_signing_key({"HIP3_KEYSTORE": str(ks)})


def test_signer_address_check() -> None:
    k = SigningKey(KEY)
    check_signer(k, "")
    check_signer(k, k.address.upper().replace("0X", "0x"))
    with pytest.raises(SecretError, match="signer_address"):
        check_signer(k, "0x" + "00" * 20)


def test_key_from_a_file_readable_by_its_owner_only(tmp_path: Path) -> None:
    """A systemd credential (LoadCredential=) or a container secret: the path in HIP3_PRIVATE_KEY_FILE."""
    path = tmp_path / "hip3-private-key"
    path.write_text(KEY + "\n")
    path.chmod(0o600)
    k = load_signing_key({"HIP3_PRIVATE_KEY_FILE": str(path)})
    assert k is not None and k.address == Account.from_key(KEY).address.lower()
    path.chmod(0o400)
    assert load_signing_key({"HIP3_PRIVATE_KEY_FILE": str(path)}) is not None
    path.chmod(0o640)  # the group may read it: a key shared
    with pytest.raises(SecretError) as e:
        load_signing_key({"HIP3_PRIVATE_KEY_FILE": str(path)})
    assert str(path) in str(e.value) and "chmod 600" in str(e.value) and KEY[2:] not in str(e.value)
    with pytest.raises(SecretError, match="cannot read HIP3_PRIVATE_KEY_FILE"):
        load_signing_key({"HIP3_PRIVATE_KEY_FILE": str(tmp_path / "absent")})
    bad = tmp_path / "bad"
    bad.write_text("not a key " + KEY[2:40])
    bad.chmod(0o600)
    with pytest.raises(SecretError) as e:
        load_signing_key({"HIP3_PRIVATE_KEY_FILE": str(bad)})
    assert "does not hold a 32-byte hex key" in str(e.value) and KEY[2:40] not in str(e.value)


def test_the_simulator_key_and_the_key_file_variable_leave_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from hip3.runtime.secrets import scrub_environment

    monkeypatch.setenv("HIP3_SIM_KEY", KEY)
    monkeypatch.setenv("HIP3_PRIVATE_KEY_FILE", "/run/credentials/hip3.service/hip3-private-key")
    got = scrub_environment()
    assert got["HIP3_SIM_KEY"] == KEY and "HIP3_SIM_KEY" not in os.environ
    assert "HIP3_PRIVATE_KEY_FILE" not in os.environ
