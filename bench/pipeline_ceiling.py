"""The CPU ceiling of the pipeline: N one-page documents through every stage with a 0-second engine.

Half the documents are born-digital PDFs (a text layer: ``text_layer="auto"`` sends them to
pdf-text), half are scans (image-only PDFs, rendered and sent to the sleep engine at
``seconds_per_page=0``), so what is measured is the CPU side alone: listing, rendering, OCR
bookkeeping, parse + validate, load (SQLite warehouse). The stages run one after another in this
process, each timed (wall and CPU of this process).

Then the same documents through the same stages with the source and the work area on S3: a moto
server on loopback behind two latency-injecting proxies (``testing/latency_proxy.py``: one for the
source bucket, one for the work area, each counting its requests), at 0 and 25 ms a request
(``--delays``). Printed per stage: pages/s, CPU ms/page (this process only: moto's and the proxies'
CPU are not in it) and work-area requests per page.

Then the same stages with the source and the work area as local files answering 25 ms late (the
"sleep store" below: no HTTP, no moto), so the figure is the pipeline's own latency hiding, not
moto's CPU, which shares these 2 cores. Once-per-process costs are paid before the stages and
printed apart, as a long run pays them once: GX's import and context, and the page worker's start
(PyMuPDF's import in the child that every OCR stage of the process then reuses).

Last, the listing: ``--listing-docs`` new one-to-four-page PDFs of about ``--listing-kb`` KB (a
scanned page's image) listed with shards (so every page count is needed) from S3 at 25 ms a
request, with the default ``count_threads`` and a sweep of thread counts, then listed again
(the page-count cache: no document bytes); the share of their bytes the source proxy served.

Validation is measured side by side in the same process, on the same documents' records: one GX
run per table per document (``validate_one``, the way before issue 22) against one run per table
per batch (``validate_documents``, what the parse stage does now). The parse + validate stage is
also run both ways (the per-document one first; its records are the same).

    .venv/bin/python bench/pipeline_ceiling.py [--docs 120] [--delays 0,25] [--listing-docs 1000]

Last line: ``e2e_pages_per_s=<f> ocr_stage_pages_per_s_at_25ms=<f> validate_docs_per_s=<f>
listing_docs_per_s_at_25ms=<f> listing_bytes_read_pct=<f> listing_docs_per_s_at_25ms_sleep_store=<f>
ocr_stage_pages_per_s_at_25ms_sleep_store=<f> ...  load_avg=<f>``.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_documents(folder: Path, n: int) -> None:
    """``n`` one-page documents: even ones born-digital, odd ones scanned (an image, no text)."""
    import pymupdf
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        doc = pymupdf.open()
        page = doc.new_page(width=612, height=792)
        if i % 2 == 0:
            for line in range(12):
                page.insert_text((72, 90 + 40 * line), f"Invoice {i} line {line}: amount {i * 7 + line}.00")
        else:
            img = Image.new("L", (850, 1100), 255)
            draw = ImageDraw.Draw(img)
            for line in range(12):
                draw.text((100, 120 + 60 * line), f"Scanned letter {i} line {line}", fill=0)
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            page.insert_image(page.rect, stream=buf.getvalue())
        doc.save(folder / f"doc_{i:04d}.pdf", garbage=3, deflate=True, no_new_id=True)
        doc.close()


@contextmanager
def timed(out: dict[str, tuple[float, float]], name: str) -> Iterator[None]:
    w0, c0 = time.perf_counter(), time.process_time()
    yield
    out[name] = (time.perf_counter() - w0, time.process_time() - c0)


@contextmanager
def per_document_validation() -> Iterator[None]:
    """The parse stage validating one document per GX run, as before the batches."""
    from airflow_provider_deepocr.core import validate

    batched = validate.validate_documents

    def one_by_one(results: Any, suites: Any = None, *, defaults: bool = True) -> Any:
        return [validate.validate_one(r, suites, defaults=defaults) for r in results]

    validate.validate_documents = one_by_one  # type: ignore[assignment]
    try:
        yield
    finally:
        validate.validate_documents = batched  # type: ignore[assignment]


def docs_per_s(fn: Callable[[], Any], n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def run_stages(
    ctx: Any, source: str, home: Path, tag: str, work_proxy: Any = None
) -> tuple[int, dict[str, Any]]:
    """list -> OCR -> parse+validate -> load of ``source`` in ``ctx``; prints a line per stage (pages/s,
    CPU ms/page, work-area requests/page with ``work_proxy``); returns the pages and the figures."""
    from airflow_provider_deepocr.core.engines import get_engine
    from airflow_provider_deepocr.core.pipeline import (
        config_fingerprint,
        list_source,
        load_manifest,
        ocr_manifest,
        parse_manifest,
    )
    from airflow_provider_deepocr.core.warehouse import Warehouse

    engine = get_engine("sleep", seconds_per_page=0)
    wh = Warehouse(f"sqlite:///{home / f'wh-{tag}.db'}")
    wh.create()
    st: dict[str, tuple[float, float]] = {}
    requests: dict[str, int] = {}

    @contextmanager
    def stage(name: str) -> Iterator[None]:
        before = work_proxy.stats()["requests"] if work_proxy else 0
        with timed(st, name):
            yield
        requests[name] = (work_proxy.stats()["requests"] - before) if work_proxy else 0

    with stage("list"):
        listed = list_source(ctx, source, live_fingerprint=config_fingerprint(engine, ctx.settings))
    with stage("ocr"):
        ocr = ocr_manifest(ctx, listed.manifest_uri, engine)
    if work_proxy is None:  # the local run also measures the per-document validation baseline
        with timed(st, "parse_validate_per_document"), per_document_validation():
            parse_manifest(ctx, ocr.manifest_uri, on_failure="warn")
    with stage("parse_validate"):
        parsed = parse_manifest(ctx, ocr.manifest_uri, on_failure="warn")
    with stage("load"):
        loaded = load_manifest(ctx, parsed.manifest_uri, wh)
    wh.dispose()
    pages = ocr.total_pages
    assert loaded.pages == pages, (loaded.pages, pages, loaded.failed)
    out: dict[str, Any] = {}
    for name, (wall, cpu) in st.items():
        req = f"  {requests.get(name, 0) / pages:6.2f} work-area requests/page" if work_proxy else ""
        rate = f"{pages / wall:9.1f} pages/s  {1000 * cpu / pages:8.2f} ms CPU/page"
        print(f"[{tag}] stage {name:28s} {rate}{req}")
        out[name] = pages / wall
    e2e_wall = sum(w for k, (w, _) in st.items() if k != "parse_validate_per_document")
    e2e_cpu = sum(c for k, (_, c) in st.items() if k != "parse_validate_per_document")
    out["e2e"] = pages / e2e_wall
    print(f"[{tag}] end to end: {pages / e2e_wall:.1f} pages/s, {1000 * e2e_cpu / pages:.2f} ms CPU/page")
    return pages, out


def listing_pdf(rng: random.Random, pages: int, image_bytes: int) -> bytes:
    """A PDF of ``pages`` pages, the first holding a grey image of about ``image_bytes`` (noise:
    incompressible, like a scan), the others a line of text; a classic xref table."""
    from airflow_provider_deepocr.testing.fuzz import build_pdf

    width = 1000
    height = max(1, image_bytes // width)
    pixels = rng.randbytes(width * height)
    kids = " ".join(f"{3 + 2 * k} 0 R" for k in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
    ]
    image_obj = 3 + 2 * pages
    for k in range(pages):
        if k == 0:
            ops = b"q 612 0 0 792 0 0 cm /Im0 Do Q"
            res = f"<< /XObject << /Im0 {image_obj} 0 R >> >>"
        else:
            ops = f"BT /F1 12 Tf 72 720 Td (page {k + 1}) Tj ET".encode()
            res = f"<< /Font << /F1 {image_obj + 1} 0 R >> >>"
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources {res} "
            f"/Contents {4 + 2 * k} 0 R >>".encode()
        )
        objects.append(f"<< /Length {len(ops)} >>\nstream\n".encode() + ops + b"\nendstream")
    objects.append(
        f"<< /Type /XObject /Subtype /Image /Width {width} /Height {height} /ColorSpace /DeviceGray "
        f"/BitsPerComponent 8 /Length {len(pixels)} >>\nstream\n".encode()
        + pixels
        + b"\nendstream"
    )
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    return build_pdf(objects)


class SleepStore:
    """Local files answering like a store ``delay_ms`` away: each request (a read, a ranged read, a
    write, an existence check, a listing page of 1,000) sleeps first; counts requests and bytes.
    No HTTP, no moto: what is left is the listing's own concurrency and CPU."""

    def __init__(self, delay_ms: float) -> None:
        import threading

        self.delay = delay_ms / 1000
        self.requests = 0
        self.bytes = 0
        self._lock = threading.Lock()

    def _request(self, data: bytes = b"") -> bytes:
        time.sleep(self.delay)
        with self._lock:
            self.requests += 1
            self.bytes += len(data)
        return data

    def stats(self) -> dict[str, int]:
        """As the latency proxy's: requests and bytes served so far."""
        return {"requests": self.requests, "response_bytes": self.bytes}

    def make(self) -> Any:
        from airflow_provider_deepocr.core.sources import LocalStorage

        outer = self

        class _Store(LocalStorage):
            def list(self, prefix_uri: str) -> Iterator[Any]:
                outer._request()  # the first page of the listing, even an empty one
                for i, ref in enumerate(super().list(prefix_uri), 1):
                    if i % 1000 == 0:
                        outer._request()
                    yield ref

            def read(self, uri: str) -> bytes:
                return outer._request(super().read(uri))

            def read_range(self, uri: str, start: int, length: int) -> bytes:
                return outer._request(super().read_range(uri, start, length))

            def write(self, uri: str, data: bytes) -> None:
                outer._request()
                super().write(uri, data)

            def exists(self, uri: str) -> bool:
                outer._request()
                return super().exists(uri)

        return _Store()


