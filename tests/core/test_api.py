"""The drop-in API function: request dict -> response dict, with the real engine.

These run in-process (no HTTP); ``test_serve.py`` covers the service.
"""

from __future__ import annotations

import base64
import json
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
import pytest

from dicomscrub.core.api import (
    ApiError,
    LanguageIdentifier,
    ProcessedText,
    process_files_base64,
)
from support import TEST_SECRET, pydicom_test_file

CT_PHI = (b"CompressedSamples", b"JFK IMAGING", b"1.3.6.1.4.1.5962.1.2.1.20040119072730.12322")


@pytest.fixture(scope="module")
def engine() -> Any:
    from dicomscrub.core.pipeline import Engine

    return Engine(secret=TEST_SECRET, keep_raw_text=True)


@pytest.fixture(scope="module")
def languages() -> LanguageIdentifier:
    return LanguageIdentifier(["en", "de", "fr", "es"])


def body_for(data: bytes, *, return_entity: bool = True) -> dict[str, Any]:
    return {
        "file": {"data": base64.b64encode(data).decode(), "content_type": "application/dicom"},
        "entity_detection": {"return_entity": return_entity},
    }


def dicom_bytes(ds: pydicom.Dataset) -> bytes:
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def returned_dataset(response: dict[str, Any]) -> pydicom.Dataset:
    return pydicom.dcmread(BytesIO(base64.b64decode(response["processed_file"])))


def test_response_has_the_reference_shape_and_no_header_phi(
    engine: Any, languages: LanguageIdentifier
) -> None:
    data = pydicom_test_file("CT_small.dcm").read_bytes()
    response = process_files_base64(body_for(data), engine, languages=languages)

    assert {"processed_file", "processed_text", "entities", "entities_present"} <= set(response)
    assert isinstance(response["languages_detected"], dict)
    output = base64.b64decode(response["processed_file"])
    ds = pydicom.dcmread(BytesIO(output))
    assert ds.Rows == 128
    assert ds.pixel_array.shape == (128, 128)
    for phi in CT_PHI:
        assert phi not in output
        assert phi.decode() not in response["processed_text"]
    assert response["entities_present"] is True
    for entity in response["entities"]:
        assert isinstance(entity["processed_text"], str)
        label = entity["best_label"]
        assert set(entity["labels"]) == {label}
        assert 0.0 < entity["labels"][label] <= 1.0
        assert "location" in entity

    name = next(e for e in response["entities"] if e["location"].get("attribute") == "PatientName")
    assert name["text"] == "CompressedSamples^CT1"
    assert name["best_label"] == "NAME"
    assert name["processed_text"] == str(ds.PatientName)
    loc = name["location"]
    assert (loc["tag"], loc["stt_idx"], loc["end_idx"]) == ("(0010,0010)", 0, 21)
    text = response["processed_text"]
    assert text[loc["stt_idx_processed"] : loc["end_idx_processed"]] == name["processed_text"]
    assert f"PatientName: {ds.PatientName}" in text.splitlines()


def test_processed_text_locations_point_at_each_replacement(
    engine: Any, languages: LanguageIdentifier
) -> None:
    ds = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))
    ds.PatientName = "SMITH^JOHN"
    ds.StudyDescription = "CT abdomen for John Smith, call 555-867-5309"
    response = process_files_base64(body_for(dicom_bytes(ds)), engine, languages=languages)

    text = response["processed_text"]
    located = 0
    for entity in response["entities"]:
        loc = entity["location"]
        if loc.get("stt_idx_processed") is not None:
            located += 1
            assert (
                text[loc["stt_idx_processed"] : loc["end_idx_processed"]]
                == entity["processed_text"]
            )
    assert located >= 3
    spans = [e for e in response["entities"] if e["action"] == "cleaned"]
    assert any(e["location"]["attribute"] == "StudyDescription" for e in spans)
    for span in spans:
        loc = span["location"]
        original = str(ds[loc["attribute"]].value)
        assert original[loc["stt_idx"] : loc["end_idx"]] == span["text"]
    assert "John" not in text
    assert "Smith" not in text
    assert "867-5309" not in text


