"""Study manifests: one row per input file, a partition key per row.

A manifest is a pandas DataFrame (stored as Parquet or CSV) with these columns:

=================  ======================================================================
``path``           local path or fsspec URL of the input file (unique in a manifest)
``size``           bytes
``sop_uid``        SOPInstanceUID (as in the source; the manifest is an internal file)
``series_uid``     SeriesInstanceUID
``study_uid``      StudyInstanceUID
``modality``       Modality
``study_date``     StudyDate as ``YYYYMMDD`` (``""`` when absent)
``patient_key``    ``p-`` + 16 hex digits: keyed HMAC of PatientID (+ issuer), never the ID
``partition``      the partition key; empty (NA) for rows rejected by ``build_manifest``
``reject_reason``  ``""`` for usable rows, else ``"<error code>: <reason>"`` (no PHI)
=================  ======================================================================

A row belongs to the partition named in its ``partition`` column, and a run
processes exactly those rows. :func:`build_manifest` gives rejected rows
(files that are not usable DICOM instances) no partition: they stay listed
with their reason but are never run. In a bring-your-own manifest a row keeps
the partition its author gave it even when its header cannot be read: the run
then records it as a failed file, so it is still accounted for in the audit.

Partition keys never hold PHI and are valid path components, because they
name a folder of the output tree and of the audit (``partition=<key>``).
``partition_by`` chooses them, and a study never spans two partitions:

* ``study`` (default): ``s-`` + 16 hex digits of a keyed HMAC of the
  StudyInstanceUID: one partition per study.
* ``patient``: the ``patient_key``: every study of a patient together.
* ``study-date``: ``y<year>`` of the StudyDate (``y-undated`` when absent).
  Only the year: a full date is PHI, and in a de-identified output tree it
  would undo the per-patient date shift. The year is the one date element
  HIPAA Safe Harbor allows.
* ``hash:N``: ``h<bucket>`` with ``bucket = HMAC(StudyInstanceUID) mod N``,
  zero-padded: N partitions of similar size.
* any other column name: the column's value (the most frequent one within a
  study); values must be safe partition keys (no dates, no separators).

The HMAC key is ``secret`` or, when that is ``None``, the ``DICOMSCRUB_SECRET``
environment variable. Without any secret the keys are plain SHA-256 digests:
still not PHI, but anyone holding a source UID or patient ID could then
recognise its partition, so prefer running with the secret.

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"path": ["a.dcm", "b.dcm"], "partition": ["p1", "p2"],
...                    "study_uid": ["1.2.3", "1.2.4"]})
>>> partition_keys(read_manifest(df, scan_missing=False))
['p1', 'p2']
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import sys
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from .errors import ConfigurationError, ErrorCode
from .storage import (
    filesystem,
    is_hidden,
    join,
    list_files,
    open_atomic,
    validate_partition_key,
)

log = logging.getLogger(__name__)

__all__ = [
    "HEADER_COLUMNS",
    "MANIFEST_COLUMNS",
    "build_manifest",
    "build_manifest_cli",
    "partition_keys",
    "read_manifest",
    "write_manifest",
]

#: Columns filled from the file headers.
HEADER_COLUMNS = (
    "size",
    "sop_uid",
    "series_uid",
    "study_uid",
    "modality",
    "study_date",
    "patient_key",
)
#: Every manifest column, in order.
MANIFEST_COLUMNS = ("path", *HEADER_COLUMNS, "partition", "reject_reason")
# Columns that must never become partition keys (PHI or not a grouping).
_NOT_PARTITIONABLE = frozenset(
    {"path", "size", "sop_uid", "series_uid", "study_uid", "study_date", "reject_reason"}
)
_SCAN_TAGS = [
    "SpecificCharacterSet",
    "SOPInstanceUID",
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "Modality",
    "StudyDate",
    "PatientID",
    "IssuerOfPatientID",
    "PatientName",
]
_SECRET_ENV = "DICOMSCRUB_SECRET"


class _Keyer:
    """Keyed (HMAC-SHA256) or, without a secret, plain SHA-256 digests with domain separation."""

    def __init__(self, secret: str | bytes | None) -> None:
        if secret is None:
            secret = os.environ.get(_SECRET_ENV) or None
        self._key = secret.encode() if isinstance(secret, str) else secret
        if self._key is None:
            log.warning(
                "no secret given and %s is unset: partition and patient keys are plain "
                "SHA-256 digests (not keyed)",
                _SECRET_ENV,
            )

    def digest(self, domain: str, value: str) -> str:
        data = f"dicomscrub/{domain}\x00{value}".encode()
        if self._key is None:
            return hashlib.sha256(data).hexdigest()
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()


def _reject(code: ErrorCode, reason: str) -> dict[str, Any]:
    return {"reject_reason": f"{code.value}: {reason}"}


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def _read_header(path: str, size: int, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """Read the few header fields a manifest needs (no pixel data); never raises."""
    if size == 0:
        return _reject(ErrorCode.EMPTY_FILE, "file is empty")
    fs = filesystem(path, storage_options)
    forced = False
    try:
        with fs.open(path, "rb") as handle:
            try:
                ds = pydicom.dcmread(handle, stop_before_pixels=True, specific_tags=_SCAN_TAGS)
            except InvalidDicomError:
                # Files without the 128-byte preamble: accept only if valid UIDs come out.
                forced = True
                handle.seek(0)
                ds = pydicom.dcmread(
                    handle, stop_before_pixels=True, specific_tags=_SCAN_TAGS, force=True
                )
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OverflowError):
        return _reject(ErrorCode.NOT_DICOM, "not a DICOM file")
    except OSError as exc:
        return _reject(ErrorCode.READ_FAILED, f"cannot read file ({type(exc).__name__})")
    except Exception as exc:
        return _reject(ErrorCode.NOT_DICOM, f"header not readable ({type(exc).__name__})")
    row: dict[str, Any] = {}
    try:
        for keyword, column in (
            ("SOPInstanceUID", "sop_uid"),
            ("SeriesInstanceUID", "series_uid"),
            ("StudyInstanceUID", "study_uid"),
        ):
            uid = _text(ds, keyword)
            if forced and not (uid and UID(uid).is_valid):
                return _reject(ErrorCode.NOT_DICOM, "not a DICOM file")
            if not uid or not UID(uid).is_valid:
                missing = "missing" if not uid else "invalid"
                return _reject(
                    ErrorCode.NOT_DICOM if column == "sop_uid" else ErrorCode.INVALID_VALUE,
                    f"{keyword} is {missing} (not a composite instance)",
                )
            row[column] = uid
        row["modality"] = _text(ds, "Modality")
        date = _text(ds, "StudyDate")
        row["study_date"] = date[:8] if len(date) >= 8 and date[:8].isdigit() else ""
        row["_patient"] = "\x00".join(
            (_text(ds, "PatientID") or _text(ds, "PatientName"), _text(ds, "IssuerOfPatientID"))
        )
    except Exception as exc:  # a malformed value in one of the few tags read
        return _reject(ErrorCode.INVALID_VALUE, f"header value not readable ({type(exc).__name__})")
    row["reject_reason"] = ""
    return row


def _scan(
    paths: list[str],
    sizes: list[int],
    *,
    workers: int,
    keyer: _Keyer,
    storage_options: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    def one(item: tuple[str, int]) -> dict[str, Any]:
        row = _read_header(item[0], item[1], storage_options)
        patient = row.pop("_patient", None)
        if patient is not None:
            row["patient_key"] = (
                "p-" + keyer.digest("patient", patient)[:16] if patient.strip("\x00") else "p-none"
            )
        return row

    items = list(zip(paths, sizes, strict=True))
    with _quiet_pydicom():
        if workers <= 1 or len(items) <= 1:
            return [one(item) for item in items]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="manifest") as pool:
            return list(pool.map(one, items))


class _DropRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


@contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's value warnings while scanning: they quote values read from files."""
    pydicom_log = logging.getLogger("pydicom")
    drop = _DropRecords()
    pydicom_log.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        pydicom_log.removeFilter(drop)


