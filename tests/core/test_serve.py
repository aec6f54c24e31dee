"""The HTTP service, started as ``dicomscrub serve`` on a free loopback port.

One service per test session (spaCy and the language models load once); the
clients are real: curl piped through jq and base64, ``requests``, and the
reference product's own thin client ``privateai-client``. The last test reads
the service's log for the key and PHI sent during the session.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import requests
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from support import TEST_SECRET, pydicom_test_file

MAX_BODY_MB = 8
CT_PHI = (b"CompressedSamples", b"JFK IMAGING", b"1.3.6.1.4.1.5962.1.2.1.20040119072730.12322")
# PHI of the generated file: in the header and burned into every frame.
GEN_NAME, GEN_MRN, GEN_BIRTH = "ROSEWOOD^HARRIET", "83920417", "19510829"
# Every value sent during the session that must never reach the service's log.
SENT_PHI = ["CompressedSamples", "JFK IMAGING", "ROSEWOOD", "HARRIET", GEN_MRN, "ZZZ TEST"]


@dataclass
class Service:
    url: str
    key: str
    log: Path

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"x-api-key": self.key if key is None else key}

    def post(
        self, body: Any, *, key: str | None = None, path: str = "/v4/process/files/base64"
    ) -> requests.Response:
        return requests.post(self.url + path, json=body, headers=self.headers(key), timeout=300)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    port = free_port()
    key = "test-key-" + secrets.token_hex(12)
    log = tmp_path_factory.mktemp("serve") / "server.log"
    env = {
        **os.environ,
        "DICOMSCRUB_API_KEY": key,
        "DICOMSCRUB_SECRET": TEST_SECRET,
        "OMP_THREAD_LIMIT": "1",
    }
    command = [
        sys.executable,
        "-m",
        "dicomscrub.core.cli",
        "serve",
        "--port",
        str(port),
        "--languages",
        "en,de,fr",
        "--max-body-mb",
        str(MAX_BODY_MB),
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"dicomscrub serve exited with {process.returncode}:\n{log.read_text()}"
                )
            try:
                if requests.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"dicomscrub serve did not come up:\n{log.read_text()}")
            time.sleep(0.5)
        yield Service(url=url, key=key, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def body_for(data: bytes, *, return_entity: bool = True) -> dict[str, Any]:
    return {
        "file": {"data": base64.b64encode(data).decode(), "content_type": "application/dicom"},
        "entity_detection": {"return_entity": return_entity},
    }


def decoded(response: dict[str, Any]) -> tuple[bytes, pydicom.Dataset]:
    data = base64.b64decode(response["processed_file"])
    return data, pydicom.dcmread(BytesIO(data))


def ocr_text(frame: np.ndarray) -> str:
    import pytesseract
    from PIL import Image

    return str(pytesseract.image_to_string(Image.fromarray(frame.astype(np.uint8))))


def burned_in_dicom(frames: int) -> bytes:
    """An 8-bit secondary capture with the patient's name and MRN burned into every frame."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=28)
    image = Image.new("L", (384, 320), 0)
    draw = ImageDraw.Draw(image)
    draw.ellipse((110, 120, 300, 300), fill=90)  # "anatomy"
    draw.text((16, 16), "ROSEWOOD, HARRIET", fill=255, font=font)
    draw.text((16, 56), f"MRN {GEN_MRN}", fill=255, font=font)
    pixels = np.stack([np.asarray(image)] * frames)

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sop_class = "1.2.840.10008.5.1.4.1.1.7.2" if frames > 1 else "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "OT"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = GEN_NAME, GEN_MRN, GEN_BIRTH
    ds.StudyDate = "20240305"
    ds.StudyDescription = "Chest follow-up"
    ds.BurnedInAnnotation = "YES"
    ds.Rows, ds.Columns = pixels.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = pixels.tobytes()
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


# --- start-up ------------------------------------------------------------------------------------
def run_serve(*extra: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "dicomscrub.core.cli", "serve", "--port", str(free_port())]
    return subprocess.run([*command, *extra], env=env, capture_output=True, text=True, timeout=120)


def test_refuses_to_start_without_an_api_key() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DICOMSCRUB_API_KEY"}
    run = run_serve(env={**env, "DICOMSCRUB_SECRET": TEST_SECRET})

    assert run.returncode == 2
    assert "DICOMSCRUB_API_KEY" in run.stderr
    assert "--insecure-no-api-key" in run.stderr
    assert "Traceback" not in run.stderr


def test_refuses_an_ephemeral_secret_shared_by_several_workers() -> None:
    env = {**os.environ, "DICOMSCRUB_API_KEY": "k", "DICOMSCRUB_SECRET": TEST_SECRET}
    run = run_serve("--workers", "2", "--ephemeral-secret", env=env)

    assert run.returncode == 2
    assert "--ephemeral-secret" in run.stderr


