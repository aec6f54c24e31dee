"""Keyed pseudonyms: every replacement value is a keyed HMAC-SHA256 of the original.

The same value and secret give the same pseudonym on every worker, machine and
run, with no shared lookup table. Each kind of value uses its own sub-key
(derived from the secret with HMAC and a label), so a UID's pseudonym, a
name's pseudonym and the audit HMAC of the same string are unrelated.

Forms
-----
- UIDs: ``2.25.<decimal of the first 128 bits of the HMAC>`` (at most 44
  characters; the UUID-derived root of PS3.5 B.2).
- Patient names: ``PATIENT^<10 characters A-Z, 2-7>``; other person names:
  ``PERSON^<10 characters>``. Both are valid PN values (one component group,
  family^given).
- IDs: ``<prefix>-<12 characters A-Z, 2-7>`` (16 characters, valid SH and LO):
  ``PID`` for patient IDs, ``ACC`` for accession numbers, ``SID`` for study IDs,
  ``IDN`` for other identifiers.
- Date offset: a whole number of days between -3652 and -1 (up to ten years
  back, never zero), from the patient's identity.
- Audit HMAC: the full hex digest of HMAC-SHA256 under the audit sub-key.

Examples
--------
>>> p = Pseudonymizer("secret")
>>> p.uid("1.2.3") == Pseudonymizer("secret").uid("1.2.3")
True
>>> p.uid("1.2.3").startswith("2.25.")
True
>>> p.name("DOE^JANE", patient=True)[:8]
'PATIENT^'
>>> len(p.identifier("12345", "PID"))
16
>>> -3652 <= p.date_offset_days("PID-1") <= -1
True
"""

from __future__ import annotations

import base64
import hashlib
import hmac as _hmac
import os
import secrets
import warnings

from .errors import ConfigurationError

DEFAULT_SECRET_ENV = "DICOMSCRUB_SECRET"
_MEMO_SIZE = 1 << 16  # digests remembered per pseudonymizer (cleared when full) ...
_MEMO_VALUE = 256  # ... of values up to this length
MAX_OFFSET_DAYS = 3652


class Pseudonymizer:
    """Keyed HMAC-SHA256 pseudonyms for one secret.

    Parameters
    ----------
    secret
        The key. Anyone holding it can test guesses of original values against
        pseudonyms, so keep it like a password.
    """

    def __init__(self, secret: str | bytes) -> None:
        key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if not key:
            raise ConfigurationError("the pseudonymization secret is empty")
        self._keys = {
            label: _hmac.new(key, label.encode(), hashlib.sha256).digest()
            for label in ("audit", "uid", "name", "id", "date", "token")
        }
        self._macs = self._prepare(self._keys)
        self._memo: dict[tuple[str, str | bytes], bytes] = {}
        self._b32: dict[bytes, str] = {}

    @staticmethod
    def _prepare(keys: dict[str, bytes]) -> dict[str, _hmac.HMAC]:
        # one keyed HMAC per purpose, copied per value (cheaper than re-keying each time)
        return {label: _hmac.new(k, digestmod=hashlib.sha256) for label, k in keys.items()}

    def __getstate__(self) -> dict[str, bytes]:
        return dict(self._keys)

    def __setstate__(self, keys: dict[str, bytes]) -> None:
        self._keys = dict(keys)
        self._macs = self._prepare(self._keys)
        self._memo = {}
        self._b32 = {}

    @classmethod
    def from_env(
        cls, secret_env: str = DEFAULT_SECRET_ENV, *, ephemeral_secret: bool = False
    ) -> Pseudonymizer:
        """Read the secret from ``secret_env``; refuse without one unless ephemeral."""
        value = os.environ.get(secret_env, "")
        if value:
            return cls(value)
        if ephemeral_secret:
            warnings.warn(
                "dicomscrub: using a throwaway per-run secret; pseudonyms (UIDs, IDs, names, "
                "date offsets) will not match any other run",
                stacklevel=2,
            )
            return cls(secrets.token_bytes(32))
        raise ConfigurationError(
            f"no pseudonymization secret: set the environment variable {secret_env} to a long "
            "random string (the same one for every run whose pseudonyms must match), or pass "
            "--ephemeral-secret / ephemeral_secret=True for a throwaway per-run key"
        )

    def _digest(self, label: str, value: str | bytes) -> bytes:
        # short values are remembered: the files of a series repeat them (UIDs, names, dates)
        key = (label, value)
        found = self._memo.get(key) if len(value) <= _MEMO_VALUE else None
        if found is None:
            mac = self._macs[label].copy()
            mac.update(value.encode("utf-8") if isinstance(value, str) else value)
            found = mac.digest()
            if len(value) <= _MEMO_VALUE:
                if len(self._memo) >= _MEMO_SIZE:
                    self._memo.clear()
                self._memo[key] = found
        return found

    def hmac(self, value: str | bytes) -> str:
        """Audit HMAC (hex) of an original value."""
        return self._digest("audit", value).hex()

    def uid(self, value: str) -> str:
        """``2.25.<int>`` pseudonym of a UID (whitespace and trailing NULs ignored)."""
        digest = self._digest("uid", value.strip().rstrip("\x00"))
        return f"2.25.{int.from_bytes(digest[:16], 'big')}"

    def _token(self, label: str, value: str, length: int) -> str:
        digest = self._digest(label, value.strip())
        text = self._b32.get(digest)
        if text is None:
            text = base64.b32encode(digest).decode("ascii")
            if len(self._b32) >= _MEMO_SIZE:
                self._b32.clear()
            self._b32[digest] = text
        return text[:length]

    def name(self, value: str, *, patient: bool = False) -> str:
        """Person-name pseudonym: ``PATIENT^XXXXXXXXXX`` or ``PERSON^XXXXXXXXXX``."""
        normalized = " ".join(value.replace("^", " ").replace("=", " ").upper().split())
        return f"{'PATIENT' if patient else 'PERSON'}^{self._token('name', normalized, 10)}"

    def identifier(self, value: str, prefix: str = "IDN") -> str:
        """ID pseudonym ``<prefix>-XXXXXXXXXXXX`` (16 characters for a 3-letter prefix)."""
        return f"{prefix}-{self._token('id', prefix + ':' + value.strip(), 12)}"

    def token(self, value: str, length: int = 16) -> str:
        """A neutral dummy token for other text (``ANON`` + base32), at most ``length``."""
        return ("ANON" + self._token("token", value, 28))[: max(length, 1)]

    def date_offset_days(self, patient_key: str) -> int:
        """Whole-day date shift for a patient (between -3652 and -1)."""
        digest = self._digest("date", patient_key)
        return -(1 + int.from_bytes(digest[:8], "big") % MAX_OFFSET_DAYS)