def listing_runs(
    where: str,
    src: Any,
    source_uri: str,
    work_of: Callable[[int], Any],
    served: Callable[[], tuple[int, int]],
    docs: tuple[int, int, int],
    sweep: list[int],
) -> tuple[float, float]:
    """List ``source_uri`` (``docs``: how many documents, their bytes, their pages) with shards, with
    the default ``count_threads`` then each of ``sweep``, each time new (a fresh work area: no
    page-count cache) and again; ``served()``: (requests, bytes) the source served since the last
    call. Returns (docs/s with the default threads, % of the bytes served)."""
    from airflow_provider_deepocr.core.pipeline import StageContext, list_source

    n_docs, total, pages = docs
    headline = (0.0, 100.0)
    for k, threads in enumerate([0, *sweep]):  # 0: the default count_threads
        work = work_of(k)
        for attempt in ("new", "again"):
            served()
            kwargs: dict[str, Any] = {"count_threads": threads} if threads else {}
            t0, c0 = time.perf_counter(), time.process_time()
            res = list_source(
                StageContext(work, f"l{k}-{attempt}", src), source_uri, shard_pages=5000, **kwargs
            )
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            assert res.total_pages == pages, (res.total_pages, pages)
            requests, nbytes = served()
            label = f"count_threads={threads or 'default'}"
            print(
                f"listing {where}, {label:22s} {attempt:5s}: {n_docs / wall:8.1f} docs/s, "
                f"{requests / n_docs:5.2f} source requests/doc, {100 * nbytes / total:6.2f}% of their bytes "
                f"served, {1000 * cpu / n_docs:6.2f} ms CPU/doc"
            )
            if k == 0 and attempt == "new":
                headline = (n_docs / wall, 100 * nbytes / total)
            if attempt == "new" and not hasattr(res, "counted_from_cache"):
                break  # no page-count cache to measure
    return headline


