"""Damaged inputs: random bytes flipped, cut, inserted and deleted in real files.

Every damaged file must end as ``ok`` or with the code of what is wrong with it: never
``internal_error``, never an exception out of the engine (a Rust codec's panic is no
``Exception``), never a written file for a failure. The seed is fixed, so a failure
here reproduces; a longer campaign over the corpus found the cases
``test_pipeline.test_damaged_inputs_fail_with_their_own_code_not_internal_error`` keeps.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from dicomscrub.core.pipeline import Engine
from support import pydicom_test_file

FILES = (
    "CT_small.dcm",
    "MR_small_RLE.dcm",
    "rtplan.dcm",
    "OBXXXX1A.dcm",
    "SC_rgb_rle.dcm",
    "image_dfl.dcm",
    "JPEG2000.dcm",
)


def damage(data: bytes, rng: random.Random) -> bytes:
    """One random change of the kinds a broken transfer or disk makes."""
    out = bytearray(data)
    kind = rng.choice(("flip", "cut", "insert", "delete", "length"))
    at = rng.randrange(len(out))
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif kind == "cut":
        del out[at:]
    elif kind == "insert":
        out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif kind == "delete":
        del out[at : at + rng.randint(1, 16)]
    else:  # four bytes of an element header or length in the first 4 KB
        at = rng.randrange(132, min(len(out), 4096)) & ~1
        out[at : at + 4] = bytes(rng.randrange(256) for _ in range(4))
    return bytes(out)


@pytest.mark.parametrize(
    ("policy", "count"), [({"pixels": {"mode": "off"}}, 400), (None, 60)], ids=["header", "pixels"]
)
def test_damaged_files_fail_closed_with_a_code(
    policy: dict[str, object] | None, count: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUST_BACKTRACE", "0")
    engine = Engine(policy, secret="fuzz-test-secret")
    sources = [pydicom_test_file(name).read_bytes() for name in FILES]
    rng = random.Random(20261125)
    codes: dict[str, int] = {}
    for index in range(count):
        data = damage(rng.choice(sources), rng)
        source = tmp_path / f"in-{index}.dcm"
        source.write_bytes(data)
        target = tmp_path / f"out-{index}.dcm"
        result = engine.process_file(str(source), str(target))  # must not raise
        code = result.error_code or "ok"
        codes[code] = codes.get(code, 0) + 1
        assert code != "internal_error", (index, result.error_message)
        assert target.exists() == (code == "ok"), (index, code)
        assert source.read_bytes() == data  # the input is never modified
        os.remove(source)
    assert codes.get("ok", 0) > 0  # a fuzzer that breaks every file tests only the parser
    assert len(codes) >= 3, codes