def test_return_entity_false_returns_no_entity_text(
    engine: Any, languages: LanguageIdentifier
) -> None:
    data = pydicom_test_file("CT_small.dcm").read_bytes()
    response = process_files_base64(
        body_for(data, return_entity=False), engine, languages=languages
    )

    assert response["entities"]
    assert all("text" not in entity for entity in response["entities"])
    visible = json.dumps({k: v for k, v in response.items() if k != "processed_file"})
    for phi in CT_PHI:
        assert phi.decode() not in visible


def test_languages_come_from_the_header_free_text(
    engine: Any, languages: LanguageIdentifier
) -> None:
    ds = pydicom.dcmread(pydicom_test_file("CT_small.dcm"))
    ds.StudyDescription = "Thorax ohne Kontrastmittel nach Lungenentzündung"
    ds.ImageComments = "Keine frischen Infiltrate im Vergleich zur Voruntersuchung"
    response = process_files_base64(body_for(dicom_bytes(ds)), engine, languages=languages)

    detected = response["languages_detected"]
    assert max(detected, key=detected.get) == "de"
    assert detected["de"] > 0.5


def test_multi_frame_file_is_processed(engine: Any, languages: LanguageIdentifier) -> None:
    source = pydicom.dcmread(pydicom_test_file("emri_small.dcm"))
    response = process_files_base64(
        body_for(pydicom_test_file("emri_small.dcm").read_bytes()), engine, languages=languages
    )

    ds = returned_dataset(response)
    assert int(ds.NumberOfFrames) == 10
    assert ds.pixel_array.shape == (10, 64, 64)
    assert ds.SOPInstanceUID != source.SOPInstanceUID
    assert response["dicomscrub"]["frames"] == 10


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"file": {"data": "QUJD", "content_type": "image/png"}}, 415, "unsupported_content_type"),
        ({"file": {"data": "@@@", "content_type": "application/dicom"}}, 400, "invalid_base64"),
        ({"file": {"content_type": "application/dicom"}}, 422, "invalid_request"),
        ({"entity_detection": {"return_entity": True}}, 422, "invalid_request"),
        (["not", "an", "object"], 422, "invalid_request"),
        (
            {"file": {"data": "", "content_type": "application/dicom"}},
            422,
            "empty_file",
        ),
    ],
)
def test_bad_requests_raise_api_errors(
    engine: Any, languages: LanguageIdentifier, body: Any, status: int, code: str
) -> None:
    with pytest.raises(ApiError) as info:
        process_files_base64(body, engine, languages=languages)
    assert (info.value.status, info.value.code) == (status, code)


def test_not_dicom_is_a_422_without_the_input_in_the_message(
    engine: Any, languages: LanguageIdentifier
) -> None:
    data = b"Patient: Jane Roe, MRN 44501982. Not a DICOM file at all.\n" * 20
    with pytest.raises(ApiError) as info:
        process_files_base64(body_for(data), engine, languages=languages)
    assert (info.value.status, info.value.code) == (422, "not_dicom")
    assert "Roe" not in info.value.message
    assert "44501982" not in info.value.message


def test_processed_text_lists_nested_elements_with_their_path(tmp_path: Path) -> None:
    ds = pydicom.Dataset()
    ds.PatientName = "PAT-1"
    item = pydicom.Dataset()
    item.ReferencedSOPInstanceUID = "2.25.1"
    ds.ReferencedStudySequence = [item]
    text = ProcessedText.from_dataset(ds)

    assert text.text.splitlines() == [
        "ReferencedStudySequence[0].ReferencedSOPInstanceUID: 2.25.1",
        "PatientName: PAT-1",
    ]
    start, value = text.values[("ReferencedStudySequence[0]", "(0008,1155)")]
    assert text.text[start : start + len(value)] == "2.25.1"