# --- the reference request with the usual clients ------------------------------------------------
@pytest.mark.slow
def test_curl_request_piped_through_jq_and_base64(service: Service, tmp_path: Path) -> None:
    for tool in ("curl", "jq", "base64"):
        assert shutil.which(tool), f"{tool} is not installed (make system-deps installs it)"
    source = pydicom_test_file("CT_small.dcm")
    output = tmp_path / "redacted.dcm"
    script = (
        'jq -n --rawfile data <(base64 -w 0 "$IN") '
        '\'{file: {data: $data, content_type: "application/dicom"}, '
        "entity_detection: {return_entity: true}}' "
        '| curl -sS --fail-with-body -X POST "$URL/v4/process/files/base64" '
        '-H "Content-Type: application/json" -H "x-api-key: $KEY" --data-binary @- '
        '| jq -r .processed_file | base64 -d > "$OUT"'
    )
    env = {**os.environ, "IN": str(source), "OUT": str(output), "URL": service.url}
    env["KEY"] = service.key
    run = subprocess.run(
        ["bash", "-o", "pipefail", "-c", script], env=env, capture_output=True, timeout=300
    )
    assert run.returncode == 0, run.stderr.decode()

    data = output.read_bytes()
    ds = pydicom.dcmread(output)
    assert ds.pixel_array.shape == (128, 128)
    for phi in CT_PHI:
        assert phi not in data
    assert str(ds.PatientName) != "CompressedSamples^CT1"


@pytest.mark.slow
def test_plain_requests_call(service: Service) -> None:
    response = service.post(body_for(pydicom_test_file("CT_small.dcm").read_bytes()))

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    data, _ = decoded(body)
    assert all(phi not in data for phi in CT_PHI)
    assert body["entities_present"] is True
    assert any(e["best_label"] == "NAME" for e in body["entities"])
    assert isinstance(body["processed_text"], str)
    assert isinstance(body["languages_detected"], dict)


@pytest.mark.slow
def test_path_without_v4_works_too(service: Service) -> None:
    data = pydicom_test_file("CT_small.dcm").read_bytes()
    response = service.post(body_for(data), path="/process/files/base64")
    assert response.status_code == 200, response.text


@pytest.mark.slow
def test_privateai_client_ping_version_and_process(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    import privateai_client
    from privateai_client import PAIClient, request_objects

    client = PAIClient(url=f"{service.url}/v4/", api_key=service.key)
    assert client.ping() is True
    assert client.get_version().app_version.split(".")[:2] == ["4", "2"]

    # The file the client's own integration test sends, from the installed package.
    path = Path(privateai_client.__file__).parent / "tests" / "test_files" / "demo-sequence.dcm"
    data = path.read_bytes()
    request = request_objects.file_base64_obj(
        file=request_objects.file_obj(
            data=base64.b64encode(data).decode("ascii"), content_type="application/dicom"
        ),
        entity_detection=request_objects.entity_detection_obj(return_entity=True),
    )
    with caplog.at_level(logging.WARNING):
        response = client.process_files_base64(request_object=request)
    assert "Version mismatch" not in caplog.text

    assert response.ok
    ds = pydicom.dcmread(BytesIO(base64.b64decode(response.processed_file)))
    source = pydicom.dcmread(path)
    assert ds.SOPInstanceUID != source.SOPInstanceUID
    assert ds.PatientID != source.PatientID
    assert ds.pixel_array.shape == source.pixel_array.shape
    assert isinstance(response.processed_text, str)
    assert response.entities_present is True
    assert len(response.best_labels) == len(response.entities)
    assert all(isinstance(e["location"], dict) for e in response.entities)


# --- errors --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_missing_or_wrong_key_is_401(service: Service) -> None:
    body = body_for(b"irrelevant")
    assert service.post(body, key="wrong-" + service.key).status_code == 401
    missing = requests.post(service.url + "/v4/process/files/base64", json=body, timeout=30)
    assert missing.status_code == 401
    assert missing.json()["error_code"] == "unauthorized"
    assert requests.get(service.url + "/v4/", timeout=30).status_code == 401
    assert requests.get(service.url + "/healthz", timeout=30).status_code == 200
    bearer = {"Authorization": f"Bearer {service.key}"}
    assert requests.get(service.url + "/v4/", headers=bearer, timeout=30).status_code == 200


@pytest.mark.slow
def test_oversized_body_is_413_before_it_is_read(service: Service) -> None:
    # Only the headers are sent: the service must answer from Content-Length alone.
    host, port = service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(
            b"POST /v4/process/files/base64 HTTP/1.1\r\nHost: x\r\n"
            + f"x-api-key: {service.key}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 50000000000\r\n\r\n"
        )
        head = conn.recv(4096)
    assert head.startswith(b"HTTP/1.1 413 ")

    too_big = b"A" * (MAX_BODY_MB * 1024 * 1024 + 1)
    declared = requests.post(
        service.url + "/v4/process/files/base64",
        data=too_big,
        headers={**service.headers(), "Content-Type": "application/json"},
        timeout=60,
    )
    assert declared.status_code == 413
    assert declared.json()["error_code"] == "request_too_large"

    chunked = requests.post(  # no Content-Length: counted while streaming
        service.url + "/v4/process/files/base64",
        data=iter([too_big[: len(too_big) // 2], too_big[len(too_big) // 2 :]]),
        headers={**service.headers(), "Content-Type": "application/json"},
        timeout=60,
    )
    assert chunked.status_code == 413


@pytest.mark.slow
def test_not_dicom_is_a_clear_4xx(service: Service) -> None:
    text = b"Report for ROSEWOOD HARRIET, MRN 83920417: no acute findings.\n" * 10
    response = service.post(body_for(text))

    assert response.status_code == 422
    assert response.json()["error_code"] == "not_dicom"
    assert "ROSEWOOD" not in response.text
    assert GEN_MRN not in response.text


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"file": {"data": "QUJD", "content_type": "image/png"}}, 415, "unsupported_content_type"),
        ({"file": {"data": "%%%", "content_type": "application/dicom"}}, 400, "invalid_base64"),
        ({"file": {"content_type": "application/dicom"}}, 422, "invalid_request"),
    ],
)
@pytest.mark.slow
def test_bad_requests_are_clear_4xx(service: Service, body: Any, status: int, code: str) -> None:
    response = service.post(body)
    assert (response.status_code, response.json()["error_code"]) == (status, code)