def _sizes(paths: Iterable[str], storage_options: dict[str, Any] | None) -> list[int]:
    out = []
    for path in paths:
        try:
            out.append(int(filesystem(path, storage_options).size(path)))
        except OSError:
            out.append(-1)
    return out


def _assign_partitions(df: pd.DataFrame, partition_by: str, keyer: _Keyer) -> pd.Series:
    """Partition key per row (NA for rejected rows); a study never spans two partitions."""
    ok = df["reject_reason"].fillna("") == ""
    keys = pd.Series(pd.NA, index=df.index, dtype="object")
    if not ok.any():
        return keys
    studies = df.loc[ok, "study_uid"].astype(str)
    if partition_by == "study":
        keys[ok] = studies.map(lambda uid: "s-" + keyer.digest("study", uid)[:16])
    elif partition_by == "study-date":
        # One date per study: the earliest non-empty StudyDate of its files.
        dates = df.loc[ok, "study_date"].fillna("").astype(str)
        per_study = dates[dates != ""].groupby(studies[dates != ""]).min()
        keys[ok] = studies.map(lambda uid: f"y{per_study[uid][:4]}" if uid in per_study else None)
        keys[ok] = keys[ok].fillna("y-undated")
    elif partition_by.startswith("hash:"):
        try:
            buckets = int(partition_by.split(":", 1)[1])
        except ValueError:
            buckets = 0
        if buckets < 1:
            raise ConfigurationError("partition_by 'hash:N' needs a positive integer N")
        width = len(str(buckets - 1))
        keys[ok] = studies.map(
            lambda uid: f"h{int(keyer.digest('study', uid)[:15], 16) % buckets:0{width}d}"
        )
    else:
        column = "patient_key" if partition_by == "patient" else partition_by
        if column in _NOT_PARTITIONABLE or column not in df.columns:
            allowed = sorted(
                {"study", "patient", "study-date", "hash:N"}
                | ({str(c) for c in df.columns} - _NOT_PARTITIONABLE - {"partition"})
            )
            raise ConfigurationError(
                f"cannot partition by {partition_by!r}; choose one of: {', '.join(allowed)}"
            )
        values = df.loc[ok, column].fillna("unknown").astype(str).replace("", "unknown")
        per_study = values.groupby(studies).agg(lambda v: Counter(sorted(v)).most_common(1)[0][0])
        for value in per_study.unique():
            validate_partition_key(value)
        keys[ok] = studies.map(per_study)
    for key in keys[ok].unique():
        validate_partition_key(str(key), allow_date_like=True)
    return keys


