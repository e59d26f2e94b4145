"""The signing key: from the environment or an encrypted keystore, never from a config file.

* ``HIP3_PRIVATE_KEY``: the API wallet's key (hex), or
* ``HIP3_PRIVATE_KEY_FILE``: a file holding it (readable by its owner only: mode 0600 or 0400), e.g. a
  systemd credential (``LoadCredential=``, ``$CREDENTIALS_DIRECTORY``) or a container secret, or
* ``HIP3_KEYSTORE``: the path of an encrypted keystore in eth-account's (Web3 Secret Storage) format,
  with its password in ``HIP3_KEYSTORE_PASSWORD`` or in the file named by ``HIP3_KEYSTORE_PASSWORD_FILE``.

The key lives only in the executor (the supervisor hands it over at launch, out of every other
actor's environment). ``SigningKey`` never shows the key in ``repr``/``str``, and every error text
here names the variable or file, never the value (the Rust original's keys ended up in its git
history).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

ENV_KEY = "HIP3_PRIVATE_KEY"
ENV_KEY_FILE = "HIP3_PRIVATE_KEY_FILE"
ENV_KEYSTORE = "HIP3_KEYSTORE"
ENV_KEYSTORE_PASSWORD = "HIP3_KEYSTORE_PASSWORD"
ENV_KEYSTORE_PASSWORD_FILE = "HIP3_KEYSTORE_PASSWORD_FILE"
# Paper mode against a simulator that runs as its own process: the key of the account it funds (a throwaway
# key; paper mode never reads HIP3_PRIVATE_KEY).
ENV_SIM_KEY = "HIP3_SIM_KEY"
SECRET_ENV_VARS = (ENV_KEY, ENV_KEYSTORE_PASSWORD, ENV_SIM_KEY)

_HEX_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


class SecretError(Exception):
    """The key cannot be loaded. The message never contains the key or the password."""


class SigningKey:
    """A private key that does not print itself."""

    __slots__ = ("_hex", "address")

    def __init__(self, hex_key: str) -> None:
        if not _HEX_KEY.match(hex_key.strip()):
            raise SecretError("the private key is not 32 bytes of hex")
        h = hex_key.strip().lower()
        self._hex = h if h.startswith("0x") else "0x" + h
        from eth_account import Account

        self.address: str = Account.from_key(self._hex).address.lower()

    def reveal(self) -> str:
        """The hex key, for the signer only."""
        return self._hex

    def __repr__(self) -> str:
        return f"SigningKey(address={self.address}, key=[REDACTED])"

    __str__ = __repr__

    def __reduce__(self) -> tuple[type[SigningKey], tuple[str]]:
        # Pickled only to hand the key to the executor process at launch (never logged).
        return (SigningKey, (self._hex,))


def load_signing_key(env: dict[str, str] | None = None) -> SigningKey | None:
    """The key from ``env`` (default ``os.environ``); None if neither source is set."""
    e = os.environ if env is None else env
    raw = e.get(ENV_KEY, "").strip()
    if raw:
        try:
            return SigningKey(raw)
        except SecretError:
            raise SecretError(f"{ENV_KEY} is set but is not a 32-byte hex key") from None
    key_file = e.get(ENV_KEY_FILE, "").strip()
    if key_file:
        return _key_from_file(Path(key_file))
    path = e.get(ENV_KEYSTORE, "").strip()
    if not path:
        return None
    password = e.get(ENV_KEYSTORE_PASSWORD)
    if password is None and e.get(ENV_KEYSTORE_PASSWORD_FILE):
        pw_path = Path(e[ENV_KEYSTORE_PASSWORD_FILE])
        try:
            password = pw_path.read_text().rstrip("\n")
        except OSError as err:
            raise SecretError(f"cannot read {ENV_KEYSTORE_PASSWORD_FILE} ({pw_path}): {err.strerror}") from None
    if password is None:
        raise SecretError(f"{ENV_KEYSTORE} is set but neither {ENV_KEYSTORE_PASSWORD} nor "
                          f"{ENV_KEYSTORE_PASSWORD_FILE} is")
    try:
        keystore = json.loads(Path(path).read_text())
    except OSError as err:
        raise SecretError(f"cannot read keystore {path}: {err.strerror}") from None
    except ValueError:
        raise SecretError(f"keystore {path} is not JSON") from None
    from eth_account import Account

    try:
        key_bytes = Account.decrypt(keystore, password)
    except Exception:  # eth-account raises ValueError for a wrong password; never echo its text
        raise SecretError(f"cannot decrypt keystore {path} (wrong password or corrupt file)") from None
    return SigningKey("0x" + bytes(key_bytes).hex())


def _key_from_file(path: Path) -> SigningKey:
    """The key in ``path`` (hex, surrounding whitespace ignored). Refused, naming the file and never its content,
    if others than its owner may read or write it: a key left readable to the group is a key shared."""
    try:
        st = path.stat()
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as err:
        raise SecretError(f"cannot read {ENV_KEY_FILE} ({path}): {err.strerror}") from None
    if st.st_mode & 0o077:
        raise SecretError(f"{ENV_KEY_FILE} ({path}) is readable or writable by others than its owner (mode "
                          f"{st.st_mode & 0o777:o}): chmod 600 it")
    try:
        return SigningKey(text.strip())
    except SecretError:
        raise SecretError(f"{ENV_KEY_FILE} ({path}) does not hold a 32-byte hex key") from None


def scrub_environment() -> dict[str, str]:
    """Remove the secret variables from this process's environment; return them (for the executor)."""
    return {k: os.environ.pop(k) for k in (*SECRET_ENV_VARS, ENV_KEY_FILE, ENV_KEYSTORE, ENV_KEYSTORE_PASSWORD_FILE)
            if k in os.environ}


def check_signer(key: SigningKey, expected_address: str) -> None:
    """Refuse to trade if a configured signer address does not match the key (the account and the API
    wallet that signs for it are different addresses: confusing them trades the wrong account)."""
    if expected_address and key.address != expected_address.lower():
        raise SecretError(f"the key's address {key.address} is not exchange.signer_address {expected_address.lower()}")


# The supervisor hands the key to the executor process at launch (pickled through the forkserver's
# private socket, never through an environment variable or a command line that other actors see).
_handed: SigningKey | None = None


def hand_over(key: SigningKey | None) -> None:
    """Called in the executor process before the actor starts (by the launcher)."""
    global _handed
    _handed = key


def executor_key() -> SigningKey | None:
    """The executor's key: handed over by the supervisor, else from this process's environment."""
    return _handed if _handed is not None else load_signing_key()
