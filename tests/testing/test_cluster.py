"""The hospital backfill on a real CeleryExecutor cluster (``make cluster``'s processes): routing,
exactly-once loads, and a GPU worker killed with ``kill -9`` in the middle of an OCR shard.

Marker ``cluster``: ``pytest -m cluster`` runs it alone. It needs PostgreSQL and Redis on
127.0.0.1 (``make services``) and takes about 4 minutes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_provider_deepocr.testing.cluster import (
    Cluster,
    ClusterConfig,
    ensure_database,
    free_port,
    free_redis_db,
)
from airflow_provider_deepocr.testing.samples import write_scanned_archive
from tests.digest import table_digest

pytestmark = pytest.mark.cluster

DAG_ID = "deepocr_hospital_backfill"
YEAR = 2001
# one logical date per run (Airflow keeps them unique), all in YEAR: the DAG lists archive/<year>/
LOGICAL_DATES = {"run1": f"{YEAR}-01-01", "run2": f"{YEAR}-04-01", "run3": f"{YEAR}-07-01"}
SHARD_PAGES = 3
# record_0002 (5 pages) is split: page 1 in shard 0, 2-4 in shard 1, 5 in shard 2
PAGE_COUNTS = [2, 5, 2]
SHARDS = 3
# per-run names: two test runs on one machine (two worktrees) never share a database, and each
# cluster takes an empty Redis database for its broker (cluster.free_redis_db)
RUN = uuid.uuid4().hex[:8]
META_DB = f"deepocr_cluster_test_{RUN}"
WAREHOUSE_DB = f"deepocr_cluster_test_wh_{RUN}"
WAREHOUSE = f"postgresql+psycopg://postgres@127.0.0.1:5432/{WAREHOUSE_DB}"
GPU_HOST, DEFAULT_HOST = "deepocr-gpu-worker", "deepocr-default-worker"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("cluster")
    redis_db = free_redis_db()
    ensure_database(WAREHOUSE_DB, fresh=True)
    cfg = ClusterConfig(
        home=home,
        api_port=free_port(),
        metadata_db=META_DB,
        redis_url=f"redis://127.0.0.1:6379/{redis_db}",  # not make cluster's db 0
        log_server_ports={"default": free_port(), "gpu": free_port()},
        heartbeat_timeout_s=30,
        env={
            "DEEPOCR_ARCHIVE_URI": str(home / "archive"),
            "DEEPOCR_WORK_URI": str(home / "work"),
            "DEEPOCR_WAREHOUSE": WAREHOUSE,
            "DEEPOCR_ENGINE": "rapidocr",
            "DEEPOCR_BATCH_SIZE": "1",  # a shard is several engine batches
            "DEEPOCR_SHARD_PAGES": str(SHARD_PAGES),
            "DEEPOCR_RETRY_DELAY_S": "2",
        },
    )
    write_scanned_archive(home / "archive" / str(YEAR), PAGE_COUNTS)
    c = Cluster(cfg)
    try:
        c.start(fresh=True)
        yield c
    finally:
        c.stop()
        subprocess.run(["redis-cli", "-h", "127.0.0.1", "-n", str(redis_db), "FLUSHDB"], capture_output=True)
        for db in (META_DB, WAREHOUSE_DB):
            subprocess.run(
                [
                    "psql",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-c",
                    f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)',
                ],
                capture_output=True,
            )


def _meta(c: Cluster) -> sa.Engine:
    return sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{c.cfg.metadata_db}")


def _wait(pred: Any, timeout: float, what: str, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what}: not after {timeout:.0f}s")


def _run_state(meta: sa.Engine, run_id: str) -> str | None:
    with meta.connect() as con:
        return con.execute(
            sa.text("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r"), {"d": DAG_ID, "r": run_id}
        ).scalar()


def _trigger(c: Cluster, run_id: str) -> None:
    c.airflow(
        "dags",
        "trigger",
        DAG_ID,
        "--run-id",
        run_id,
        "--logical-date",
        LOGICAL_DATES[run_id] + "T00:00:00+00:00",
    )


def _wait_run(c: Cluster, meta: sa.Engine, run_id: str, timeout: float) -> str:
    t0 = time.monotonic()
    state = _wait(
        lambda: (s := _run_state(meta, run_id)) in ("success", "failed") and s,
        timeout,
        f"DAG run {run_id}",
    )
    if state != "success":
        pytest.fail(f"run {run_id} {state}: {_task_instances(meta, run_id)}; logs in {c.cfg.home}")
    print(f"{run_id}: {state} in {time.monotonic() - t0:.0f}s")
    return state


def _task_instances(meta: sa.Engine, run_id: str) -> list[dict[str, Any]]:
    with meta.connect() as con:
        rows = con.execute(
            sa.text(
                "SELECT task_id, map_index, state, hostname, queue, try_number FROM task_instance "
                "WHERE dag_id = :d AND run_id = :r ORDER BY task_id, map_index"
            ),
            {"d": DAG_ID, "r": run_id},
        )
        return [dict(r._mapping) for r in rows]


def _shard_page_files(work: Path, run_id: str, shard: int) -> list[Path]:
    """The page files the OCR of ``shard`` writes (work/ocr/<fingerprint>/<doc sha256>/pNNNNN.json)."""
    out = []
    for line in (work / "runs" / run_id / "shards" / f"{shard:05d}.jsonl").read_text().splitlines():
        item = json.loads(line)
        uri = item["ref"]["uri"]
        path = Path(uri.removeprefix("file://"))
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        last = item["last"] or item["pages"]
        for n in range(item["first"], last + 1):
            found = list(work.glob(f"ocr/*/{sha}/p{n:05d}.json"))
            out.append(found[0] if found else work / "ocr" / "?" / sha / f"p{n:05d}.json")
    return out


def _check_warehouse() -> None:
    wh = sa.create_engine(WAREHOUSE)
    with wh.connect() as con:
        docs = con.execute(
            sa.text("SELECT source_uri, page_count, doc_id FROM records_documents ORDER BY source_uri")
        ).all()
        pages = dict(
            con.execute(sa.text("SELECT doc_id, count(*) FROM records_pages GROUP BY doc_id")).all()  # type: ignore[arg-type]
        )
    names = [Path(u).name for u, _, _ in docs]
    assert names == [f"record_{i:04d}.pdf" for i in range(1, len(PAGE_COUNTS) + 1)]  # each exactly once
    assert [n for _, n, _ in docs] == PAGE_COUNTS
    assert [pages.get(d) for _, _, d in docs] == PAGE_COUNTS
    wh.dispose()


def _check_access(c: Cluster) -> None:
    """Loopback only; one admin with the generated password; the airflow CLI from the env file."""
    import psutil

    listening = {
        conn.laddr.ip
        for conn in psutil.net_connections("inet")
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == c.cfg.api_port
    }
    assert listening == {"127.0.0.1"}
    base = f"http://127.0.0.1:{c.cfg.api_port}"
    try:
        urllib.request.urlopen(f"{base}/api/v2/dags", timeout=10)  # noqa: S310 (local)
        pytest.fail("an anonymous request was served")
    except urllib.error.HTTPError as exc:
        assert exc.code in (401, 403)
    password = c.admin_password()
    assert password
    req = urllib.request.Request(
        f"{base}/auth/token",
        data=json.dumps({"username": "admin", "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 (local)
        token = json.loads(r.read())["access_token"]
    req = urllib.request.Request(f"{base}/api/v2/dags", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 (local)
        assert DAG_ID in {d["dag_id"] for d in json.loads(r.read())["dags"]}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    airflow = Path(sys.executable).with_name("airflow")
    out = subprocess.run(
        ["bash", "-c", f"source {c.cfg.env_file} && {airflow} dags list -o plain"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert DAG_ID in {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def test_backfill_routes_shards_and_survives_a_killed_gpu_worker(cluster: Cluster) -> None:
    meta = _meta(cluster)
    work = Path(cluster.cfg.env["DEEPOCR_WORK_URI"])
    _wait(
        lambda: (
            meta.connect().execute(sa.text("SELECT 1 FROM dag WHERE dag_id = :d"), {"d": DAG_ID}).scalar()
        ),
        90,
        "the DAG parsed",
    )
    cluster.airflow("dags", "unpause", DAG_ID)
    _check_access(cluster)

    # -- 1. a clean run: routing by queue, shards, exactly once --------------------------------
    _trigger(cluster, "run1")
    _wait_run(cluster, meta, "run1", 240)
    tis = _task_instances(meta, "run1")
    ocr = [t for t in tis if t["task_id"] == "ocr"]
    assert [t["map_index"] for t in ocr] == list(range(SHARDS))
    for t in tis:
        want = GPU_HOST if t["task_id"] == "ocr" else DEFAULT_HOST
        assert (t["task_id"], t["map_index"], t["hostname"]) == (t["task_id"], t["map_index"], want)
        assert t["state"] == "success"
    for task in ("parse_validate", "load"):
        assert sorted(t["map_index"] for t in tis if t["task_id"] == task) == list(range(SHARDS))
    spanning = [json.loads(x) for x in (work / "runs" / "run1" / "spanning.jsonl").read_text().splitlines()]
    assert [(Path(d["ref"]["uri"]).name, [p["shard"] for p in d["parts"]]) for d in spanning] == [
        ("record_0002.pdf", ["00000", "00001", "00002"])
    ]
    for shard in range(SHARDS):
        stats = json.loads((work / "runs" / "run1" / "stats" / f"{shard:05d}.json").read_text())
        assert stats["pages"] == stats["pages_ocr"] == len(_shard_page_files(work, "run1", shard))
    _check_warehouse()

    # -- 2. the fault: kill -9 the GPU worker's tree during an OCR shard ------------------------
    shutil.rmtree(work)  # the work area caches OCR results
    ensure_database(WAREHOUSE_DB, fresh=True)
    _trigger(cluster, "run2")
    shard = 0  # 3 pages: 3 engine batches

    def some_pages_done() -> bool:
        if not (work / "runs" / "run2" / "shards" / "00000.jsonl").exists():
            return False
        done = [p for p in _shard_page_files(work, "run2", shard) if p.exists()]
        return 1 <= len(done) < SHARD_PAGES

    _wait(some_pages_done, 180, "the first pages of shard 0", every=0.1)
    # as a person would: kill -9 of the worker's main PID alone. Its task processes outlive it
    # (reparented to init), in its session: kill() reaches them there, and leaves none behind.
    main_pid = cluster.pids()["worker-gpu"]
    os.kill(main_pid, signal.SIGKILL)
    _wait(
        lambda: main_pid not in [p.pid for p in cluster.members("worker-gpu")], 10, "the main PID gone", 0.05
    )
    killed = cluster.kill("worker-gpu", signal.SIGKILL)
    killed_at = time.time()
    assert main_pid not in killed and killed  # the orphans
    _wait(lambda: not cluster.members("worker-gpu"), 10, "no process of the gpu worker left")
    time.sleep(1)
    finished = {p: p.stat().st_mtime for p in _shard_page_files(work, "run2", shard) if p.exists()}
    assert 1 <= len(finished) < SHARD_PAGES
    cluster.restart_worker("gpu")
    _wait_run(cluster, meta, "run2", 240)

    tis = _task_instances(meta, "run2")
    (retried,) = [t for t in tis if t["task_id"] == "ocr" and t["map_index"] == shard]
    assert retried["try_number"] >= 2 and retried["hostname"] == GPU_HOST
    stats = json.loads((work / "runs" / "run2" / "stats" / f"{shard:05d}.json").read_text())
    # the retry OCR'd only the pages the killed try had not finished, and left the others untouched
    assert stats["pages"] == SHARD_PAGES
    assert stats["pages_ocr"] == SHARD_PAGES - len(finished)
    assert {p: p.stat().st_mtime for p in finished} == finished
    assert all(m < killed_at for m in finished.values())
    for t in tis:
        assert t["hostname"] == (GPU_HOST if t["task_id"] == "ocr" else DEFAULT_HOST), t
    _check_warehouse()

    # -- 3. a further rerun changes nothing ------------------------------------------------------
    before = table_digest(WAREHOUSE, "records_")
    _trigger(cluster, "run3")
    _wait_run(cluster, meta, "run3", 120)
    assert table_digest(WAREHOUSE, "records_") == before
    meta.dispose()


def test_stop_never_signals_a_pid_the_system_gave_to_another_program(tmp_path: Path) -> None:
    """A stale PID file (the cluster died, a reboot) names PIDs now used by other programs: stop
    and kill leave them alone (each PID is recorded with its start time, and only processes of the
    recorded session are signalled, and none when another process holds the leader's PID); its own
    processes are stopped, a child orphaned by its leader's death included."""
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    # ours: a session leader whose child outlives it (as a task process outlives its worker)
    ours = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
    try:
        cluster = Cluster(ClusterConfig(home=tmp_path))
        # as a cluster started long ago would have recorded it: same PID, another start time
        cluster.cfg.pid_file.write_text(json.dumps({"scheduler": [stranger.pid, 1.0]}))
        assert cluster.pids() == {}
        assert cluster.kill("scheduler") == []
        cluster.stop(timeout=1)
        assert stranger.poll() is None  # still running
        # the process it did start is recorded with its start time, and is stopped
        cluster._record("scheduler", ours.pid)
        assert cluster.pids() == {"scheduler": ours.pid}
        _wait(lambda: len(cluster.members("scheduler")) == 2, 10, "the leader's child started")
        child = next(p for p in cluster.members("scheduler") if p.pid != ours.pid)
        os.kill(ours.pid, signal.SIGKILL)  # the leader dies, its child lives on, reparented
        ours.wait(timeout=10)
        assert [p.pid for p in cluster.members("scheduler")] == [child.pid]
        cluster.stop(timeout=5)
        _wait(lambda: not child.is_running() or child.status() == "zombie", 10, "the orphan stopped")
        assert stranger.poll() is None
    finally:
        for p in (stranger, ours):
            p.kill()
            p.wait()