@pytest.mark.slow
def test_wrong_http_content_type_and_bad_json(service: Service) -> None:
    url = service.url + "/v4/process/files/base64"
    form = requests.post(url, data={"file": "x"}, headers=service.headers(), timeout=30)
    assert (form.status_code, form.json()["error_code"]) == (415, "unsupported_media_type")
    broken = requests.post(
        url,
        data=b'{"file": ',
        headers={**service.headers(), "Content-Type": "application/json"},
        timeout=30,
    )
    assert (broken.status_code, broken.json()["error_code"]) == (400, "invalid_json")


# --- pixels and frames ---------------------------------------------------------------------------
@pytest.mark.slow
def test_multi_frame_file_with_burned_in_phi(service: Service) -> None:
    data = burned_in_dicom(frames=3)
    source = pydicom.dcmread(BytesIO(data))
    assert "ROSEWOOD" in ocr_text(source.pixel_array[0])  # the test can fail

    response = service.post(body_for(data))
    assert response.status_code == 200, response.text
    body = response.json()
    out, ds = decoded(body)

    assert int(ds.NumberOfFrames) == 3
    assert ds.pixel_array.shape == (3, 320, 384)
    for phi in (b"ROSEWOOD", GEN_MRN.encode(), GEN_BIRTH.encode()):
        assert phi not in out
    for index in range(3):
        seen = ocr_text(ds.pixel_array[index])
        assert "ROSEWOOD" not in seen
        assert "HARRIET" not in seen
        assert GEN_MRN not in seen.replace(" ", "")
    # the anatomy outside the text stays as it was
    assert np.array_equal(ds.pixel_array[:, 150:, :], source.pixel_array[:, 150:, :])
    pixel = [e for e in body["entities"] if "frame" in e["location"]]
    assert {e["location"]["frame"] for e in pixel} == {0, 1, 2}
    for entity in pixel:
        loc = entity["location"]
        assert 0.0 <= loc["x0"] < loc["x1"] <= 1.0
        assert 0.0 <= loc["y0"] < loc["y1"] <= 1.0
        assert len(loc["box"]) == 4


@pytest.mark.slow
@pytest.mark.shared_data
def test_burned_in_mrn_of_a_real_ultrasound_is_masked(service: Service, shared_dicom: Path) -> None:
    path = shared_dicom / "deid-data" / "GREYSCALE_IMAGE.dcm"
    source = pydicom.dcmread(path)
    top_bar = source.pixel_array[:60]
    assert "00079241539" in ocr_text(top_bar).replace(" ", "")  # the MRN, not in the header

    response = service.post(body_for(path.read_bytes()))
    assert response.status_code == 200, response.text
    out, ds = decoded(response.json())

    assert b"ZZZ TEST" not in out
    assert b"2020202020202" not in out
    seen = ocr_text(ds.pixel_array[:60]).replace(" ", "")
    assert "00079241539" not in seen
    assert "PATIENTFI" not in seen.upper()


# --- logs (keep last: reads what the session sent) -----------------------------------------------
@pytest.mark.slow
def test_log_holds_routes_but_no_key_secret_or_phi(service: Service) -> None:
    requests.get(service.url + "/v4/process/files/base64?patient=ROSEWOOD", timeout=30)
    time.sleep(0.5)
    log = service.log.read_text(errors="replace")

    assert "POST /v4/process/files/base64 200" in log
    assert "POST /v4/process/files/base64 401" in log
    assert service.key not in log
    assert TEST_SECRET not in log
    for phi in SENT_PHI:
        assert phi not in log
    assert "Traceback" not in log
