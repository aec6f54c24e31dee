"""The per-file work of a partition run, and the worker pool that survives a crash.

:func:`process` de-identifies one manifest row (a :class:`Task`) into the output
layout ``<partition>/<study>/<series>/<sop>.dcm``. It runs in the calling
process (``workers=1``) or in a :class:`WorkerPool`.

The pool
--------
Worker processes fork from a ``forkserver`` (``spawn`` off Linux) that has
already imported pydicom, the engine, the pixel path and spaCy and loaded the
default NER model and word lists (:func:`preload`), but not pandas or pyarrow:
this module keeps the worker side free of them, which saves seconds at every
start. Each worker then builds its :class:`~dicomscrub.core.pipeline.Engine`
(and loads another NER model if its policy names one) before its first file.
:attr:`WorkerPool.start_seconds` is the time from creating the pool to the first
worker answering: about 3 s for the first pool of a process, well under a
second for the next ones (a rebuild after a crash), whose fork server is warm.

:meth:`WorkerPool.run` keeps at most ``2 * workers`` files in flight and yields
results **as they complete**, so a slow file never leaves the other workers idle.

**Crash isolation.** When a worker process dies (a crash in a native codec, the
out-of-memory killer, ``os._exit``), Python's pool fails every file in flight
without saying which one killed it. The pool is then rebuilt and those files
are retried **one at a time**: a file that kills its worker again, alone, is the
culprit and gets a failed result with :attr:`ErrorCode.WORKER_CRASHED
<dicomscrub.core.errors.ErrorCode.WORKER_CRASHED>` (nothing is written for it);
the others come out as usual. Then the run goes on at full width. If the
rebuilt pool cannot even start, :class:`RuntimeError` is raised.

**Time limit.** When no file in flight finishes within ``file_timeout``
seconds (a hang in a library), the workers are killed and the files in flight
retried one at a time in the same way, each with the limit: one that runs over
alone fails with :attr:`ErrorCode.WORKER_TIMEOUT
<dicomscrub.core.errors.ErrorCode.WORKER_TIMEOUT>`.

For tests only: when the environment variable ``DICOMSCRUB_TEST_CRASH_ON`` is set
in the process that creates the pool, a pool worker kills itself (``SIGKILL``,
as the out-of-memory killer does) on every file whose name contains its value;
with ``DICOMSCRUB_TEST_HANG_ON`` it sleeps for an hour on such files. Files
processed in the calling process (``workers=1``) are never affected.

Examples
--------
>>> task = Task(source="/in/a.dcm", partition_dir="/out/p", originals=("1.2", "1.3", "1.4"),
...             retain_uids=False, storage_options=None)
>>> layout = Layout(task)
>>> r = FileResult(source="/in/a.dcm", uids={"StudyInstanceUID": "2.25.1",
...                "SeriesInstanceUID": "2.25.2", "SOPInstanceUID": "2.25.3"})
>>> layout(r)
'/out/p/2.25.1/2.25.2/2.25.3.dcm'
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from importlib.util import find_spec
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, DeidError, ErrorCode
from .policy import Policy
from .results import FileResult
from .storage import filesystem, join, safe_component, sha256_of

if TYPE_CHECKING:
    from .pipeline import Engine

log = logging.getLogger(__name__)

__all__ = [
    "CRASH_HOOK_ENV",
    "DEFAULT_FILE_TIMEOUT",
    "HANG_HOOK_ENV",
    "Layout",
    "Task",
    "WorkerPool",
    "engine_for",
    "process",
    "run_here",
]

#: Test-only: pool workers kill themselves on files whose name contains this variable's value.
CRASH_HOOK_ENV = "DICOMSCRUB_TEST_CRASH_ON"
#: Test-only: pool workers hang (sleep for an hour) on files whose name contains this value.
HANG_HOOK_ENV = "DICOMSCRUB_TEST_HANG_ON"
#: Default per-file time limit of a pool (seconds): far above any real file (a 40-frame
#: cine takes about a second), low enough that a hang does not hold a partition for long.
DEFAULT_FILE_TIMEOUT = 600.0
#: Modules the fork server imports once, so that workers start with them loaded; the last
#: one also loads the default NER model and word lists there (see :func:`preload`).
PRELOAD = (
    "dicomscrub.core.workers",
    "dicomscrub.core.pipeline",
    "dicomscrub.core.text_detect",
    "dicomscrub.core.pixels",
    "spacy",
    "dicomscrub.core.forkserver_preload",
)
_CRASHED_MESSAGE = (
    "the worker process died while de-identifying this file, also when retried alone "
    "(a crash in native code, or killed, e.g. out of memory); nothing was written"
)
_TIMEOUT_MESSAGE = (
    "de-identifying this file took longer than the pool's per-file limit of {seconds:g} s, "
    "also when retried alone; its worker was stopped and nothing was written"
)


# --- one file -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """One manifest row to process. Picklable; sent to a worker."""

    source: str
    partition_dir: str
    originals: tuple[str, ...]
    retain_uids: bool
    storage_options: dict[str, Any] | None
    previous_sha: str | None = None
    previous_output: str | None = None


class Layout:
    """The destination callable: ``<partition_dir>/<study>/<series>/<sop>.dcm``.

    Every component is a pseudonymized UID checked to be a safe path component
    and (unless the policy keeps UIDs) different from the source's UIDs.
    """

    def __init__(self, task: Task) -> None:
        self.task = task

    def __call__(self, result: FileResult) -> str:
        parts = []
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            value = result.uids.get(keyword, "")
            try:
                safe_component(value, what=keyword)
            except ConfigurationError:
                raise DeidError(
                    ErrorCode.WRITE_FAILED,
                    f"the output {keyword} is not a safe path component",
                ) from None
            if not self.task.retain_uids and value in self.task.originals:
                raise DeidError(
                    ErrorCode.VERIFY_FAILED, f"the output {keyword} equals an original UID"
                )
            parts.append(value)
        parts[-1] += ".dcm"
        return join(self.task.partition_dir, *parts)


def failed(source: str, code: ErrorCode, message: str, sha: str = "") -> FileResult:
    """A failed :class:`FileResult` (``message`` must hold no PHI).

    Examples
    --------
    >>> failed("/in/a.dcm", ErrorCode.WORKER_CRASHED, "died").error_code
    'worker_crashed'
    """
    return FileResult(
        source=source,
        source_sha256=sha,
        status="failed",
        error_code=code.value,
        error_message=message,
    )


def _unchanged(task: Task) -> FileResult | None:
    """For ``resume``: a ``skipped`` result if the source and output are as before, else None."""
    if task.previous_sha is None or task.previous_output is None:
        return None
    started = time.perf_counter()
    try:
        sha = sha256_of(filesystem(task.source, task.storage_options), task.source)
        out_fs = filesystem(task.previous_output, task.storage_options)
        if sha != task.previous_sha or not out_fs.exists(task.previous_output):
            return None
    except Exception:
        return None  # let the engine report the problem
    skipped = FileResult(
        source=task.source, source_sha256=sha, status="skipped", output=task.previous_output
    )
    seconds = time.perf_counter() - started
    skipped.timings = {"read": seconds, "total": seconds}
    return skipped


def process(engine: Engine, task: Task) -> FileResult:
    """De-identify one file into the layout; never raises for per-file problems."""
    skipped = _unchanged(task)
    if skipped is not None:
        return skipped
    try:
        result = engine.process_file(
            task.source, Layout(task), storage_options=task.storage_options
        )
    except Exception as exc:  # the engine promises not to raise; stay fail-closed if it does
        result = failed(
            task.source, ErrorCode.INTERNAL_ERROR, f"engine error ({type(exc).__name__})"
        )
    result.source = task.source
    if result.status != "ok":
        result.output = None
    return result


# One engine per process, built on first use and reused across partitions with the same settings.
_ENGINE: tuple[tuple[str, str], Engine] | None = None


def _settings_key(policy: Policy, secret: str) -> tuple[str, str]:
    return policy.policy_hash(), hashlib.sha256(secret.encode()).hexdigest()


def engine_for(policy: Policy, secret: str) -> Engine:
    """This process's engine for ``policy`` and ``secret`` (built once, then reused)."""
    global _ENGINE
    key = _settings_key(policy, secret)
    if _ENGINE is None or _ENGINE[0] != key:
        from .pipeline import Engine

        _ENGINE = (key, Engine(policy, secret))
    return _ENGINE[1]


