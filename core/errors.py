"""Error codes for files that cannot be de-identified.

Every failure the engine reports carries one :class:`ErrorCode` and a message
that never contains a value read from the file (no PHI): messages name
attributes, sizes and transfer syntaxes, never patient data.

Examples
--------
>>> err = DeidError(ErrorCode.NOT_DICOM, "no DICM prefix and no valid element at offset 0")
>>> err.code.value
'not_dicom'
>>> str(err)
'not_dicom: no DICM prefix and no valid element at offset 0'
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from enum import StrEnum


class ErrorCode(StrEnum):
    """Why a file was not written. The values are stable: they go into the audit."""

    EMPTY_FILE = "empty_file"
    NOT_DICOM = "not_dicom"
    TRUNCATED = "truncated"
    INVALID_VALUE = "invalid_value"
    SEQUENCE_TOO_DEEP = "sequence_too_deep"
    UNSUPPORTED_TRANSFER_SYNTAX = "unsupported_transfer_syntax"
    TOO_MANY_PIXELS = "too_many_pixels"
    DECODE_FAILED = "decode_failed"
    OCR_UNAVAILABLE = "ocr_unavailable"
    OCR_FAILED = "ocr_failed"
    ENCODE_FAILED = "encode_failed"
    READ_FAILED = "read_failed"
    WRITE_FAILED = "write_failed"
    VERIFY_FAILED = "verify_failed"
    INTERNAL_ERROR = "internal_error"
    #: The worker process died (native crash, killed, out of memory) on this file, also when
    #: it was retried alone: the batch runner records it and goes on with the other files.
    WORKER_CRASHED = "worker_crashed"
    #: The file was still running after the pool's per-file time limit, also when retried
    #: alone (a hang in a library): its worker was stopped and nothing was written.
    WORKER_TIMEOUT = "worker_timeout"


class DeidError(Exception):
    """A file could not be fully de-identified.

    Parameters
    ----------
    code
        The stable error code recorded in the audit.
    message
        A human-readable reason. It must never contain a value read from the
        file (no names, IDs, dates or free text).
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message


class ConfigurationError(ValueError):
    """The engine was configured wrongly (no secret, an unreadable policy, ...).

    Raised before any file is touched; the message says what to do.
    """


def is_library_failure(exc: BaseException) -> bool:
    """Whether ``exc``, raised inside a library on one file's data, fails just that file.

    Any :class:`Exception`, and the panic of an extension written in Rust: pyo3's
    ``PanicException`` (raised by the RLE codec on some malformed data) derives from
    :class:`BaseException` so that ``except Exception`` does not swallow it. Interrupts
    and exits are not failures of a file.

    >>> is_library_failure(ValueError()), is_library_failure(KeyboardInterrupt())
    (True, False)
    """
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


#: pydicom's loggers that record every failed codec attempt with its traceback.
_CODEC_LOGGERS = ("pydicom.pixels.decoders.base", "pydicom.pixels.encoders.base")
_quiet = threading.local()


class _DropWhileQuiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_quiet, "depth", 0)


_DROP = _DropWhileQuiet()


@contextlib.contextmanager
def quiet_codec_logs() -> Iterator[None]:
    """Drop pydicom's codec error logs (with tracebacks) in this thread, inside the block.

    pydicom logs each decoder or encoder that fails, traceback included, before it
    raises; the engine turns that exception into its own error code and message,
    so the log would only repeat it as a traceback in the user's output. Logs of
    other threads, and of pydicom used outside the block, are untouched.

    >>> import logging
    >>> with quiet_codec_logs():
    ...     logging.getLogger("pydicom.pixels.decoders.base").error("not shown")
    """
    for name in _CODEC_LOGGERS:
        logger = logging.getLogger(name)
        if _DROP not in logger.filters:
            logger.addFilter(_DROP)
    _quiet.depth = getattr(_quiet, "depth", 0) + 1
    try:
        yield
    finally:
        _quiet.depth -= 1
