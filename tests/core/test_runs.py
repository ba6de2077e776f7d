"""Run accounting to the value: the cost of a shard and the ``deepocr_runs`` row it writes."""

from __future__ import annotations

import json

import pytest

from airflow_provider_deepocr.core.runs import OcrStats, run_row


def test_cost_is_engine_plus_model_load_hours_at_the_hourly_price() -> None:
    # half an hour of the engine and half an hour of loading the model, at 2.0 an hour: 2.0
    stats = OcrStats(shard="00000", engine_seconds=1800.0, model_load_seconds=1800.0, gpu_hour_cost=2.0)
    assert stats.cost == pytest.approx(2.0, abs=1e-9)
    # the two parts, each alone: the load is counted, and seconds are hours / 3600 (not minutes)
    assert OcrStats(shard="a", engine_seconds=90.0, gpu_hour_cost=4.0).cost == pytest.approx(0.1, abs=1e-9)
    assert OcrStats(shard="b", model_load_seconds=36.0, gpu_hour_cost=10.0).cost == pytest.approx(
        0.1, abs=1e-9
    )
    # wall time (reading, rendering, writing) is not engine time
    assert OcrStats(
        shard="c", engine_seconds=360.0, wall_seconds=7200.0, gpu_hour_cost=1.0
    ).cost == pytest.approx(0.1, abs=1e-9)
    assert OcrStats(shard="d", engine_seconds=1800.0).cost is None  # no price, no cost


def test_runs_row_carries_the_cost_and_the_figures_it_is_made_of() -> None:
    stats = OcrStats(
        shard="00003",
        task_id="ocr",
        started_at="2026-01-02T03:04:05+00:00",
        pages=40,
        pages_ocr=38,
        engine="deepseek-ocr",
        model_load_seconds=12.5,
        engine_seconds=707.5,
        output_tokens=51_000,
        gpu_hour_cost=3.0,
    )
    row = run_row(
        stats,
        run_id="r1",
        dag_id="d",
        shard="00003",
        documents=7,
        pages=40,
        failed={"corrupt": 2},
        started_at="",
    )
    assert row["cost"] == pytest.approx(0.6, abs=1e-9)  # (707.5 + 12.5) s = 0.2 h, at 3.0 an hour
    assert (row["engine_seconds"], row["model_load_seconds"], row["gpu_hour_cost"]) == (707.5, 12.5, 3.0)
    assert row["cost"] == pytest.approx(
        (row["engine_seconds"] + row["model_load_seconds"]) / 3600 * row["gpu_hour_cost"], abs=1e-9
    )
    assert json.loads(row["failed"]) == {"corrupt": 2} and row["pages_ocr"] == 38
