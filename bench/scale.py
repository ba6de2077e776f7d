"""Scale-out benchmark: N shards of P pages over W parallel OCR slots, with the sleep engine.

The hospital-backfill DAG runs on a real scheduler (testing/cluster.py's processes with the
LocalExecutor: api-server, scheduler, dag-processor; W slots in the ``deepocr_gpu`` pool) over N
generated PDFs of P pages each, cut into N shards of P pages (``DEEPOCR_SHARD_PAGES``). The sleep
engine answers each page after a fixed ``--seconds-per-page``, so the OCR work is known exactly:
pages x latency. Measured wall: from the first OCR instance's start to the last one's end (the
mapped OCR stage, from the metadata database).

    efficiency = (pages x latency / W) / measured wall
    overhead_s_per_shard = (sum of OCR instance durations - pages x latency) / N

Needs PostgreSQL on 127.0.0.1:5432. Target: efficiency >= 0.9 with W=2, 8 shards of 50 pages at
0.2 s/page (``python bench/scale.py``). The last line printed is ``workers=… shards=… pages=…
seconds_per_page=… ideal_s=… wall_s=… run_s=… efficiency=… overhead_s_per_shard=…``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DAG_ID = "deepocr_hospital_backfill"


def write_pdfs(folder: Path, shards: int, pages: int) -> None:
    import pymupdf

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(shards):
        doc = pymupdf.open()
        for n in range(pages):
            page = doc.new_page(width=200, height=120)
            page.insert_text((10, 40), f"bench doc {i} page {n + 1}", fontsize=9)
        doc.save(folder / f"doc_{i:03d}.pdf", garbage=3, deflate=True, no_new_id=True)
        doc.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/scale.py", description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2, help="parallel OCR slots (W)")
    ap.add_argument("--shards", type=int, default=8, help="N")
    ap.add_argument("--pages", type=int, default=50, help="pages per shard")
    ap.add_argument("--seconds-per-page", type=float, default=0.2)
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args(argv)

    import sqlalchemy as sa

    from airflow_provider_deepocr.testing.cluster import Cluster, ClusterConfig, ensure_database, free_port

    home = Path(tempfile.mkdtemp(prefix="deepocr-scale-"))
    write_pdfs(home / "archive" / "2001", args.shards, args.pages)
    meta_db = "deepocr_bench_scale"
    cfg = ClusterConfig(
        home=home,
        api_port=free_port(),
        metadata_db=meta_db,
        executor="LocalExecutor",
        parallelism=args.workers + 2,  # W OCR slots (the pool caps OCR), room for a listing/load
        pools={"deepocr_gpu": args.workers},
        env={
            "DEEPOCR_ARCHIVE_URI": str(home / "archive"),
            "DEEPOCR_WORK_URI": str(home / "work"),
            "DEEPOCR_WAREHOUSE": f"sqlite:///{home / 'warehouse.db'}",
            "DEEPOCR_ENGINE": "sleep",
            "DEEPOCR_SECONDS_PER_PAGE": str(args.seconds_per_page),
            "DEEPOCR_SHARD_PAGES": str(args.pages),
            "DEEPOCR_BATCH_SIZE": "8",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),  # the scheduler serves logs
        },
    )
    cluster = Cluster(cfg)
    meta = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{meta_db}")
    try:
        cluster.start(fresh=True)
        deadline = time.monotonic() + 120
        with meta.connect() as con:
            while not con.execute(sa.text("SELECT 1 FROM dag WHERE dag_id = :d"), {"d": DAG_ID}).scalar():
                if time.monotonic() > deadline:
                    raise TimeoutError("the DAG was not parsed")
                time.sleep(1)
                con.rollback()
        cluster.airflow("dags", "unpause", DAG_ID)
        cluster.airflow(
            "dags", "trigger", DAG_ID, "--run-id", "bench", "--logical-date", "2001-01-01T00:00:00+00:00"
        )
        deadline = time.monotonic() + args.timeout
        state = None
        while state not in ("success", "failed"):
            if time.monotonic() > deadline:
                raise TimeoutError("the bench run did not finish")
            time.sleep(1)
            with meta.connect() as con:
                state = con.execute(
                    sa.text("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = 'bench'"), {"d": DAG_ID}
                ).scalar()
        with meta.connect() as con:
            run_s = con.execute(
                sa.text(
                    "SELECT extract(epoch FROM end_date - start_date) FROM dag_run "
                    "WHERE dag_id = :d AND run_id = 'bench'"
                ),
                {"d": DAG_ID},
            ).scalar()
            rows = con.execute(
                sa.text(
                    "SELECT map_index, extract(epoch FROM start_date), extract(epoch FROM end_date), state "
                    "FROM task_instance WHERE dag_id = :d AND run_id = 'bench' AND task_id = 'ocr'"
                ),
                {"d": DAG_ID},
            ).all()
    finally:
        cluster.stop()
        meta.dispose()
        ensure_database(meta_db, fresh=True)  # leave no big metadata database behind
    if state != "success" or len(rows) != args.shards or any(r[3] != "success" for r in rows):
        print(f"bench run {state}; OCR instances {[(r[0], r[3]) for r in rows]}; logs in {home}/logs")
        return 1
    total_pages = args.shards * args.pages
    work_s = total_pages * args.seconds_per_page
    ideal = work_s / args.workers
    wall = max(float(r[2]) for r in rows) - min(float(r[1]) for r in rows)
    busy = sum(float(r[2]) - float(r[1]) for r in rows)
    print(
        f"workers={args.workers} shards={args.shards} pages={total_pages} "
        f"seconds_per_page={args.seconds_per_page:g} ideal_s={ideal:.1f} wall_s={wall:.1f} "
        f"run_s={float(run_s):.1f} efficiency={ideal / wall:.3f} "
        f"overhead_s_per_shard={(busy - work_s) / args.shards:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
