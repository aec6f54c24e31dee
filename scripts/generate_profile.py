"""Generate ``core/data/confidentiality_profile.json`` from the PS3.15 Table E.1-1 JSON.

The input is ``confidentiality_profile_attributes.json`` from the repository
innolitics/dicom-standard (commit 7f4749d0, MIT licence); the facts are the
DICOM standard's (PS3.15 Annex E, Table E.1-1, "Application Level
Confidentiality Profile Attributes"). The output keeps every one of the 621
rows with its original action codes, and adds:

- ``keyword`` and ``vr`` from pydicom's data dictionary (empty for wildcards
  and the private-attributes row);
- ``tag_mask`` / ``tag_value`` for the wildcard rows (``(50XX,XXXX)``,
  ``(60XX,4000)``, ``(60XX,3000)``): a tag matches when
  ``tag & tag_mask == tag_value``;
- ``action``: the basic-profile action with combinations resolved, and
  ``options``: option column -> action code, keyed by the
  :class:`dicomscrub.core.policy.ProfileOptions` field names.

Combination rule (X/Z, X/D, Z/D, X/Z/D, X/Z/U*)
-------------------------------------------------
PS3.15 lists a combination where the right action depends on the attribute's
Type in the IOD at hand (X for Type 3, Z for Type 2, D for Type 1). The table
does not say which IOD a file follows, so the generator picks the option that
keeps *every* file valid:

1. ``stdCompIOD == "N"`` (the attribute is used in no standard composite
   IOD): the first option, X. Removing it cannot break conformance.
2. ``stdCompIOD == "Y"``, not a sequence: the last option, which is valid
   whatever the attribute's Type: D over Z over X (a dummy satisfies Type 1,
   2 and 3; an empty value satisfies Type 2 and 3).
3. ``stdCompIOD == "Y"``, a sequence: Z (an empty sequence) when listed, since
   a "dummy" sequence can only mean keeping items; otherwise D, which for a
   sequence means keeping its items and applying every rule inside them.
4. ``X/Z/U*`` resolves to U: the sequence is kept and every UID inside it is
   remapped (every other rule applies inside it too), so references stay valid.

Usage::

    python scripts/generate_profile.py [SOURCE_JSON] [-o OUTPUT_JSON]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydicom.datadict import dictionary_has_tag, dictionary_keyword, dictionary_VR

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = (
    REPO.parent / "shared" / "data" / "standard" / "confidentiality_profile_attributes.json"
)
DEFAULT_OUTPUT = REPO / "core" / "data" / "confidentiality_profile.json"

OPTION_COLUMNS = {
    "rtnSafePrivOpt": "retain_safe_private",
    "rtnUIDsOpt": "retain_uids",
    "rtnDevIdOpt": "retain_device_identity",
    "rtnInstIdOpt": "retain_institution_identity",
    "rtnPatCharsOpt": "retain_patient_characteristics",
    "rtnLongFullDatesOpt": "retain_longitudinal_full_dates",
    "rtnLongModifDatesOpt": "retain_longitudinal_modified_dates",
    "cleanDescOpt": "clean_descriptors",
    "cleanStructContOpt": "clean_structured_content",
    "cleanGraphOpt": "clean_graphics",
}

ATTRIBUTION = {
    "standard": "DICOM PS3.15 Annex E, Table E.1-1 Application Level Confidentiality "
    "Profile Attributes",
    "source_repository": "https://github.com/innolitics/dicom-standard",
    "source_commit": "7f4749d0",
    "source_file": "standard/confidentiality_profile_attributes.json",
    "source_license": "MIT",
    "generator": "scripts/generate_profile.py",
}

COMBINATION_RULE = (
    "stdCompIOD N -> X (first option). stdCompIOD Y, not a sequence -> the last option "
    "(D over Z over X). stdCompIOD Y, a sequence -> Z when listed, else D (keep items, "
    "apply every rule inside). X/Z/U* -> U (keep the sequence, remap every UID inside)."
)


def resolve(code: str, std_comp_iod: str, vr: str) -> str:
    """Resolve a basic-profile code (maybe a combination) to one action.

    >>> resolve("X/Z", "Y", "DA"), resolve("X/Z", "N", "DA"), resolve("X/Z/D", "Y", "SQ")
    ('Z', 'X', 'Z')
    >>> resolve("X/Z/U*", "Y", "SQ"), resolve("Z/D", "Y", "LO"), resolve("K", "Y", "CS")
    ('U', 'D', 'K')
    """
    choices = [c.rstrip("*") for c in code.split("/")]
    if len(choices) == 1:
        return choices[0]
    if std_comp_iod != "Y":
        return choices[0]
    if "U" in choices:
        return "U"
    if vr == "SQ" and "Z" in choices:
        return "Z"
    return choices[-1]


def _parse_tag(tag: str) -> tuple[int, int] | None:
    """Return (mask, value) for ``(GGGG,EEEE)`` with X wildcards, or None for the private row."""
    if "WHERE" in tag.upper():
        return None
    digits = tag.strip("()").replace(",", "").upper()
    if len(digits) != 8:
        raise ValueError(f"unexpected tag {tag!r}")
    mask = int("".join("0" if c == "X" else "F" for c in digits), 16)
    value = int("".join("0" if c == "X" else c for c in digits), 16)
    return mask, value


def build(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the project's profile document for the source rows."""
    attributes: list[dict[str, Any]] = []
    for row in rows:
        parsed = _parse_tag(row["tag"])
        keyword = vr = ""
        if parsed is not None and parsed[0] == 0xFFFFFFFF and dictionary_has_tag(parsed[1]):
            keyword = dictionary_keyword(parsed[1])
            vr = dictionary_VR(parsed[1])
        elif parsed is not None:
            # wildcard rows: the VR of the first concrete member of the repeating group
            probe = parsed[1] | 0  # e.g. (6000,3000)
            if dictionary_has_tag(probe):
                vr = dictionary_VR(probe)
        options = {OPTION_COLUMNS[col]: row[col] for col in OPTION_COLUMNS if col in row}
        entry: dict[str, Any] = {
            "tag": row["tag"].upper() if parsed is not None else row["tag"],
            "name": row["name"],
            "keyword": keyword,
            "vr": vr,
            "std_comp_iod": row["stdCompIOD"],
            "basic_profile": row["basicProfile"],
            "action": resolve(row["basicProfile"], row["stdCompIOD"], vr),
            "options": options,
        }
        if parsed is None:
            entry["private"] = True
        else:
            entry["tag_mask"] = f"{parsed[0]:08X}"
            entry["tag_value"] = f"{parsed[1]:08X}"
        attributes.append(entry)
    attributes.sort(key=lambda e: (e.get("tag_value", "ZZZZZZZZ"), e.get("tag_mask", "")))
    return {
        "attribution": ATTRIBUTION,
        "combination_rule": COMBINATION_RULE,
        "row_count": len(attributes),
        "attributes": attributes,
    }


def render(rows: list[dict[str, Any]]) -> str:
    """Return the output file's text (stable: sorted rows, sorted keys, trailing newline)."""
    return json.dumps(build(rows), indent=1, sort_keys=True, ensure_ascii=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default=str(DEFAULT_SOURCE))
    parser.add_argument("-o", "--output", default=str(DEFAULT_OUTPUT))
    args = parser.parse_args(argv)
    rows = json.loads(Path(args.source).read_text(encoding="utf-8"))
    if len(rows) != 621:
        print(f"warning: expected 621 rows, found {len(rows)}", file=sys.stderr)
    Path(args.output).write_text(render(rows), encoding="utf-8")
    print(f"wrote {len(rows)} rows to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
