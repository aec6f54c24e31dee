"""Keyed pseudonyms: forms, determinism across processes, secrets, date shifting, ages."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dicomscrub.core.dates import cap_age, shift_da, shift_dt
from dicomscrub.core.errors import ConfigurationError
from dicomscrub.core.pipeline import Engine
from dicomscrub.core.pseudonyms import Pseudonymizer
from support import pydicom_test_file

SECRET = "pseudonym-test-secret"
B32 = "[A-Z2-7]"


def test_forms() -> None:
    p = Pseudonymizer(SECRET)
    uid = p.uid("1.2.840.113619.2.55.3.604688119.969.1268071029.320")
    assert re.fullmatch(r"2\.25\.(0|[1-9]\d*)", uid)
    assert len(uid) <= 64
    assert re.fullmatch(rf"PATIENT\^{B32}{{10}}", p.name("DOE^JANE", patient=True))
    assert re.fullmatch(rf"PERSON\^{B32}{{10}}", p.name("SMITH^JOHN"))
    assert re.fullmatch(rf"PID-{B32}{{12}}", p.identifier("12345", "PID"))
    assert re.fullmatch(rf"ANON{B32}{{12}}", p.token("Springfield General", 16))
    assert re.fullmatch(r"[0-9a-f]{64}", p.hmac("DOE^JANE"))


def test_same_input_same_output_different_secret_different_output() -> None:
    a, b, c = Pseudonymizer(SECRET), Pseudonymizer(SECRET), Pseudonymizer("other")
    for method, value in ((Pseudonymizer.uid, "1.2.3.4"), (Pseudonymizer.hmac, "x")):
        assert method(a, value) == method(b, value) != method(c, value)
    assert a.name("DOE^JANE") == a.name("doe jane") == a.name(" DOE^JANE^^ ")  # normalised
    assert a.uid("1.2.3.4") == a.uid("1.2.3.4\x00")
    assert a.identifier("12345", "PID") != a.identifier("12345", "ACC")  # per kind
    assert a.hmac("1.2.3.4") not in a.uid("1.2.3.4")  # separate sub-keys


def test_date_offset_is_per_patient_and_bounded() -> None:
    p = Pseudonymizer(SECRET)
    offsets = {p.date_offset_days(f"id:{i}|") for i in range(200)}
    assert all(-3652 <= o <= -1 for o in offsets)
    assert len(offsets) > 150  # spread out
    assert p.date_offset_days("id:1|") == Pseudonymizer(SECRET).date_offset_days("id:1|")


_CHILD = """
import json, sys
from dicomscrub.core.pipeline import Engine
from dicomscrub.core.pseudonyms import Pseudonymizer
p = Pseudonymizer(sys.argv[1])
engine = Engine({"pixels": {"mode": "off"}}, secret=sys.argv[1])
out, result = engine.process_bytes(open(sys.argv[2], "rb").read())
print(json.dumps({"uid": p.uid("1.2.3.4"), "name": p.name("DOE^JANE", patient=True),
                  "id": p.identifier("12345", "PID"), "offset": p.date_offset_days("id:7|"),
                  "uids": result.uids, "sha": __import__("hashlib").sha256(out).hexdigest()}))
"""


def test_two_separate_processes_agree() -> None:
    source = pydicom_test_file("CT_small.dcm")
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", _CHILD, SECRET, str(source)],
                check=True,
                capture_output=True,
                text=True,
                env={"PYTHONHASHSEED": str(seed), "PATH": "/usr/bin:/bin"},
            ).stdout
        )
        for seed in (1, 2)
    ]
    assert runs[0] == runs[1]  # byte-identical output files, same pseudonyms
    p = Pseudonymizer(SECRET)
    assert runs[0]["uid"] == p.uid("1.2.3.4")
    assert runs[0]["offset"] == p.date_offset_days("id:7|")
    _, here = Engine({"pixels": {"mode": "off"}}, secret=SECRET).process_bytes(
        Path(source).read_bytes()
    )
    assert runs[0]["uids"] == here.uids


def test_secret_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DICOMSCRUB_SECRET", raising=False)
    with pytest.raises(ConfigurationError, match="DICOMSCRUB_SECRET"):
        Engine.from_env()
    with pytest.raises(ConfigurationError, match="secret"):
        Engine(None, secret=None)
    with pytest.raises(ConfigurationError, match="MY_KEY"):
        Pseudonymizer.from_env("MY_KEY")
    monkeypatch.setenv("MY_KEY", "value")
    assert Engine.from_env(secret_env="MY_KEY").pseudonymizer.uid("1.2") == Pseudonymizer(
        "value"
    ).uid("1.2")


def test_ephemeral_secret_warns_and_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DICOMSCRUB_SECRET", raising=False)
    with pytest.warns(UserWarning, match="will not match"):
        first = Engine.from_env(ephemeral_secret=True)
    with pytest.warns(UserWarning, match="will not match"):
        second = Engine.from_env(ephemeral_secret=True)
    assert first.pseudonymizer.uid("1.2.3") != second.pseudonymizer.uid("1.2.3")


@pytest.mark.parametrize(
    ("value", "days", "expected"),
    [
        ("20200301", -1, "20200229"),
        ("2020.03.01", -1, "20200229"),  # legacy ACR-NEMA form
        ("20200101-20200131", -10, "20191222-20200121"),
        ("-20200131", -10, "-20200121"),
        ("20200101-", -10, "20191222-"),
        ("", -5, ""),
    ],
)
def test_shift_da(value: str, days: int, expected: str) -> None:
    assert shift_da(value, days) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20200301120000", "20200229120000"),
        ("20200301120000.123456", "20200229120000.123456"),
        ("20200301120000-0500", "20200229120000-0500"),
        ("202003", "202002"),
        ("2020", "2019"),
        ("20200301-20200302", "20200229-20200301"),
    ],
)
def test_shift_dt(value: str, expected: str) -> None:
    assert shift_dt(value, -1) == expected


@pytest.mark.parametrize("bad", ["garbage", "20201301", "2020-03-01", "20200230"])
def test_invalid_dates_raise(bad: str) -> None:
    with pytest.raises(ValueError, match=r"DA|DT|day|month"):
        shift_da(bad, -1)


@pytest.mark.parametrize(
    ("age", "expected"),
    [("089Y", "089Y"), ("090Y", "090Y"), ("103Y", "090Y"), ("999M", "999M"),
     ("030W", "030W"), ("", ""), ("junk", "junk")],
)  # fmt: skip
def test_cap_age(age: str, expected: str) -> None:
    assert cap_age(age) == expected
