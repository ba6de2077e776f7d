"""The ``deepocr`` command: a thin shell over :mod:`airflow_provider_deepocr.core.pipeline`.

Exit codes: 0 when the run completed (even if some documents failed: they are failure rows),
2 for bad arguments, 3 when the run could not proceed (missing source, unusable object storage,
unreachable warehouse, bad configuration), with one line on stderr saying what and why.

``deepocr run`` checks the source, the work area and the warehouse before it builds the OCR
engine, so such a failure costs a second, not a model load.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_CANNOT_RUN = 3
EXIT_LOST = 4  # the run finished, but listed objects have no outcome (no row, no failure row)

DEFAULT_WORK_DIR = os.environ.get("DEEPOCR_WORK_DIR", ".deepocr-work")

log = logging.getLogger("airflow_provider_deepocr.cli")


def _positive_int(value: str) -> int:
    n = int(value)
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return n


def _batch_size(value: str) -> int | str:
    from airflow_provider_deepocr.core.engines import parse_batch_size
    from airflow_provider_deepocr.core.errors import ConfigError

    try:
        return parse_batch_size(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _expectation(value: str) -> tuple[str, str]:
    table, sep, path = value.partition("=")
    if not sep or table not in ("pages", "blocks", "cells") or not path:
        raise argparse.ArgumentTypeError(
            f"expected TABLE=SUITE.json with TABLE in pages|blocks|cells, got {value!r}"
        )
    return table, path


def _warehouse_flags() -> argparse.ArgumentParser:
    """The warehouse flags of every subcommand that reads or writes one (a parent parser)."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("--warehouse", required=True, help="SQLAlchemy URL, e.g. sqlite:///deepocr.db")
    flags.add_argument("--schema", default=None, help="warehouse schema")
    flags.add_argument("--table-prefix", default="deepocr_", help="warehouse table name prefix")
    return flags