def build_manifest(
    input_url: str,
    *,
    partition_by: str = "study",
    workers: int = 4,
    storage_options: dict[str, Any] | None = None,
    secret: str | bytes | None = None,
) -> pd.DataFrame:
    """Scan a folder (or fsspec URL) and return its manifest, one row per file.

    Only headers are read (``stop_before_pixels``, a few tags), by ``workers``
    threads. Hidden files (names starting with ``.``) are ignored; files that
    are not usable DICOM instances are kept as rejected rows with a reason.

    Parameters
    ----------
    input_url
        A folder, a single file, or an fsspec URL (``s3://bucket/prefix``).
    partition_by
        ``study``, ``patient``, ``study-date``, ``hash:N`` or a column name (see
        the module documentation).
    workers
        Threads reading headers.
    storage_options
        Passed to fsspec.
    secret
        Key for the partition and patient keys (default: ``DICOMSCRUB_SECRET``).

    Examples
    --------
    >>> import tempfile, pydicom
    >>> from pydicom.data import get_testdata_file
    >>> folder = tempfile.mkdtemp()
    >>> pydicom.dcmread(get_testdata_file("CT_small.dcm")).save_as(f"{folder}/ct.dcm")
    >>> _ = open(f"{folder}/notes.txt", "w").write("not dicom")
    >>> df = build_manifest(folder, secret="doctest")
    >>> df["modality"].tolist(), df["reject_reason"].tolist()
    (['CT', ''], ['', 'not_dicom: not a DICOM file'])
    >>> df["partition"].iloc[0].startswith("s-")
    True
    """
    if "://" not in input_url:
        input_url = str(Path(input_url).resolve())
    fs = filesystem(input_url, storage_options)
    if not fs.exists(input_url):
        raise ConfigurationError("the manifest input does not exist")
    paths = [p for p in list_files(fs, input_url) if not is_hidden(p)]
    df = pd.DataFrame({"path": paths, "size": _sizes(paths, storage_options)})
    return _complete(
        df,
        partition_by=partition_by,
        workers=workers,
        storage_options=storage_options,
        keyer=_Keyer(secret),
        scan=True,
    )


