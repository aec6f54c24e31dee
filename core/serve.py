"""The HTTP service: the reference product's base64 file endpoint, served locally.

``dicomscrub serve`` answers the same request as the hosted service that many
teams already call, so existing code (including the thin client
``privateai-client``) works against a service inside their own network:

===========================================  ======================================================
``POST /v4/process/files/base64``            de-identify one DICOM file (also without ``/v4``)
``GET /healthz``, ``GET /v4/healthz``        liveness, no key needed (the client's ``ping()``)
``GET /``, ``GET /v4/``                      version (the client's version check reads
                                             ``app_version``)
===========================================  ======================================================

Every route but ``/healthz`` needs the key from the environment in an
``x-api-key`` header (or ``Authorization: Bearer <key>``), compared in constant
time. Bodies larger than the limit are refused with 413 before they are read
into memory. The work runs in a worker thread (one request at a time per
process by default), so health checks stay responsive. The access log shows
method, route, status and duration only: never a body, a query string, the
key or a value from a file.

The request handling itself lives in :mod:`dicomscrub.core.api`; this module
only adds HTTP.

Examples
--------
>>> from dicomscrub.core.api import LanguageIdentifier
>>> from dicomscrub.core.pipeline import Engine
>>> app = create_app(Engine(secret="doctest"), api_key="k3y",
...                  languages=LanguageIdentifier(["en", "de"]))
>>> sorted(route.path for route in app.routes)
['/', '/healthz', '/process/files/base64', '/v4/', '/v4/healthz', '/v4/process/files/base64']
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import time
import warnings
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass
from io import BytesIO
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import FastAPI, Request, Response

from . import __version__
from .api import ApiError, LanguageIdentifier, process_files_base64
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .pipeline import Engine

log = logging.getLogger("dicomscrub.serve")

#: The reference API version this service answers as (``app_version``): the thin
#: client compares its own major.minor version with it and warns on a mismatch.
REFERENCE_API_VERSION = "4.2.0"

PROCESS_PATHS = ("/v4/process/files/base64", "/process/files/base64")
HEALTH_PATHS = ("/healthz", "/v4/healthz")
VERSION_PATHS = ("/", "/v4/")
KNOWN_PATHS = frozenset((*PROCESS_PATHS, *HEALTH_PATHS, *VERSION_PATHS, "/v4"))

#: Environment variable carrying the non-secret settings to worker processes.
OPTIONS_ENV = "DICOMSCRUB_SERVE_OPTIONS"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _json_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _error(status: int, code: str, message: str) -> tuple[int, bytes]:
    return status, _json_bytes(ApiError(status, code, message).to_body())


class AccessLog:
    """ASGI middleware logging one line per request: method, route, status, seconds.

    Paths that are not routes of this service are logged as ``<other>``, and
    query strings never, so nothing a client puts in a URL reaches the log.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            path = scope.get("path", "")
            log.info(
                "%s %s %d %.3fs",
                scope.get("method", "?"),
                path if path in KNOWN_PATHS else "<other>",
                status,
                time.perf_counter() - started,
            )


