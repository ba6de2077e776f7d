"""The `deepocr` command end to end on real files: good documents load, bad ones are failure rows."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_provider_deepocr.cli import main
from tests.digest import table_digest


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], list[Path]]:
    """Sample documents in subfolders plus every kind of bad input, in one tree."""
    from airflow_provider_deepocr.testing.samples import write_bad_inputs, write_samples

    root = tmp_path_factory.mktemp("inbox")
    good = write_samples(root / "good")
    bad = write_bad_inputs(root / "bad" / "nested")
    return root, bad, good


def _tables(db: Path) -> dict[str, str]:
    """Content hash of every table (rows ordered by key), but the runs table (an audit log: one row
    per run). A rerun reads the bad files again and records their failures again, the same rows
    but for the run that recorded them and when."""
    hashes = table_digest(f"sqlite:///{db}", skip=("failures.run_id", "failures.recorded_at")).hashes
    hashes.pop("runs")
    return hashes


def _run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def test_run_rapidocr_loads_good_pages_records_bad_files_and_is_idempotent(
    mixed_folder: tuple[Path, dict[str, str], list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, bad, good = mixed_folder
    db = tmp_path / "x.db"
    argv = ["run", str(root), "--warehouse", f"sqlite:///{db}", "--engine", "rapidocr", "--json"]
    argv += ["--work-dir", str(tmp_path / "work")]
    summary = _run_json(capsys, argv)
    assert summary["documents"] == len(good) + len(bad)
    assert summary["engine"] == "rapidocr"
    assert sum(summary["failed"].values()) >= len(bad)
    for reason in set(bad.values()):
        assert summary["failed"].get(reason, 0) >= 1, (reason, summary["failed"])

    with sqlite3.connect(db) as conn:
        loaded = {r[0] for r in conn.execute("select source_uri from deepocr_documents")}
        failed = dict(conn.execute("select source_uri, reason from deepocr_failures where page_no is null"))
        text = " ".join(r[0] for r in conn.execute("select text from deepocr_blocks"))
        engines = {r[0] for r in conn.execute("select distinct engine from deepocr_pages")}
    assert {Path(u.removeprefix("file://")).name for u in loaded} == {p.name for p in good}
    assert {Path(u.removeprefix("file://")).name: r for u, r in failed.items()} == bad
    assert engines == {"rapidocr"}
    assert "Balance Sheet" in text  # real text read off the born-digital statement
    assert summary["ok"] == summary["pages"] > 0

    before = _tables(db)
    again = _run_json(capsys, argv)
    assert _tables(db) == before
    assert again["failed"] == summary["failed"]
    # the rerun listed the loaded files and skipped them unread; each run left its runs row
    assert again["skipped_documents"] == len(good) and again["loaded_documents"] == 0
    with sqlite3.connect(db) as conn:
        runs = {
            r[0]: r[1:] for r in conn.execute("select run_id, documents, pages, engine from deepocr_runs")
        }
    assert runs[summary["run_id"]] == (len(good) + len(bad), summary["ok"], "rapidocr")
    assert runs[again["run_id"]][0] == len(bad)  # only the bad files were read again

    # a fresh work area (nothing cached) still leaves every table as it was
    shutil.rmtree(tmp_path / "work")
    _run_json(capsys, argv)
    assert _tables(db) == before
    # and so does a rerun that reads every file again: the loader finds each document in its ledger
    again = _run_json(capsys, [*argv, "--no-skip-unchanged"])
    assert _tables(db) == before
    assert again["skipped_documents"] == len(good) and again["loaded_documents"] == 0


def test_run_deepseek_tiny_model_accounts_for_every_document(
    mixed_folder: tuple[Path, dict[str, str], list[Path]],
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, bad, good = mixed_folder
    db = tmp_path / "tiny.db"
    # random weights never stop before the token limit: every page is flagged truncated, which the
    # default suite quarantines; warn loads them, so DeepSeek's own rows reach the tables
    argv = ["run", str(root / "good"), "--warehouse", f"sqlite:///{db}", "--engine", "deepseek"]
    argv += ["--model", str(tiny_model_dir), "--max-new-tokens", "16", "--batch-size", "auto"]
    argv += ["--on-validation-failure", "warn", "--work-dir", str(tmp_path / "work"), "--json"]
    summary = _run_json(capsys, argv)
    assert summary["engine"] == "deepseek-ocr2"
    with sqlite3.connect(db) as conn:
        loaded = {r[0] for r in conn.execute("select source_uri from deepocr_documents")}
        failed = {r[0] for r in conn.execute("select source_uri from deepocr_failures where page_no is null")}
        engines = dict(conn.execute("select engine, count(*) from deepocr_pages group by engine").fetchall())
        models = {
            r[0]
            for r in conn.execute("select distinct model from deepocr_pages where engine = 'deepseek-ocr2'")
        }
    # each document is loaded or recorded with a reason
    assert {Path(u.removeprefix("file://")).name for u in loaded | failed} == {p.name for p in good}
    # the pages DeepSeek read are in the tables, under the tiny checkpoint's path
    assert engines.get("deepseek-ocr2", 0) > 0, engines
    assert models == {str(tiny_model_dir)}
    assert summary["loaded_documents"] == len(loaded) > 0
    # a rerun that reads every file again (its OCR cached in the work area) changes no row
    before = _tables(db)
    again = _run_json(capsys, [*argv, "--no-skip-unchanged"])
    assert _tables(db) == before
    assert again["loaded_documents"] == 0


def test_unreachable_warehouse_exits_non_zero(tmp_path: Path) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/nowhere"
    assert main(["run", str(tmp_path), "--warehouse", url, "--engine", "rapidocr"]) == 3


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", str(tmp_path), "--warehouse", "sqlite://", "--dpi", "-3"])
    assert exc.value.code == 2


def test_bad_batch_size_exits_2_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", str(tmp_path), "--warehouse", "sqlite://", "--batch-size", "lots"])
    assert exc.value.code == 2
    assert "batch_size must be an integer >= 1 or 'auto'" in capsys.readouterr().err


def test_parse_json_on_every_shared_fixture(raw_fixture_files: list[Path]) -> None:
    exe = Path(sys.executable).with_name("deepocr")
    for path in raw_fixture_files:
        proc = subprocess.run(
            [str(exe), "parse", str(path), "--json"], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["pages"] and doc["pages"][0]["blocks"], path.name
        for block in doc["pages"][0]["blocks"]:
            assert set(block) >= {"index", "label", "kind", "bbox", "text", "flags"}


def test_show_runs_prints_each_shard_row_and_the_cost_per_document_and_1000_pages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow_provider_deepocr.core.engines import get_engine
    from airflow_provider_deepocr.core.pipeline import run_pipeline
    from airflow_provider_deepocr.core.sources import WorkArea
    from airflow_provider_deepocr.core.warehouse import Warehouse
    from airflow_provider_deepocr.testing.samples import write_samples

    write_samples(tmp_path / "docs")
    url = f"sqlite:///{tmp_path / 'x.db'}"
    engine = get_engine("sleep", seconds_per_page=0.05)
    summary = run_pipeline(
        str(tmp_path / "docs"),
        Warehouse(url),
        engine,
        WorkArea(str(tmp_path / "w")),
        gpu_hour_cost=3.6,
        model_load_seconds=2.0,
    )
    capsys.readouterr()
    assert main(["show", "--warehouse", url, "--runs"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["run_id", "dag_id", "shard", "documents"]
    row = out[1].split()
    assert row[:5] == [summary.run_id, "cli", "all", str(summary.documents), str(summary.ok)]
    assert row[6:8] == ["sleep", "cpu"]
    # 3.6 an hour is 0.001 a second, over the engine's seconds and the model load's (2 s)
    stored = Warehouse(url).runs()[0]
    assert stored["engine_seconds"] >= 0.05 * stored["pages_ocr"] > 0  # the sleep engine's time
    expected = (stored["engine_seconds"] + 2.0) / 3600 * 3.6
    assert stored["cost"] == pytest.approx(expected, abs=1e-6) and stored["model_load_seconds"] == 2.0
    assert float(row[11]) == pytest.approx(expected, abs=1e-3)
    per_run = next(line for line in out if line.startswith(f"  {summary.run_id} (cli)"))
    assert "per document" in per_run and "per 1,000 pages" in per_run


# --------------------------------------------------------------------------------------------
# A run that cannot proceed: exit 3, one line naming what and why, no traceback, no model load


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without any AWS setting, plus ``extra``: no credentials file, no config
    file and no instance-metadata lookups, so nothing but ``extra`` can supply credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    return env | extra


def _cli(argv: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow_provider_deepocr.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# An engine that cannot be built: if any check came after the engine, the error would be this one.
NO_ENGINE = ["--engine", "deepseek", "--model", "/nonexistent/deepseek-weights"]


def _cannot_run(proc: subprocess.CompletedProcess[str]) -> str:
    """Exit 3 and exactly one line on stderr (returned), nothing on stdout, no traceback."""
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deepocr: "), proc.stderr
    assert proc.stdout == ""
    return lines[0]


def test_s3_without_credentials_exits_3_naming_bucket_and_cause(s3_endpoint: str, tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    argv = ["run", "s3://inbox/scans/", "--warehouse", f"sqlite:///{db}", "--s3-endpoint-url", s3_endpoint]
    line = _cannot_run(_cli(argv + NO_ENGINE, _clean_env()))
    assert line.startswith("deepocr: no_credentials: cannot list s3://inbox/scans/ via " + s3_endpoint)
    assert "no AWS credentials found" in line
    assert not db.exists()  # nothing was set up for a run that could not start


def test_s3_unreachable_endpoint_exits_3_naming_the_endpoint(closed_port: int, tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{closed_port}"
    argv = [
        "run",
        "s3://inbox/",
        "--warehouse",
        f"sqlite:///{tmp_path / 'x.db'}",
        "--s3-endpoint-url",
        endpoint,
    ]
    env = _clean_env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    line = _cannot_run(_cli(argv + NO_ENGINE, env))
    assert line == (
        f"deepocr: endpoint_unreachable: cannot list s3://inbox/ via {endpoint}: "
        "endpoint unreachable (EndpointConnectionError)"
    )


def test_s3_no_such_bucket_exits_3(s3_endpoint: str, tmp_path: Path) -> None:
    argv = ["run", "s3://no-such-bucket/in/", "--warehouse", f"sqlite:///{tmp_path / 'x.db'}"]
    env = _clean_env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    line = _cannot_run(_cli(argv + ["--s3-endpoint-url", s3_endpoint, *NO_ENGINE], env))
    assert line == (
        f"deepocr: no_such_bucket: cannot list s3://no-such-bucket/in/ via {s3_endpoint}: "
        "the bucket does not exist (NoSuchBucket, HTTP 404)"
    )


def test_s3_work_area_in_a_missing_bucket_exits_3(s3_endpoint: str, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    argv = ["run", str(tmp_path / "in"), "--warehouse", f"sqlite:///{tmp_path / 'x.db'}"]
    argv += ["--work-dir", "s3://no-work-bucket/w", "--s3-endpoint-url", s3_endpoint, *NO_ENGINE]
    env = _clean_env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    line = _cannot_run(_cli(argv, env))
    assert line.startswith("deepocr: no_such_bucket: cannot list s3://no-work-bucket/w via ")


def test_s3_access_denied_and_wrong_credentials_exit_3(
    s3_auth_endpoint: dict[str, str], tmp_path: Path
) -> None:
    endpoint, bucket = s3_auth_endpoint["endpoint"], s3_auth_endpoint["bucket"]
    argv = ["run", f"s3://{bucket}/in/", "--warehouse", f"sqlite:///{tmp_path / 'x.db'}"]
    argv += ["--s3-endpoint-url", endpoint, *NO_ENGINE]
    denied = _clean_env(
        AWS_ACCESS_KEY_ID=s3_auth_endpoint["denied_key"],
        AWS_SECRET_ACCESS_KEY=s3_auth_endpoint["denied_secret"],
    )
    assert _cannot_run(_cli(argv, denied)) == (
        f"deepocr: access_denied: cannot list s3://{bucket}/in/ via {endpoint}: "
        "access denied (AccessDenied, HTTP 403)"
    )
    wrong = _clean_env(AWS_ACCESS_KEY_ID="AKIAWRONGWRONGWRONG1", AWS_SECRET_ACCESS_KEY="not-the-secret")
    line = _cannot_run(_cli(argv, wrong))
    assert line == (
        f"deepocr: bad_credentials: cannot list s3://{bucket}/in/ via {endpoint}: "
        "the credentials were rejected (InvalidAccessKeyId, HTTP 403)"
    )
    assert "not-the-secret" not in line


def test_s3_throttled_after_retries_exits_3(slowdown_endpoint: dict[str, object], tmp_path: Path) -> None:
    endpoint = str(slowdown_endpoint["endpoint"])
    argv = ["run", "s3://busy/in/", "--warehouse", f"sqlite:///{tmp_path / 'x.db'}"]
    argv += ["--s3-endpoint-url", endpoint, *NO_ENGINE]
    env = _clean_env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_MAX_ATTEMPTS="3")
    line = _cannot_run(_cli(argv, env))
    assert line == (
        f"deepocr: throttled: cannot list s3://busy/in/ via {endpoint}: "
        "throttled by the server, still after 3 attempts (SlowDown, HTTP 503)"
    )
    requests = slowdown_endpoint["requests"]
    assert isinstance(requests, list) and len(requests) == 3  # the client's own retries happened


def test_missing_source_and_unreachable_warehouse_are_reported_before_any_engine(tmp_path: Path) -> None:
    env = _clean_env()
    missing = tmp_path / "no-such-folder"
    line = _cannot_run(
        _cli(["run", str(missing), "--warehouse", f"sqlite:///{tmp_path / 'x.db'}", *NO_ENGINE], env)
    )
    assert line == f"deepocr: config_error: source path does not exist: {missing}"
    (tmp_path / "in").mkdir()
    url = "postgresql+psycopg://nobody:secret@127.0.0.1:1/nowhere"
    line = _cannot_run(_cli(["run", str(tmp_path / "in"), "--warehouse", url, *NO_ENGINE], env))
    # the warehouse's own message is being reworded elsewhere (issue 12, item 2): only its order here
    assert not line.startswith("deepocr: engine_unavailable") and "secret" not in line
    # and with every check passing, the engine is what fails: the checks above did run first
    line = _cannot_run(
        _cli(["run", str(tmp_path / "in"), "--warehouse", f"sqlite:///{tmp_path / 'x.db'}", *NO_ENGINE], env)
    )
    assert line.startswith("deepocr: engine_unavailable: ")


# --------------------------------------------------------------------------------------------
# Oversize pages and more image types load, flagged, with the DPI used on the page row


def _image_bytes(fmt: str, size: tuple[int, int], **kw: object) -> bytes:
    import io

    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", size, "white")
    font = ImageFont.load_default(size=max(24, size[1] // 12))
    ImageDraw.Draw(img).text((size[0] // 10, size[1] // 3), "TOTAL 42.00", fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_oversize_pages_and_new_image_types_load_flagged(tmp_path: Path) -> None:
    import io

    import pymupdf
    from PIL import Image, features

    from airflow_provider_deepocr.testing.samples import heic_header

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    pdf = pymupdf.open()
    page = pdf.new_page(width=14_400, height=14_400)  # a 200 x 200-inch drawing
    page.insert_text((1_000, 3_000), "SITE PLAN 42", fontsize=900)
    (inbox / "drawing.pdf").write_bytes(pdf.tobytes())
    (inbox / "scan.webp").write_bytes(_image_bytes("WEBP", (4000, 3000), lossless=True))  # 12 M px
    (inbox / "form.bmp").write_bytes(_image_bytes("BMP", (800, 600)))
    frames = [
        Image.open(io.BytesIO(_image_bytes("PNG", (640, 200)))).convert("RGB"),
        Image.new("RGB", (640, 200)),
    ]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    (inbox / "banner.gif").write_bytes(buf.getvalue())
    jp2 = features.check("jpg_2000")
    if jp2:
        (inbox / "archive.jp2").write_bytes(_image_bytes("JPEG2000", (800, 600)))
    (inbox / "photo.heic").write_bytes(heic_header())

    db = tmp_path / "x.db"
    argv = ["run", str(inbox), "--warehouse", f"sqlite:///{db}", "--engine", "rapidocr", "--json"]
    argv += [
        "--work-dir",
        str(tmp_path / "work"),
        "--max-pixels",
        "8000000",
        "--on-validation-failure",
        "warn",
    ]
    proc = _cli(argv, dict(os.environ), timeout=600)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["failed"] == {"unsupported_type": 1}
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select source_uri, dpi, width, height, flags from deepocr_pages").fetchall()
        failure = conn.execute("select source_uri, reason, detail from deepocr_failures").fetchall()
    pages = {
        Path(uri).name: (dpi, w, h, set(filter(None, (flags or "").split(","))))
        for uri, dpi, w, h, flags in rows
    }
    assert set(pages) == {"drawing.pdf", "scan.webp", "form.bmp", "banner.gif"} | (
        {"archive.jp2"} if jp2 else set()
    )
    dpi, w, h, flags = pages["drawing.pdf"]
    assert "downscaled" in flags and dpi == 14 and w * h <= 8_000_000  # 72 * sqrt(8e6) / 14,400 = 14.1
    dpi, w, h, flags = pages["scan.webp"]
    assert "downscaled" in flags and w * h <= 8_000_000 and dpi == round(144 * w / 4000)
    assert "first_frame_only" in pages["banner.gif"][3]
    assert pages["form.bmp"][3].isdisjoint({"downscaled", "first_frame_only"})
    ((uri, reason, detail),) = failure
    assert Path(uri).name == "photo.heic" and reason == "unsupported_type" and "HEIC" in detail


@pytest.mark.parametrize("case", ["refused", "wrong_password", "no_database", "no_privilege"])
def test_a_warehouse_that_cannot_be_used_exits_3_before_any_engine_loads(
    case: str, closed_port: int, pg_password_server: dict[str, str], pg_server_url: str, tmp_path: Path
) -> None:
    from airflow_provider_deepocr.testing.samples import write_samples

    port = pg_password_server["port"]
    url, expected = {
        "refused": (
            f"postgresql+psycopg://loader:hunter2@127.0.0.1:{closed_port}/x",
            f"warehouse_unreachable: cannot connect to warehouse postgresql+psycopg://loader:***@127.0.0.1:"
            f"{closed_port}/x (connection refused)",
        ),
        "wrong_password": (
            f"postgresql+psycopg://reader:hunter2@127.0.0.1:{port}/postgres",
            f"warehouse_auth_failed: cannot connect to warehouse postgresql+psycopg://reader:***@127.0.0.1:"
            f"{port}/postgres (wrong password or no such user)",
        ),
        "no_database": (
            pg_server_url.rsplit("/", 1)[0] + "/deepocr_no_such_database",
            "warehouse_no_database: cannot connect to warehouse ",
        ),
        "no_privilege": (
            pg_password_server["reader"],
            "warehouse_permission_denied: no privilege in schema locked of warehouse "
            f"postgresql+psycopg://reader:***@127.0.0.1:{port}/postgres (permission denied for ",
        ),
    }[case]
    write_samples(tmp_path / "docs")
    argv = ["run", str(tmp_path / "docs"), "--warehouse", url, "--work-dir", str(tmp_path / "w")]
    if case == "no_privilege":
        argv += ["--schema", "locked"]
    line = _cannot_run(_cli(argv + NO_ENGINE, dict(os.environ)))
    assert line.startswith(f"deepocr: {expected}"), line
    assert "hunter2" not in line and "reader-secret" not in line
    show = _cli(["show", "--warehouse", url], dict(os.environ))
    assert show.returncode == 3 and "Traceback" not in show.stderr and "hunter2" not in show.stderr


def test_deepseek_without_weights_or_network_exits_3_in_seconds(tmp_path: Path, closed_port: int) -> None:
    from airflow_provider_deepocr.testing.samples import write_samples

    write_samples(tmp_path / "docs")
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{closed_port}", "HF_HOME": str(tmp_path / "hf")}
    exe = Path(sys.executable).with_name("deepocr")
    cmd = [str(exe), "run", str(tmp_path / "docs"), "--warehouse", f"sqlite:///{tmp_path / 'wh.db'}"]
    cmd += ["--work-dir", str(tmp_path / "work"), "--engine", "deepseek"]
    cmd += ["--model", "deepseek-community/DeepSeek-OCR-2"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert elapsed < 30
    assert "hub is unreachable" in proc.stderr and "Traceback" not in proc.stderr
    print(f"exit {proc.returncode} after {elapsed:.1f}s: {proc.stderr.strip().splitlines()[-1]}")


def test_show_never_creates_a_warehouse_and_names_url_mistakes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nothing-here.db"
    assert main(["show", "--warehouse", f"sqlite:///{missing}"]) == 3
    assert "does not exist" in capsys.readouterr().err and not missing.exists()
    assert main(["show", "--warehouse", "warehouse.db"]) == 3
    assert "write sqlite:///warehouse.db" in capsys.readouterr().err
    assert main(["show", "--warehouse", "postgres://u@127.0.0.1/x"]) == 3
    assert "postgresql+psycopg://" in capsys.readouterr().err
