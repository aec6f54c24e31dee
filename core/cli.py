"""The ``dicomscrub`` command line.

Each subcommand is a thin handler that parses arguments and calls one library
function; the work lives in the module named after its step. No traceback
reaches the user: configuration problems exit 2 with a message, and an
unexpected error exits 3 naming only the exception type (``--debug`` shows the
traceback).

Exit status: 0 all files ok, 1 some file failed (or a check failed), 2 usage or
configuration error, 3 internal error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .errors import ConfigurationError

log = logging.getLogger("dicomscrub")

Handler = Callable[[argparse.Namespace], int]


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--policy",
        default=None,
        help="policy YAML file or built-in name (default, seed-compatible, basic, all-text)",
    )
    p.add_argument(
        "--secret-env",
        default="DICOMSCRUB_SECRET",
        help="environment variable holding the pseudonymization secret (default: %(default)s)",
    )
    p.add_argument(
        "--ephemeral-secret",
        action="store_true",
        help="use a throwaway per-run key: pseudonyms will not match any other run",
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")


# --- redact (core engine I: pipeline.py) -------------------------------------------------------
def _cmd_redact(args: argparse.Namespace) -> int:
    from .pipeline import redact_path

    return redact_path(
        args.input,
        args.output,
        policy=args.policy,
        secret_env=args.secret_env,
        ephemeral_secret=args.ephemeral_secret,
        workers=args.workers,
        progress=not args.quiet,
    )


# --- samples generate / eval (corpus: samples.py, evaluate.py) ---------------------------------
def _cmd_samples_generate(args: argparse.Namespace) -> int:
    from .samples import generate_corpus

    summary = generate_corpus(
        args.out,
        seed=args.seed,
        patients=args.patients,
        studies_per_patient=args.studies_per_patient,
    )
    print(summary)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_cli

    return evaluate_cli(args.corpus, args.output, as_json=args.json, audit=args.audit)


# --- preview (pixels: preview.py) ----------------------------------------------------------------
def _cmd_preview(args: argparse.Namespace) -> int:
    from .preview import preview_cli

    return preview_cli(
        args.file,
        args.o,
        policy=args.policy,
        secret_env=args.secret_env,
        ephemeral_secret=args.ephemeral_secret,
        frame=args.frame,
        redacted_only=args.redacted_only,
    )


# --- manifest build / run / audit summary (batch: manifest.py, runner.py, audit.py) -------------
def _cmd_manifest_build(args: argparse.Namespace) -> int:
    from .manifest import build_manifest_cli

    return build_manifest_cli(
        args.input, args.o, partition_by=args.partition_by, workers=args.workers
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from .runner import run_cli

    return run_cli(args)


def _cmd_audit_summary(args: argparse.Namespace) -> int:
    from .audit import audit_summary_cli

    return audit_summary_cli(args.audit)


# --- serve (drop-in API: serve.py) ----------------------------------------------------------------
def _cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve_cli

    return serve_cli(args)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="dicomscrub",
        description="De-identify DICOM files: header, free text and burned-in pixel PHI.",
    )
    parser.add_argument("--version", action="version", version=f"dicomscrub {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("redact", help="de-identify a file or a directory tree")
    p.add_argument("input", help="input file or directory")
    p.add_argument("output", help="output file or directory (mirrors the input's relative paths)")
    _add_engine_args(p)
    p.set_defaults(handler=_cmd_redact)

    samples = sub.add_parser("samples", help="synthetic PHI corpus with an answer key")
    samples_sub = samples.add_subparsers(dest="samples_command", required=True, metavar="ACTION")
    p = samples_sub.add_parser("generate", help="generate a deterministic synthetic corpus")
    p.add_argument("out", help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patients", type=int, default=3)
    p.add_argument("--studies-per-patient", type=int, default=1)
    p.set_defaults(handler=_cmd_samples_generate)

    p = sub.add_parser("eval", help="score de-identified output against a corpus answer key")
    p.add_argument("corpus", help="corpus directory (with answer_key.json)")
    p.add_argument("output", help="de-identified output directory")
    p.add_argument("--audit", default=None, help="audit root, to match outputs laid out by UID")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=_cmd_eval)

    p = sub.add_parser("preview", help="before/after PNG of one file with masked boxes outlined")
    p.add_argument("file")
    p.add_argument("-o", required=True, metavar="PNG")
    p.add_argument("--frame", type=int, default=0)
    p.add_argument(
        "--redacted-only",
        action="store_true",
        help="only the de-identified frame (no original pixels, so no burned-in PHI)",
    )
    _add_engine_args(p)
    p.set_defaults(handler=_cmd_preview)

    manifest = sub.add_parser("manifest", help="study manifests")
    manifest_sub = manifest.add_subparsers(dest="manifest_command", required=True, metavar="ACTION")
    p = manifest_sub.add_parser("build", help="scan a directory or URL into a manifest")
    p.add_argument("input", help="directory or fsspec URL")
    p.add_argument("-o", required=True, metavar="MANIFEST", help=".parquet or .csv")
    p.add_argument(
        "--partition-by",
        default="study",
        help="study | study-date | hash:N | <column name> (default: %(default)s)",
    )
    p.add_argument("--workers", type=int, default=4)
    p.set_defaults(handler=_cmd_manifest_build)

    p = sub.add_parser("run", help="de-identify manifest partitions and write the audit")
    p.add_argument("manifest")
    p.add_argument("--output", required=True, help="output root (path or fsspec URL)")
    p.add_argument("--audit", required=True, help="audit root (path or fsspec URL)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--partition", action="append", help="partition key (repeatable)")
    group.add_argument("--all", action="store_true", help="every partition of the manifest")
    p.add_argument("--resume", action="store_true", help="skip files that already succeeded")
    p.add_argument(
        "--max-failed-fraction",
        type=float,
        default=0.0,
        help="failure budget per partition (default: %(default)s)",
    )
    p.add_argument(
        "--file-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="with --workers > 1: a file still running after this long fails with "
        "worker_timeout (default: %(default)s)",
    )
    _add_engine_args(p)
    p.set_defaults(handler=_cmd_run)

    audit = sub.add_parser("audit", help="read the Parquet audit")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    p = audit_sub.add_parser("summary", help="a readable summary table")
    p.add_argument("audit", help="audit root")
    p.set_defaults(handler=_cmd_audit_summary)

    p = sub.add_parser("serve", help="HTTP service compatible with the reference base64 endpoint")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s)")
    p.add_argument("--port", type=int, default=8080, help="port (default: %(default)s)")
    p.add_argument(
        "--api-key-env",
        default="DICOMSCRUB_API_KEY",
        help="environment variable holding the key clients send as x-api-key "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--insecure-no-api-key",
        action="store_true",
        help="start without an API key (local tests only: anyone who reaches the port can use it)",
    )
    p.add_argument(
        "--max-body-mb",
        type=float,
        default=64.0,
        help="largest request body in MiB; larger ones get 413 (default: %(default)s)",
    )
    p.add_argument(
        "--languages",
        default=None,
        help="comma-separated ISO 639-1 codes for languages_detected (default: every language "
        "lingua knows, about 1 GB of models; e.g. en,de,fr loads faster and uses less memory)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="files processed at the same time per worker process (default: %(default)s)",
    )
    _add_engine_args(p)
    p.set_defaults(handler=_cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # dicomscrub's own messages from INFO up; libraries only from WARNING up (the JPEG 2000
    # encoder, for one, reports every tile it writes at INFO)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigurationError as exc:
        print(f"dicomscrub: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dicomscrub: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"dicomscrub: internal error ({type(exc).__name__}); rerun with --debug for details",
            file=sys.stderr,
        )
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