def listing_corpus(n_docs: int, kb: int) -> tuple[list[bytes], int]:
    """``n_docs`` new one-to-four-page PDFs of about ``kb`` KB, and their pages."""
    rng = random.Random(7)
    bodies = [listing_pdf(rng, 1 + i % 4, kb * 1024) for i in range(n_docs)]
    pages = sum(1 + i % 4 for i in range(n_docs))
    kb_each = sum(map(len, bodies)) / n_docs / 1024
    print(f"listing: {n_docs} new PDFs, {kb_each:.0f} KB on average, {pages} pages")
    return bodies, pages


def measure_listing_s3(
    s3: Any, proxies: tuple[Any, Any], bodies: list[bytes], pages: int, sweep: list[int]
) -> tuple[float, float]:
    """The listing against moto behind the latency proxies (25 ms a request)."""
    from concurrent.futures import ThreadPoolExecutor

    from airflow_provider_deepocr.core.sources import S3Storage, WorkArea, make_s3_client

    src_proxy, work_proxy = proxies
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: s3.put_object(Bucket="src", Key=f"listing/d{i:05d}.pdf", Body=bodies[i]),
                range(len(bodies)),
            )
        )
    src = S3Storage(client=make_s3_client(src_proxy.url))
    work_storage = S3Storage(client=make_s3_client(work_proxy.url))

    def served() -> tuple[int, int]:
        got = src_proxy.stats()
        src_proxy.reset()
        return int(got["requests"]), int(got["response_bytes"])

    return listing_runs(
        "from moto at 25 ms",
        src,
        "s3://src/listing/",
        lambda k: WorkArea(f"s3://work/listing-{k}", work_storage),
        served,
        (len(bodies), sum(map(len, bodies)), pages),
        sweep,
    )