def run_here(tasks: Iterable[Task], policy: Policy, secret: str) -> Iterator[FileResult]:
    """Process ``tasks`` one after the other in this process (``workers=1``)."""
    engine = engine_for(policy, secret)
    for task in tasks:
        yield process(engine, task)


# --- worker process side ------------------------------------------------------------------------
_SETTINGS: tuple[Policy, str, str | None] | None = None
_HANG_ON: str | None = None


def _warm_up(policy: Policy) -> None:
    """Load the NER model and word lists now rather than on the first file."""
    try:
        from .text_detect import TextDetector
    except ImportError:  # the engine then runs without the text detector
        return
    TextDetector(policy.text).warm_up()


def preload() -> None:
    """Load the default text policy's NER model and word lists into this process.

    The fork server calls it once (through :mod:`dicomscrub.core.forkserver_preload`):
    every worker forked from it then starts with them in memory, shared
    copy-on-write, instead of loading them itself. A policy with another model
    loads its own in the worker's initializer.
    """
    try:
        _warm_up(Policy())
    except Exception:  # never break the fork server: each worker then loads its own
        log.warning("could not preload the NER model in the fork server", exc_info=True)


def _init_worker(
    policy: Policy, secret: str, crash_on: str | None, hang_on: str | None = None
) -> None:
    global _SETTINGS, _HANG_ON
    _SETTINGS = (policy, secret, crash_on)
    _HANG_ON = hang_on
    engine_for(policy, secret)
    _warm_up(policy)