def _work_flags(required: bool) -> argparse.ArgumentParser:
    """The work-area flags (a parent parser): ``run`` makes one (a default folder), ``review`` and
    ``report`` read the one a run used (``required``)."""
    flags = argparse.ArgumentParser(add_help=False)
    if required:
        flags.add_argument("--work-dir", required=True, help="the work area the pipeline used")
    else:
        flags.add_argument(
            "--work-dir", default=DEFAULT_WORK_DIR, help="work area: a folder or s3://bucket/prefix"
        )
    flags.add_argument(
        "--s3-endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"), help="S3-compatible endpoint"
    )
    return flags


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deepocr", description="Documents in object storage -> OCR -> warehouse rows."
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    warehouse, work_run, work_used = (
        _warehouse_flags(),
        _work_flags(required=False),
        _work_flags(required=True),
    )
    run = sub.add_parser("run", parents=[warehouse, work_run], help="run the whole pipeline in this process")
    run.add_argument("source", help="a folder, a file, file://… or s3://bucket/prefix")
    run.add_argument(
        "--engine", default="auto", choices=["auto", "deepseek", "rapidocr", "server"], help="OCR engine"
    )
    run.add_argument("--server-url", default=None, help="OpenAI-compatible server for --engine server")
    run.add_argument("--model", default=None, help="model id or local path (DeepSeek-OCR-2)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    run.add_argument("--dtype", default="auto", help="auto, bfloat16, float16, float32")
    run.add_argument(
        "--prompt", default="markdown", help="markdown (grounded), free, figure, or a literal prompt"
    )
    run.add_argument("--dpi", type=_positive_int, default=144, help="render resolution for PDF pages")
    run.add_argument(
        "--max-new-tokens",
        type=_positive_int,
        default=None,
        help=(
            "generation limit per page (default 8192: the model's context, capped per page at "
            "8192 minus the prompt, about 7000 for a full page; 2048 for --prompt figure)"
        ),
    )
    run.add_argument(
        "--batch-size",
        type=_batch_size,
        default=1,
        help=(
            "pages per engine batch, or 'auto' (DeepSeek-OCR-2: on CUDA by free GPU memory, 4 to 128, "
            "halved on out-of-memory; 4 on CPU)"
        ),
    )
    run.add_argument(
        "--text-layer",
        default="never",
        choices=["never", "auto", "only"],
        help="auto: PDF pages with a good text layer skip the model (engine pdf-text); only: never OCR",
    )
    run.add_argument(
        "--retry-temperatures",
        default="0,0.2,0.4",
        help="temperature ladder for pages that loop or hit the token limit ('0' or 'none': no retries)",
    )
    run.add_argument(
        "--fallback-engine",
        default="none",
        choices=["none", "rapidocr"],
        help="engine for pages that still loop after the ladder",
    )
    run.add_argument("--max-pages", type=_positive_int, default=2000, help="reject documents with more pages")
    run.add_argument(
        "--max-pixels", type=_positive_int, default=50_000_000, help="largest page image (see --on-oversize)"
    )
    run.add_argument(
        "--page-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="time limit of one page's render and text extraction, in a killable worker process; "
        "a page over it is a page_timeout failure row (0: no worker, no limit; default 60)",
    )
    run.add_argument(
        "--on-oversize",
        default="downscale",
        choices=["downscale", "fail"],
        help="a page over --max-pixels: render it at the highest DPI that fits (flagged downscaled) "
        "or fail it (image_too_large)",
    )
    run.add_argument("--max-documents", type=_positive_int, default=None, help="process at most N documents")
    run.add_argument(
        "--expectations",
        action="append",
        type=_expectation,
        default=[],
        metavar="TABLE=SUITE.json",
        help="extra Great Expectations suite for pages, blocks or cells (repeatable)",
    )
    run.add_argument(
        "--on-validation-failure",
        default="quarantine",
        choices=["quarantine", "fail", "warn"],
        help="what to do with a document that fails validation",
    )
    run.add_argument(
        "--skip-unchanged",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="skip objects whose URI, size and version match a document loaded under this config, unread",
    )
    run.add_argument(
        "--gpu-hour-cost", type=float, default=None, help="cost of an hour of this machine (runs table)"
    )
    run.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")

    parse = sub.add_parser("parse", help="parse one raw DeepSeek-OCR output file")
    parse.add_argument(
        "raw_file", help="a text file of raw model output (pages joined by <--- Page Split --->)"
    )
    parse.add_argument("--width", type=_positive_int, default=None, help="page image width in pixels")
    parse.add_argument("--height", type=_positive_int, default=None, help="page image height in pixels")
    parse.add_argument("--truncated", action="store_true", help="the output stopped at the token limit")
    parse.add_argument("--json", action="store_true", help="print records as JSON")

    srv = sub.add_parser("serve", help="serve DeepSeek-OCR-2 as an OpenAI-compatible /v1/chat/completions")
    srv.add_argument("--model", required=True, help="model id or local path")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=_positive_int, default=8000)
    srv.add_argument("--device", default="auto")
    srv.add_argument("--dtype", default="auto")
    srv.add_argument("--max-new-tokens", type=_positive_int, default=4096, help="upper limit per request")
    srv.add_argument("--max-batch-size", type=_positive_int, default=8, help="requests per model batch")
    srv.add_argument("--batch-wait-ms", type=float, default=10.0, help="how long a batch waits to fill")
    srv.add_argument(
        "--served-model-name", default=None, help="model name in responses and /v1/models (default: --model)"
    )

    show = sub.add_parser("show", parents=[warehouse], help="print what landed in a warehouse")
    show.add_argument("--limit", type=_positive_int, default=5, help="rows to show per table")
    show.add_argument(
        "--runs", action="store_true", help="the runs table instead: one row per run and shard, with cost"
    )

    rev = sub.add_parser(
        "review",
        parents=[warehouse, work_used],
        help="a web page to review quarantined and flagged documents",
    )
    rev.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    rev.add_argument("--port", type=_positive_int, default=8765)
    rev.add_argument("--token-file", default=None, help="a file holding the access token (else one is made)")
    rev.add_argument("--reviewer", default=None, help="the name review rows carry (default: the OS user)")

    rep = sub.add_parser(
        "report", parents=[warehouse, work_used], help="a self-contained HTML report of one run"
    )
    rep.add_argument("run_id")
    rep.add_argument("--html", required=True, help="where to write the report")
    return p


