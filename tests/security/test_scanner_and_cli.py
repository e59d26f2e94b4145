"""The secret scanner can fail (it finds planted secrets in every form), and the CLI's refusals: live mode
without the opt-in, a wrong keystore password, a bad config at start with a key in the environment.
Every refusal is one clear line that contains neither the key nor the password."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest
from eth_account import Account

from hip3.config import REPO_ROOT
from hip3.runtime.logs import redact
from hip3.runtime.secrets import SecretError, load_signing_key

from .helpers import cli, loose_permissions, scan_bytes, scan_tree, secret_needles

pytestmark = pytest.mark.timeout(120)


def test_scanner_finds_every_form_of_a_planted_key_and_password(tmp_path: Path) -> None:
    key = "0x" + secrets.token_hex(32)
    pw = "Correct-Horse-" + secrets.token_hex(4)
    needles = secret_needles(key, pw)
    forms = {
        "plain.log": key.encode(),
        "upper.log": key[2:].upper().encode(),
        "mixed.json": json.dumps({"k": "0X" + key[2:].upper()}).encode(),
        "raw.bin": b"\x00\x01" + bytes.fromhex(key[2:]) + b"\xff",
        "b64.txt": base64.b64encode(bytes.fromhex(key[2:])),
        "spaced.txt": " ".join(key[2 + i:4 + i] for i in range(0, 64, 2)).encode(),
        "deep/er/pw.txt": f"password={pw}".encode(),
    }
    for name, data in forms.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    (tmp_path / "clean.log").write_text("nothing here " + "0x" + secrets.token_hex(32))
    n, hits = scan_tree([tmp_path], needles)
    assert n == len(forms) + 1
    assert {Path(p).name for p, _ in hits} == {Path(f).name for f in forms}
    assert not scan_bytes(redact(f"key={key} and {key[2:].upper()}").encode(), needles)  # the log scrubber


def test_permission_check_can_fail(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    os.chmod(d, 0o700)
    f = d / "x.log"
    f.write_text("x")
    os.chmod(f, 0o644)
    assert loose_permissions(d) == [f"{f} -rw-r--r--"]
    os.chmod(f, 0o600)
    assert loose_permissions(d) == []


def _cli(config: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return cli(config, env, *args)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIP3_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(extra)
    return env


def _live_config(tmp: Path, extra: str = "") -> Path:
    p = tmp / "live.toml"
    p.write_text(f'run_dir = "{tmp / "run"}"\nmode = "live"\n[exchange]\nnetwork = "testnet"\n'
                 'rest_url = "http://127.0.0.1:9"\naccount_address = "0x' + "12" * 20 + '"\n'
                 '[[markets]]\ncoin = "xyz:GOLD"\n' + extra)
    return p


def _one_clean_line(r: subprocess.CompletedProcess[str], needles: dict[str, bytes]) -> str:
    assert r.returncode == 2, r
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert not scan_bytes((r.stdout + r.stderr).encode(), needles)
    return lines[0]


def test_live_mode_refuses_to_start_without_the_opt_in(tmp_path: Path) -> None:
    key = "0x" + secrets.token_hex(32)
    r = _cli(_live_config(tmp_path), "start", env=_env(HIP3_PRIVATE_KEY=key))
    line = _one_clean_line(r, secret_needles(key))
    assert "real money" in line and "--live" in line
    assert not (tmp_path / "run").exists()  # nothing was started or created
    paper = tmp_path / "paper.toml"
    paper.write_text(f'run_dir = "{tmp_path / "prun"}"\nmode = "paper"\n[[markets]]\ncoin = "xyz:GOLD"\n')
    line = _one_clean_line(_cli(paper, "start", "--live", env=_env()), {})
    assert "--live given" in line and "paper" in line


def test_wrong_keystore_password_is_a_redacted_error(tmp_path: Path) -> None:
    key = "0x" + secrets.token_hex(32)
    good, wrong = "right-" + secrets.token_hex(6), "wrong-" + secrets.token_hex(6)
    ks = tmp_path / "ks.json"
    ks.write_text(json.dumps(Account.encrypt(bytes.fromhex(key[2:]), good, iterations=2)))
    needles = secret_needles(key, good) | {"wrong": wrong.encode()}
    for env in (_env(HIP3_KEYSTORE=str(ks), HIP3_KEYSTORE_PASSWORD=wrong),
                _env(HIP3_KEYSTORE=str(ks), HIP3_KEYSTORE_PASSWORD_FILE=str(_write(tmp_path / "pw", wrong)))):
        line = _one_clean_line(_cli(_live_config(tmp_path), "start", "--live", env=env), needles)
        assert "cannot decrypt keystore" in line and str(ks) in line
        assert not (tmp_path / "run" / "supervisor.lock").exists()
    # the library path gives the same redacted error
    with pytest.raises(SecretError) as e:
        load_signing_key({"HIP3_KEYSTORE": str(ks), "HIP3_KEYSTORE_PASSWORD": wrong})
    assert not scan_bytes(str(e.value).encode(), needles)


def test_both_key_sources_load_the_same_key(tmp_path: Path) -> None:
    key = "0x" + secrets.token_hex(32)
    pw = "pw-" + secrets.token_hex(6)
    ks = tmp_path / "ks.json"
    ks.write_text(json.dumps(Account.encrypt(bytes.fromhex(key[2:]), pw, iterations=2)))
    from_env = load_signing_key({"HIP3_PRIVATE_KEY": key[2:].upper()})
    from_ks = load_signing_key({"HIP3_KEYSTORE": str(ks), "HIP3_KEYSTORE_PASSWORD": pw})
    pw_file = _write(tmp_path / "p", pw)
    from_file = load_signing_key({"HIP3_KEYSTORE": str(ks), "HIP3_KEYSTORE_PASSWORD_FILE": str(pw_file)})
    assert from_env is not None and from_ks is not None and from_file is not None
    assert from_env.reveal() == from_ks.reveal() == from_file.reveal() == key
    for k in (from_env, from_ks, from_file):
        assert not scan_bytes(f"{k} {k!r}".encode(), secret_needles(key, pw))


@pytest.mark.parametrize("extra", ['[executor]\nmax_batch_sizee = 3\n', '[bus]\ntcp_base_port = "x"\n',
                                   'mode = 3\n'], ids=["unknown-key", "wrong-type", "duplicate-key"])
def test_config_error_at_start_with_a_key_in_the_environment(tmp_path: Path, extra: str) -> None:
    key = "0x" + secrets.token_hex(32)
    r = _cli(_live_config(tmp_path, extra), "start", "--live", env=_env(HIP3_PRIVATE_KEY=key))
    line = _one_clean_line(r, secret_needles(key))
    assert "config error in" in line


def test_a_key_pasted_into_the_config_is_refused_without_echoing_it(tmp_path: Path) -> None:
    key = "0x" + secrets.token_hex(32)
    r = _cli(_live_config(tmp_path, f'[sim]\nsecret = "{key}"\n'), "start", "--live", env=_env())
    line = _one_clean_line(r, secret_needles(key))
    assert "private key" in line


def _write(p: Path, text: str) -> Path:
    p.write_text(text + "\n")
    return p