def _ping() -> int:
    """Answered once a worker has started (its initializer ran)."""
    return os.getpid()


def _work(task: Task) -> FileResult:
    assert _SETTINGS is not None, "worker not initialised"
    policy, secret, crash_on = _SETTINGS
    if crash_on and crash_on in task.source.rpartition("/")[2]:
        os.kill(os.getpid(), signal.SIGKILL)  # test hook (see CRASH_HOOK_ENV)
    if _HANG_ON and _HANG_ON in task.source.rpartition("/")[2]:
        time.sleep(3600)  # test hook (see HANG_HOOK_ENV)
    return process(engine_for(policy, secret), task)


def _mp_context() -> multiprocessing.context.BaseContext:
    method = "forkserver" if sys.platform.startswith("linux") else "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload([m for m in PRELOAD if find_spec(m)])
    return ctx


# --- the pool -----------------------------------------------------------------------------------
class WorkerPool:
    """A process pool for :func:`process` that isolates files which kill their worker.

    Start-up begins when the pool is created, so the caller can do other work
    (read the manifest) meanwhile. Use it as a context manager, or call
    :meth:`close`.

    Parameters
    ----------
    policy, secret
        The engine settings every worker builds its engine with.
    workers
        Number of worker processes (at least 1).
    file_timeout
        Seconds a file may run (:data:`DEFAULT_FILE_TIMEOUT`); None: no limit. When no
        file in flight finishes for that long, the workers are stopped and the files
        in flight retried one at a time, each with the same limit: one that runs
        over alone fails with ``worker_timeout`` and the run goes on.

    Attributes
    ----------
    start_seconds
        Seconds from creating the pool to the first worker answering (imports,
        engine, models); ``None`` until then.
    crashes
        Files recorded as ``worker_crashed``.
    restarts
        Times the pool was rebuilt after a worker died or was stopped.
    timeouts
        Files recorded as ``worker_timeout``.

    Examples
    --------
    >>> from dicomscrub.core.policy import Policy
    >>> with WorkerPool(Policy.load({"pixels": {"mode": "off"}}), "s", 2) as pool:
    ...     list(pool.run([]))
    []
    """

    def __init__(
        self,
        policy: Policy,
        secret: str,
        workers: int,
        *,
        file_timeout: float | None = DEFAULT_FILE_TIMEOUT,
    ) -> None:
        if workers < 1:
            raise ConfigurationError("workers must be at least 1")
        if file_timeout is not None and file_timeout <= 0:
            raise ConfigurationError("file_timeout must be positive (or None for no limit)")
        self.workers = workers
        self.file_timeout = file_timeout
        self.start_seconds: float | None = None
        self.crashes = 0
        self.restarts = 0
        self.timeouts = 0
        self._initargs = (
            policy,
            secret,
            os.environ.get(CRASH_HOOK_ENV) or None,
            os.environ.get(HANG_HOOK_ENV) or None,
        )
        self._key = _settings_key(policy, secret)
        self._executor: ProcessPoolExecutor | None = None
        self._ping: Future[int] | None = None
        # Starting the fork server blocks until it has imported its modules (seconds): do it
        # in a thread so that the caller goes on (reads the manifest) meanwhile.
        self._start_error: BaseException | None = None
        self._starter: threading.Thread | None = threading.Thread(
            target=self._start_in_background, name="dicomscrub-pool-start", daemon=True
        )
        self._starter.start()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _start_in_background(self) -> None:
        try:
            self._start()
        except BaseException as exc:  # re-raised in the caller's thread by _started()
            self._start_error = exc

    def _started(self) -> ProcessPoolExecutor:
        """The executor, once the background start has finished (re-raises its error)."""
        if self._starter is not None:
            self._starter.join()
            self._starter = None
            if self._start_error is not None:
                raise self._start_error
        assert self._executor is not None, "the pool is closed"
        return self._executor

    def _start(self) -> None:
        started = time.perf_counter()
        self._executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=_mp_context(),
            initializer=_init_worker,
            initargs=self._initargs,
        )
        self._ping = self._executor.submit(_ping)

        def answered(future: Future[int]) -> None:
            if self.start_seconds is None and not future.cancelled() and not future.exception():
                self.start_seconds = time.perf_counter() - started

        self._ping.add_done_callback(answered)

    def serves(self, policy: Policy, secret: str) -> bool:
        """Whether the workers were built with this policy and secret."""
        return self._key == _settings_key(policy, secret)

    def wait_ready(self) -> float:
        """Block until a worker answers; return :attr:`start_seconds`.

        Raises
        ------
        RuntimeError
            The worker processes could not start.
        """
        self._started()
        assert self._ping is not None
        try:
            self._ping.result()
        except BrokenProcessPool:
            raise RuntimeError(
                "the worker processes could not start (see their log); "
                "the partition's audit was not changed"
            ) from None
        return self.start_seconds or 0.0

    def _restart(self) -> None:
        self.restarts += 1
        self.close()
        self._start()
        self.wait_ready()

    def close(self) -> None:
        """Cancel files not yet started, let running ones finish, stop the workers."""
        if self._starter is not None:
            self._starter.join()
            self._starter = None
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _submit(self, task: Task) -> Future[FileResult]:
        return self._started().submit(_work, task)

    def _stop_workers(self) -> None:
        """Kill the worker processes: the files in flight then fail with the pool."""
        executor = self._started()
        kill = getattr(executor, "kill_workers", None)  # public from Python 3.14
        if kill is not None:
            kill()
            return
        for process in list(getattr(executor, "_processes", {}).values()):
            process.kill()

    def run(self, tasks: Iterable[Task]) -> Iterator[FileResult]:
        """Yield one result per task, in completion order, at most ``2 * workers`` in flight."""
        source = iter(tasks)
        pending: dict[Future[FileResult], Task] = {}
        window = 2 * self.workers
        while True:
            for task in source:
                try:
                    pending[self._submit(task)] = task
                except BrokenProcessPool:  # broke since the last wait: found out below
                    pending[_broken()] = task
                if len(pending) >= window:
                    break
            if not pending:
                return
            done, _ = wait(pending, timeout=self.file_timeout, return_when=FIRST_COMPLETED)
            stalled = not done  # nothing finished in time: a file hangs
            if stalled:
                log.warning(
                    "no file finished within %g s; stopping the workers and retrying the "
                    "%d files in flight one at a time",
                    self.file_timeout,
                    len(pending),
                )
                self._stop_workers()
            suspects: list[Task] = []
            yield from _collect(done, pending, suspects)
            if not suspects and not stalled:
                continue
            # The pool broke (a worker died, or was stopped): every file still in flight fails
            # with it. Keep the ones that finished, then retry the others one at a time.
            yield from _collect(wait(pending).done, pending, suspects)
            if not stalled:
                log.warning(
                    "a worker process died with %d files in flight; rebuilding the pool and "
                    "retrying them one at a time",
                    len(suspects),
                )
            self._restart()
            yield from self._isolate(suspects)

    def _isolate(self, suspects: list[Task]) -> Iterator[FileResult]:
        for task in suspects:
            future = self._submit(task)
            try:
                result = future.result(timeout=self.file_timeout)
            except BrokenProcessPool:
                self.crashes += 1
                log.warning("a file killed its worker process again when run alone: failed")
                result = failed(task.source, ErrorCode.WORKER_CRASHED, _CRASHED_MESSAGE, _sha(task))
                self._restart()
            except FutureTimeout:
                self.timeouts += 1
                log.warning("a file ran over the per-file time limit again when run alone: failed")
                message = _TIMEOUT_MESSAGE.format(seconds=self.file_timeout)
                result = failed(task.source, ErrorCode.WORKER_TIMEOUT, message, _sha(task))
                self._stop_workers()
                self._restart()
            yield result


def _collect(
    done: Iterable[Future[FileResult]],
    pending: dict[Future[FileResult], Task],
    suspects: list[Task],
) -> Iterator[FileResult]:
    """Yield the results of ``done`` (removed from ``pending``); tasks of a broken pool go to
    ``suspects``."""
    for future in done:
        task = pending.pop(future)
        try:
            yield future.result()
        except BrokenProcessPool:
            suspects.append(task)


def _broken() -> Future[FileResult]:
    future: Future[FileResult] = Future()
    future.set_exception(BrokenProcessPool("the pool broke before the file was submitted"))
    return future


def _sha(task: Task) -> str:
    try:
        return sha256_of(filesystem(task.source, task.storage_options), task.source)
    except Exception:
        return ""