def measure_listing_sleep_store(
    home: Path, bodies: list[bytes], pages: int, sweep: list[int], delay_ms: float = 25
) -> tuple[float, float]:
    """The listing against local files answering 25 ms late (no HTTP, no moto)."""
    from airflow_provider_deepocr.core.sources import WorkArea

    folder = home / "listing"
    folder.mkdir(parents=True, exist_ok=True)
    for i, body in enumerate(bodies):
        (folder / f"d{i:05d}.pdf").write_bytes(body)
    store = SleepStore(delay_ms)
    src = store.make()

    def served() -> tuple[int, int]:
        got = store.requests, store.bytes
        store.requests = store.bytes = 0
        return got

    return listing_runs(
        f"from a {delay_ms:g} ms sleep store",
        src,
        str(folder),
        lambda k: WorkArea(str(home / f"listing-work-{k}"), src),
        served,
        (len(bodies), sum(map(len, bodies)), pages),
        sweep,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/pipeline_ceiling.py", description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=120, help="one-page documents (half scans)")
    ap.add_argument("--delays", default="0,25", help="ms per S3 request to measure ('' skips S3)")
    ap.add_argument("--listing-docs", type=int, default=1000, help="new PDFs for the listing (0 skips it)")
    ap.add_argument("--listing-kb", type=int, default=256, help="about how large each of them is")
    ap.add_argument("--sweep", default="32,64,256", help="count_threads values also measured")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("great_expectations", "airflow_provider_deepocr.core.pipeline.parse_validate", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)  # GX temp dir note; warn-mode verdicts; pool full

    from airflow_provider_deepocr.core import validate
    from airflow_provider_deepocr.core.pipeline import OcrEntry, OcrSettings, StageContext, build_records
    from airflow_provider_deepocr.core.sources import S3Storage, WorkArea, make_s3_client, storage_for
    from airflow_provider_deepocr.testing.latency_proxy import LatencyProxy, start_moto

    print(f"code under test: {Path(validate.__file__).parents[2]}")
    home = Path(tempfile.mkdtemp(prefix="deepocr-ceiling-"))
    write_documents(home / "docs", args.docs)
    print(f"GX import + context: {validate.warm_up():.2f}s (once per process, not in the stages)")
    from airflow_provider_deepocr.core import pagework

    t0 = time.perf_counter()
    pagework.warm_up(wait=True)  # kept across stages (run_pipeline starts it before its listing)
    print(f"page worker start: {time.perf_counter() - t0:.2f}s (once per process, not in the stages)")
    work_root = str(home / "work")
    settings = OcrSettings(text_layer="auto")
    ctx = StageContext(WorkArea(work_root, storage_for(work_root)), "ceiling", settings=settings)
    _, local = run_stages(ctx, str(home / "docs"), home, "local")

    from airflow_provider_deepocr.core.work_layout import UNSHARDED, Manifest

    ocr_manifest_uri = ctx.run_layout.manifest(Manifest.OCR, UNSHARDED)
    results = [build_records(OcrEntry.from_dict(d), ctx.work) for d in ctx.work.read_jsonl(ocr_manifest_uri)]
    n = len(results)
    one = docs_per_s(lambda: [validate.validate_one(r) for r in results], n)
    batched = docs_per_s(lambda: validate.validate_documents(results), n)
    print(f"validate, {n} one-page documents: per document {one:.1f} docs/s, batched {batched:.1f} docs/s")

    # the stages with the source and the work area as local files answering 25 ms late (no HTTP,
    # no moto: the pipeline's own latency hiding, without moto's CPU on these 2 cores)
    sleep_src, sleep_work = SleepStore(25), SleepStore(25)
    sleep_ctx = StageContext(
        WorkArea(str(home / "work-sleep"), sleep_work.make()), "ceiling", sleep_src.make(), settings=settings
    )
    _, sleep_figures = run_stages(sleep_ctx, str(home / "docs"), home, "sleep store 25ms", sleep_work)

    ocr_at_25 = float("nan")
    listing = (float("nan"), float("nan"))
    sweep = [int(t) for t in args.sweep.split(",") if t.strip()]
    sleep_listing = (float("nan"), float("nan"))
    if args.listing_docs:
        bodies, listing_pages = listing_corpus(args.listing_docs, args.listing_kb)
        sleep_listing = measure_listing_sleep_store(home, bodies, listing_pages, sweep)
    delays = [float(d) for d in args.delays.split(",") if d.strip()]
    if delays or args.listing_docs:
        for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
            os.environ.setdefault(key, value)
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        moto, endpoint = start_moto()
        try:
            s3 = make_s3_client(endpoint)
            for bucket in ("src", "work"):
                s3.create_bucket(Bucket=bucket)
            for path in sorted((home / "docs").iterdir()):
                s3.put_object(Bucket="src", Key=f"docs/{path.name}", Body=path.read_bytes())
            port = int(endpoint.rsplit(":", 1)[1])
            with LatencyProxy(port) as src_proxy, LatencyProxy(port) as work_proxy:
                src = S3Storage(client=make_s3_client(src_proxy.url))
                work_storage = S3Storage(client=make_s3_client(work_proxy.url))
                for delay in delays:
                    src_proxy.set_delay(delay)
                    work_proxy.set_delay(delay)
                    tag = f"s3 {delay:g}ms"
                    work = WorkArea(f"s3://work/ceiling-{delay:g}", work_storage)
                    s3ctx = StageContext(work, "ceiling", src, settings=settings)
                    _, figures = run_stages(s3ctx, "s3://src/docs/", home, tag, work_proxy)
                    if delay == 25:
                        ocr_at_25 = figures["ocr"]
                if args.listing_docs:
                    src_proxy.set_delay(25)
                    work_proxy.set_delay(25)
                    listing = measure_listing_s3(s3, (src_proxy, work_proxy), bodies, listing_pages, sweep)
        finally:
            moto.terminate()
            moto.wait(timeout=10)
    print(
        f"e2e_pages_per_s={local['e2e']:.1f} ocr_stage_pages_per_s_at_25ms={ocr_at_25:.1f} "
        f"validate_docs_per_s={batched:.1f} listing_docs_per_s_at_25ms={listing[0]:.1f} "
        f"listing_bytes_read_pct={listing[1]:.2f} "
        f"listing_docs_per_s_at_25ms_sleep_store={sleep_listing[0]:.1f} "
        f"ocr_stage_pages_per_s_at_25ms_sleep_store={sleep_figures['ocr']:.1f} "
        f"validate_docs_per_s_per_document_baseline={one:.1f} "
        f"load_avg={os.getloadavg()[0]:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