def _cannot_run(message: object) -> int:
    """The one way a command fails: one line on stderr, exit code 3."""
    print(f"deepocr: {message}", file=sys.stderr)
    return EXIT_CANNOT_RUN


def _review_settings(args: argparse.Namespace) -> Any:
    from airflow_provider_deepocr.core.sources import make_s3_client
    from airflow_provider_deepocr.review.app import ReviewSettings

    work_dir = args.work_dir if "://" in args.work_dir else str(Path(args.work_dir).resolve())
    s3 = make_s3_client(args.s3_endpoint_url) if work_dir.startswith("s3://") else None
    return ReviewSettings(
        args.warehouse, work_dir, schema=args.schema, prefix=args.table_prefix, s3_client=s3
    )


def cmd_review(args: argparse.Namespace) -> int:
    import getpass

    from airflow_provider_deepocr.review.app import TokenAuth, serve

    reviewer = args.reviewer or getpass.getuser()
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            return _cannot_run(f"cannot read --token-file: {type(exc).__name__}")
        if len(token) < 16:
            return _cannot_run("the token in --token-file is shorter than 16 characters")
        auth = TokenAuth(token, reviewer)
    else:
        auth = TokenAuth.new(reviewer)
        print(f"review token: {auth.token}", file=sys.stderr)
    print(f"open http://{args.host}:{args.port}/?token=<the token>", file=sys.stderr)
    serve(_review_settings(args), auth, host=args.host, port=args.port)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from airflow_provider_deepocr.core import errors
    from airflow_provider_deepocr.review.report import build_report, write_report

    try:
        settings = _review_settings(args)
        text = build_report(settings, args.run_id)
    except errors.DeepOcrError as exc:
        return _cannot_run(exc)
    write_report(args.html, text)
    print(f"report of run {args.run_id}: {args.html}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from airflow_provider_deepocr.core import errors
    from airflow_provider_deepocr.core.engines import SETTING_NAMES, EngineSettings, build_engine
    from airflow_provider_deepocr.core.pipeline import OcrSettings, run_pipeline
    from airflow_provider_deepocr.core.sources import WorkArea, check_source, make_s3_client, storage_for
    from airflow_provider_deepocr.core.warehouse import Warehouse

    # Cheap checks first (settings, source, work area, warehouse); the engine, which may load a
    # model for tens of seconds and hold a GPU, is built last.
    try:
        engine_settings = EngineSettings.from_values(
            **{name: getattr(args, name) for name in SETTING_NAMES if hasattr(args, name)}
        )
        ocr_settings = OcrSettings(
            dpi=args.dpi,
            max_pages=args.max_pages,
            max_pixels=args.max_pixels,
            text_layer=args.text_layer,
            on_oversize=args.on_oversize,
            page_timeout_s=args.page_timeout,
        )
        s3_client = None
        if args.source.startswith("s3://") or args.work_dir.startswith("s3://"):
            s3_client = make_s3_client(args.s3_endpoint_url)
        check_source(args.source, s3_client=s3_client)
        work_dir = args.work_dir if "://" in args.work_dir else str(Path(args.work_dir).resolve())
        work = WorkArea(work_dir, storage_for(work_dir, s3_client=s3_client))
        work.check()
    except errors.DeepOcrError as exc:
        return _cannot_run(exc)
    try:
        warehouse = Warehouse(args.warehouse, schema=args.schema, prefix=args.table_prefix)
        warehouse.create()
    except errors.DeepOcrError as exc:
        return _cannot_run(exc)
    except Exception as exc:  # SQLAlchemy errors: the warehouse is unreachable or refuses us
        return _cannot_run(f"cannot use warehouse {_mask(args.warehouse)}: {type(exc).__name__}")
    try:
        t0 = time.perf_counter()
        engine = build_engine(engine_settings)
        load_seconds = time.perf_counter() - t0
        summary = run_pipeline(
            args.source,
            warehouse,
            engine,
            work,
            settings=ocr_settings,
            s3_client=s3_client,
            suites=dict(args.expectations) or None,
            on_validation_failure=args.on_validation_failure,
            max_documents=args.max_documents,
            skip_unchanged=args.skip_unchanged,
            model_load_seconds=load_seconds,
            gpu_hour_cost=args.gpu_hour_cost,
        )
    except errors.DeepOcrError as exc:
        return _cannot_run(exc)
    if args.json:
        print(json.dumps(summary.to_dict(), sort_keys=True))
    else:
        print(f"run {summary.run_id}: engines {json.dumps(summary.engines)} (configured: {summary.model})")
        print(
            f"  listed:    {summary.listed} (loaded {summary.loaded_documents}, "
            f"failed {summary.failed_objects}, duplicates {summary.duplicates}, "
            f"skipped {summary.skipped_documents}, lost {len(summary.lost)})"
        )
        print(f"  pages:     {summary.pages} (ok {summary.ok})")
        failed = ", ".join(f"{k}={v}" for k, v in summary.failed.items()) or "none"
        print(f"  failed:    {failed}")
        print(f"  seconds:   {summary.seconds:.1f}")
    if summary.lost:
        print(
            f"error: {len(summary.lost)} listed objects have no outcome (lost): {', '.join(summary.lost)}",
            file=sys.stderr,
        )
        return EXIT_LOST
    return EXIT_OK


def cmd_parse(args: argparse.Namespace) -> int:
    from airflow_provider_deepocr.core.parse import document_markdown, parse_document

    try:
        raw = Path(args.raw_file).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return _cannot_run(f"cannot read {args.raw_file}: {exc.strerror}")
    pages = parse_document(raw, width=args.width, height=args.height)
    if args.truncated and pages:
        from airflow_provider_deepocr.core.parse import FLAG_TRUNCATED

        if FLAG_TRUNCATED not in pages[-1].flags:
            pages[-1].flags = sorted({*pages[-1].flags, FLAG_TRUNCATED})
    if args.json:
        print(json.dumps({"pages": [p.to_json_dict() for p in pages]}, ensure_ascii=False))
    else:
        print(document_markdown(pages))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from airflow_provider_deepocr.server import serve

    serve(
        args.model,
        host=args.host,
        port=args.port,
        device=args.device,
        dtype=args.dtype,
        max_new_tokens=args.max_new_tokens,
        max_batch_size=args.max_batch_size,
        batch_wait_ms=args.batch_wait_ms,
        served_model_name=args.served_model_name,
    )
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from airflow_provider_deepocr.core import errors
    from airflow_provider_deepocr.core.warehouse import Warehouse

    try:  # only reads: a missing SQLite/DuckDB file is refused, never created
        wh = Warehouse(args.warehouse, schema=args.schema, prefix=args.table_prefix, must_exist=True)
        wh.check()
    except errors.DeepOcrError as exc:
        return _cannot_run(exc)
    try:
        return _show(wh, args)
    except sa.exc.SQLAlchemyError as exc:
        url = wh.engine.url.render_as_string(hide_password=True)
        return _cannot_run(f"cannot read the tables of warehouse {url} ({errors.describe(exc)})")


def _show(wh: Any, args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    if args.runs:
        return _show_runs(wh, args.limit)
    counts = wh.counts()
    print("rows per table:")
    for name, n in counts.items():
        print(f"  {name:<28} {n}")
    queries: dict[str, tuple[str, ...]] = {
        "documents": ("doc_id", "source_uri", "page_count"),
        "pages": ("doc_id", "page_no", "engine", "model", "finish_reason"),
        "blocks": ("doc_id", "page_no", "block_no", "label", "x0", "y0", "x1", "y1", "text"),
        "failures": ("source_uri", "page_no", "reason", "detail"),
    }
    with wh.engine.connect() as conn:
        for short, cols in queries.items():
            table = wh.table(short)
            stmt = sa.select(*(table.c[c] for c in cols)).limit(args.limit)
            rows = conn.execute(stmt).all()
            print(f"\n{table.name} (first {len(rows)}):")
            for row in rows:
                print("  " + " | ".join(_short(v) for v in row))
    return EXIT_OK


RUN_COLUMNS = (
    ("run_id", 40),
    ("dag_id", 24),
    ("shard", 8),
    ("documents", 5),
    ("pages", 6),
    ("pages_ocr", 6),
    ("engine", 10),
    ("device", 18),
    ("model_load_seconds", 7),
    ("engine_seconds", 8),
    ("output_tokens", 9),
    ("cost", 9),
    ("failed", 30),
)


def _show_runs(wh: Any, limit: int) -> int:
    """The newest rows of the runs table, then per run: pages/s and cost per document and per
    1,000 pages (when the runs carry a cost: ``gpu_hour_cost`` of the OCR connection)."""
    rows = wh.runs(limit=max(limit, 1) * 20)
    heads = {"model_load_seconds": "load_s", "engine_seconds": "engine_s", "output_tokens": "tokens"}
    columns = [(c, heads.get(c, c), max(w, len(heads.get(c, c)))) for c, w in RUN_COLUMNS]
    print("  ".join(f"{head:<{w}}" for _, head, w in columns).rstrip())
    for r in rows:
        cells = []
        for c, _, w in columns:
            v = r.get(c)
            v = (f"{v:.6f}" if c == "cost" else f"{v:.2f}") if isinstance(v, float) else v
            cells.append(f"{_short(v, w):<{w}}")
        print("  ".join(cells).rstrip())
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        runs.setdefault((r["run_id"], r["dag_id"]), []).append(r)
    if runs:
        print("\nper run:")
    for (run_id, dag_id), shards in runs.items():
        docs = sum(r["documents"] for r in shards)
        pages = sum(r["pages"] for r in shards)
        engine_s = sum(r["engine_seconds"] or 0 for r in shards)
        costs = [r["cost"] for r in shards if r["cost"] is not None]
        line = f"  {run_id} ({dag_id}): {len(shards)} shard rows, {docs} documents, {pages} pages"
        if engine_s:
            line += f", {sum(r['pages_ocr'] or 0 for r in shards) / engine_s:.2f} pages/s of engine time"
        if costs:
            cost = sum(costs)
            per_doc = cost / docs if docs else 0.0
            per_k = 1000 * cost / pages if pages else 0.0
            line += f", cost {cost:.4f} ({per_doc:.6f} per document, {per_k:.4f} per 1,000 pages)"
        print(line)
    return EXIT_OK


def _short(value: Any, n: int = 60) -> str:
    s = "" if value is None else str(value).replace("\n", " ")
    if len(s) == 64 and all(c in "0123456789abcdef" for c in s):
        return s[:12]
    return s if len(s) <= n else s[: n - 1] + "…"


def _mask(url: str) -> str:
    try:
        import sqlalchemy as sa

        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in (
        "great_expectations",
        "httpx",
        "urllib3",
        "botocore",
        "azure",
        "transformers",
        "RapidOCR",
        "alembic",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # the cloud drivers log each login attempt and warn about cloud metadata they probe (google-auth:
    # no metadata server answered); a failure reaches the user as the one line of the error
    for noisy in ("snowflake.connector", "google", "google.auth"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    handlers = {
        "run": cmd_run,
        "parse": cmd_parse,
        "serve": cmd_serve,
        "show": cmd_show,
        "review": cmd_review,
        "report": cmd_report,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