def _complete(
    df: pd.DataFrame,
    *,
    partition_by: str,
    workers: int,
    storage_options: dict[str, Any] | None,
    keyer: _Keyer | None,
    scan: bool,
) -> pd.DataFrame:
    """Fill missing header columns (by reading headers) and the partition column."""
    df = df.reset_index(drop=True).copy()
    if "size" not in df.columns and scan:
        df["size"] = _sizes(df["path"], storage_options)
    missing = [c for c in HEADER_COLUMNS if c not in df.columns and c != "size"]
    if missing and scan:
        keyer = keyer or _Keyer(None)
        sizes = [int(s) for s in df["size"].fillna(-1)]
        rows = _scan(
            list(df["path"]),
            sizes,
            workers=workers,
            keyer=keyer,
            storage_options=storage_options,
        )
        scanned = pd.DataFrame(rows, index=df.index)
        for column in [*missing, "reject_reason"]:
            if column not in scanned.columns:
                continue
            if column == "reject_reason" and "reject_reason" in df.columns:
                given = df["reject_reason"].fillna("").astype(str)
                df[column] = given.where(given != "", scanned[column].fillna(""))
            else:
                df[column] = scanned[column]
    for column in MANIFEST_COLUMNS:
        if column not in df.columns:
            df[column] = pd.NA if column in ("partition", "size") else ""
    for column in ("sop_uid", "series_uid", "study_uid", "modality", "study_date"):
        df[column] = df[column].fillna("").astype(str)
    df["patient_key"] = df["patient_key"].fillna("").astype(str)
    df["reject_reason"] = df["reject_reason"].fillna("").astype(str)
    df["size"] = pd.to_numeric(df["size"], errors="coerce").fillna(-1).astype("int64")
    given = df["partition"].astype("object").where(df["partition"].notna(), None)
    given = given.map(lambda v: None if v is None or str(v) == "" else str(v))
    if given.notna().any():
        df["partition"] = given
        unassigned = (df["reject_reason"] == "") & df["partition"].isna()
        if unassigned.any():
            raise ConfigurationError(
                f"{int(unassigned.sum())} manifest rows have no partition while others have one"
            )
        _check_partitions(df)
    else:  # rejected rows get no partition: listed, never run
        df["partition"] = _assign_partitions(df, partition_by, keyer or _Keyer(None))
    df["partition"] = df["partition"].astype("str")  # missing stays missing (NaN)
    extra = [c for c in df.columns if c not in MANIFEST_COLUMNS]
    return df[[*MANIFEST_COLUMNS, *extra]]


def _check_partitions(df: pd.DataFrame) -> None:
    usable = df[df["partition"].notna()]
    for key in usable["partition"].unique():
        validate_partition_key(str(key))
    known = usable[usable["study_uid"] != ""]
    spans = known.groupby("study_uid")["partition"].nunique()
    if (spans > 1).any():
        raise ConfigurationError(
            f"{int((spans > 1).sum())} studies span more than one partition; "
            "a study must stay in one partition"
        )


def read_manifest(
    source: pd.DataFrame | str | os.PathLike[str],
    *,
    partition_by: str = "study",
    workers: int = 4,
    storage_options: dict[str, Any] | None = None,
    secret: str | bytes | None = None,
    scan_missing: bool = True,
    partition: str | None = None,
) -> pd.DataFrame:
    """Read a manifest (a DataFrame, or a CSV/Parquet path or URL) and complete it.

    Only ``path`` is required. Missing header columns are filled by reading the
    files' headers; a missing or empty ``partition`` column is filled with
    ``partition_by`` keys. Relative paths in a manifest file are resolved
    against the manifest's folder.

    With ``partition``, only that partition's rows are returned; a Parquet
    manifest that has a ``partition`` column is filtered while it is read, so
    a run does not load a large manifest whole.

    Raises
    ------
    ConfigurationError
        No ``path`` column, duplicate paths, an invalid partition key, or a study
        spanning two partitions.
    """
    if isinstance(source, pd.DataFrame):
        df = source.copy()
        base = None
    else:
        url = os.fspath(source)
        df = _load_table(url, storage_options, partition)
        base = url.rstrip("/").rpartition("/")[0] or "."
    if partition is not None and "partition" in df.columns:
        given = df["partition"].astype("str")
        if given.notna().any() and (given != "").any():
            df = df[given == partition]  # partitions already assigned: keep this one's rows
    if "path" not in df.columns:
        raise ConfigurationError("a manifest needs a 'path' column")
    df["path"] = df["path"].astype(str)
    if base is not None:
        df["path"] = [_resolve(p, base) for p in df["path"]]
    if df["path"].duplicated().any():
        raise ConfigurationError(
            f"the manifest lists {int(df['path'].duplicated().sum())} paths more than once"
        )
    completed = _complete(
        df,
        partition_by=partition_by,
        workers=workers,
        storage_options=storage_options,
        keyer=_Keyer(secret) if scan_missing else None,
        scan=scan_missing,
    )
    if partition is not None:
        completed = completed[completed["partition"] == partition].reset_index(drop=True)
    return completed