def create_app(
    engine: Engine,
    *,
    api_key: str | None,
    languages: LanguageIdentifier,
    max_body_bytes: int = 64 * 1024 * 1024,
    concurrency: int = 1,
) -> FastAPI:
    """Build the FastAPI application around one engine.

    Parameters
    ----------
    engine
        The engine, built once per process with ``keep_raw_text=True``.
    api_key
        The key clients must send; ``None`` turns authentication off (only for
        a loopback test set-up; :func:`serve_cli` requires an explicit flag).
    languages
        The language identifier, shared by all requests.
    max_body_bytes
        Larger request bodies are refused with 413 before being read.
    concurrency
        Requests processed at the same time (worker threads) in this process.
    """
    limiter: anyio.CapacityLimiter | None = None
    # compare digests: constant time, and the key's length does not leak either
    expected_key = _digest(api_key) if api_key is not None else None

    app = FastAPI(
        title="dicomscrub",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    def json_response(status: int, content: bytes) -> Response:
        return Response(content=content, status_code=status, media_type="application/json")

    def authorized(request: Request) -> bool:
        if expected_key is None:
            return True
        given = request.headers.get("x-api-key")
        if given is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            given = token.strip() if scheme.lower() == "bearer" else None
        if given is None:
            return False
        return hmac.compare_digest(_digest(given), expected_key)

    def unauthorized() -> Response:
        return json_response(*_error(401, "unauthorized", "missing or wrong API key (x-api-key)"))

    async def read_body(request: Request) -> bytes | Response:
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                return json_response(*_error(400, "invalid_request", "bad Content-Length"))
            if int(declared) > max_body_bytes:
                return too_large()
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                return too_large()
        return bytes(body)

    def too_large() -> Response:
        response = json_response(
            *_error(
                413,
                "request_too_large",
                f"the request body is larger than the limit of {max_body_bytes} bytes",
            )
        )
        response.headers["Connection"] = "close"
        return response

    def answer(raw: bytes) -> tuple[int, bytes]:
        """Parse, de-identify and serialize: the CPU-bound part, run in a worker thread."""
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return _error(400, "invalid_json", "the request body is not valid JSON")
        try:
            return 200, _json_bytes(process_files_base64(body, engine, languages=languages))
        except ApiError as exc:
            return exc.status, _json_bytes(exc.to_body())
        except Exception as exc:  # never a traceback or a message that might hold PHI
            log.error("internal error while processing a file (%s)", type(exc).__name__)
            return _error(500, "internal_error", "internal error; see the service log")

    async def process(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            return json_response(
                *_error(
                    415,
                    "unsupported_media_type",
                    "send the request body as JSON (Content-Type: application/json)",
                )
            )
        raw = await read_body(request)
        if isinstance(raw, Response):
            return raw
        nonlocal limiter
        if limiter is None:  # created inside the event loop, shared by all requests
            limiter = anyio.CapacityLimiter(concurrency)
        status, content = await anyio.to_thread.run_sync(answer, raw, limiter=limiter)
        return json_response(status, content)

    async def health() -> dict[str, str]:
        return {"status": "ok"}

    async def version(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        body = {
            "app_version": REFERENCE_API_VERSION,
            "dicomscrub_version": __version__,
            "policy": engine.policy.name,
            "policy_hash": engine.policy_hash,
        }
        return json_response(200, _json_bytes(body))

    for path in PROCESS_PATHS:
        app.add_api_route(path, process, methods=["POST"], include_in_schema=False)
    for path in HEALTH_PATHS:
        app.add_api_route(path, health, methods=["GET"], include_in_schema=False)
    for path in VERSION_PATHS:
        app.add_api_route(path, version, methods=["GET"], include_in_schema=False)
    app.add_middleware(AccessLog)
    return app


# --- settings and start-up -----------------------------------------------------------------------
@dataclass(frozen=True)
class ServeOptions:
    """The service settings that are not secrets (secrets stay in the environment)."""

    policy: str | None = None
    secret_env: str = "DICOMSCRUB_SECRET"
    ephemeral_secret: bool = False
    api_key_env: str = "DICOMSCRUB_API_KEY"
    insecure_no_api_key: bool = False
    max_body_bytes: int = 64 * 1024 * 1024
    languages: tuple[str, ...] | None = None
    concurrency: int = 1

    def api_key(self) -> str | None:
        """The key from the environment; ``None`` only when explicitly insecure."""
        key = os.environ.get(self.api_key_env, "")
        if key:
            return key
        if self.insecure_no_api_key:
            return None
        raise ConfigurationError(
            f"set the API key in ${self.api_key_env} (clients send it as x-api-key), "
            "or pass --insecure-no-api-key for a local test set-up"
        )

    def to_env(self) -> str:
        """Serialize for worker processes."""
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServeOptions:
        """Read the settings :func:`serve_cli` left for worker processes."""
        data = json.loads(os.environ.get(OPTIONS_ENV, "{}"))
        if data.get("languages") is not None:
            data["languages"] = tuple(data["languages"])
        return cls(**data)


def self_test_file() -> bytes:
    """A small synthetic DICOM file (no real data) that exercises every engine step.

    Examples
    --------
    >>> import pydicom, io
    >>> pydicom.dcmread(io.BytesIO(self_test_file())).Rows
    64
    """
    import numpy as np
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "OT"
    ds.PatientName, ds.PatientID = "SELFTEST^START", "SELFTEST"
    ds.StudyDescription = "Start-up self-test for Jane Example"
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.zeros((64, 64), dtype=np.uint8).tobytes()
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def self_test(engine: Engine) -> None:
    """De-identify :func:`self_test_file` once: loads the models before the port opens.

    Raises :class:`ConfigurationError` when the engine cannot process it
    (for example tesseract missing), so a broken service never starts.
    """
    started = time.perf_counter()
    output, result = engine.process_bytes(self_test_file(), source="<self-test>")
    if output is None:
        raise ConfigurationError(
            f"the engine failed its start-up self-test: {result.error_code}: {result.error_message}"
        )
    log.info("engine ready (self-test %.1fs)", time.perf_counter() - started)


def build_app(options: ServeOptions) -> FastAPI:
    """Build the engine, load its models and the language models, and build the app."""
    from .pipeline import Engine

    # A server prints no Python warnings: pydicom's value warnings can quote a value.
    warnings.simplefilter("ignore")
    api_key = options.api_key()
    engine = Engine.from_env(
        options.policy,
        secret_env=options.secret_env,
        ephemeral_secret=options.ephemeral_secret,
        keep_raw_text=True,
    )
    self_test(engine)
    languages = LanguageIdentifier(options.languages)
    languages.warm_up()
    return create_app(
        engine,
        api_key=api_key,
        languages=languages,
        max_body_bytes=options.max_body_bytes,
        concurrency=options.concurrency,
    )


def app_from_environment() -> FastAPI:
    """App factory for uvicorn worker processes (``--workers`` > 1)."""
    # a spawned worker starts with unconfigured logging: set it up as the CLI does
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return build_app(ServeOptions.from_env())


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_cli(args: argparse.Namespace) -> int:
    """Run ``dicomscrub serve``: build the engine, then serve until interrupted.

    Configuration problems (no API key, no secret, a bad policy or language
    list) raise :class:`ConfigurationError` before anything listens.
    """
    import uvicorn

    languages = args.languages.split(",") if args.languages else None
    workers = max(1, int(args.workers))
    if workers > 1 and args.ephemeral_secret:
        raise ConfigurationError(
            "--ephemeral-secret gives every worker its own key; use a secret with --workers"
        )
    options = ServeOptions(
        policy=args.policy,
        secret_env=args.secret_env,
        ephemeral_secret=args.ephemeral_secret,
        api_key_env=args.api_key_env,
        insecure_no_api_key=args.insecure_no_api_key,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        languages=tuple(languages) if languages else None,
        concurrency=max(1, int(args.concurrency)),
    )
    if options.api_key() is None:
        log.warning("no API key: every client on %s can use this service", args.host)
    if not _is_loopback(args.host):
        log.warning("listening on %s, not loopback: put TLS in front of this service", args.host)
    settings: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "access_log": False,  # AccessLog logs routes only, never query strings
        "server_header": False,
        "log_level": "info",
    }
    if workers == 1:
        uvicorn.run(build_app(options), **settings)
    else:
        if not os.environ.get(options.secret_env):
            raise ConfigurationError(f"set the pseudonymization secret in ${options.secret_env}")
        os.environ[OPTIONS_ENV] = options.to_env()
        uvicorn.run(
            "dicomscrub.core.serve:app_from_environment", factory=True, workers=workers, **settings
        )
    return 0