def _resolve(path: str, base: str) -> str:
    if "://" in path or path.startswith("/"):
        return path
    if "://" in base:
        return join(base, path)
    return str((Path(base) / path).resolve())


def _load_table(
    url: str, storage_options: dict[str, Any] | None, partition: str | None = None
) -> pd.DataFrame:
    lower = url.lower()
    try:
        if lower.endswith((".parquet", ".pq")):
            if partition is not None and "partition" in _parquet_columns(url, storage_options):
                return pd.read_parquet(
                    url, storage_options=storage_options, filters=[("partition", "==", partition)]
                )
            return pd.read_parquet(url, storage_options=storage_options)
        if lower.endswith((".csv", ".csv.gz")):
            return pd.read_csv(
                url, dtype=str, keep_default_na=False, storage_options=storage_options
            )
    except FileNotFoundError:
        raise ConfigurationError("the manifest file does not exist") from None
    raise ConfigurationError("a manifest file must end in .parquet, .pq or .csv")


def _parquet_columns(url: str, storage_options: dict[str, Any] | None) -> list[str]:
    import pyarrow.parquet as pq

    with filesystem(url, storage_options).open(url, "rb") as handle:
        names: list[str] = pq.read_schema(handle).names
    return names


def write_manifest(
    df: pd.DataFrame, path: str, *, storage_options: dict[str, Any] | None = None
) -> None:
    """Write a manifest to ``path`` (``.parquet``/``.pq`` or ``.csv``), atomically.

    Examples
    --------
    >>> import pandas as pd
    >>> df = read_manifest(pd.DataFrame({"path": ["/x.dcm"], "partition": ["p1"]}),
    ...                    scan_missing=False)
    >>> write_manifest(df, "memory://doctest-manifest/m.csv")
    >>> read_manifest("memory://doctest-manifest/m.csv", scan_missing=False)["partition"].tolist()
    ['p1']
    """
    fs = filesystem(path, storage_options)
    lower = path.lower()
    if lower.endswith((".parquet", ".pq")):
        with open_atomic(fs, path) as handle:
            df.to_parquet(handle, index=False)
    elif lower.endswith(".csv"):
        with open_atomic(fs, path) as handle:
            handle.write(df.to_csv(index=False).encode())
    else:
        raise ConfigurationError("a manifest file must end in .parquet, .pq or .csv")


def partition_keys(
    manifest: pd.DataFrame | str | os.PathLike[str],
    *,
    storage_options: dict[str, Any] | None = None,
) -> list[str]:
    """Sorted partition keys of a manifest (rows without a partition are not run).

    Examples
    --------
    >>> import pandas as pd
    >>> partition_keys(pd.DataFrame({"path": ["a", "b", "c"], "partition": ["k2", "k1", "k2"],
    ...                              "study_uid": ["1.1", "1.2", "1.1"]}))
    ['k1', 'k2']
    """
    if isinstance(manifest, pd.DataFrame) and "partition" in manifest.columns:
        df = manifest  # partitions already there: no need to read any header
    else:
        df = read_manifest(manifest, storage_options=storage_options)
    usable = df["partition"].notna()
    return sorted({str(k) for k in df.loc[usable, "partition"] if str(k)})


def build_manifest_cli(
    input_url: str, output: str, *, partition_by: str = "study", workers: int = 4
) -> int:
    """``dicomscrub manifest build``: scan (or complete) a manifest, write it, print a summary.

    ``input_url`` is a folder/URL to scan, or an existing ``.csv``/``.parquet``
    manifest whose missing columns are filled.
    """
    lower = input_url.lower()
    if lower.endswith((".csv", ".parquet", ".pq")) and filesystem(input_url).isfile(input_url):
        df = read_manifest(input_url, partition_by=partition_by, workers=workers)
    else:
        df = build_manifest(input_url, partition_by=partition_by, workers=workers)
    write_manifest(df, output)
    rejected = df[df["reject_reason"] != ""]
    keys = partition_keys(df)
    print(
        f"manifest: {len(df)} files, {len(df) - len(rejected)} usable in {len(keys)} "
        f"partitions, {len(rejected)} rejected -> {output}"
    )
    if len(rejected):
        reasons = rejected["reject_reason"].value_counts()
        for reason, count in reasons.items():
            print(f"  rejected {count:>6}  {reason}", file=sys.stdout)
    return 0
