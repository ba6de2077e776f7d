"""docker-compose.yml has the production shape (no Docker engine runs here: parse and check it)."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"


def test_compose_has_the_celery_topology_with_a_gpu_worker() -> None:
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    for name in (
        "postgres",
        "redis",
        "minio",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker-cpu",
        "airflow-worker-gpu",
    ):
        assert name in services, name
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis")
    assert "--queues default" in services["airflow-worker-cpu"]["command"]
    gpu = services["airflow-worker-gpu"]
    assert "--queues gpu" in gpu["command"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "[amazon,postgres,gpu" in gpu["build"]["dockerfile_inline"]
    assert env["DEEPOCR_SOURCE_URI"].startswith("s3://")


def _worker_args(command: list[str] | str) -> dict[str, str]:
    """``--queues``/``--concurrency`` of a ``celery worker`` command line."""
    words = command.split() if isinstance(command, str) else list(command)
    return {w: words[i + 1] for i, w in enumerate(words) if w in ("--queues", "--concurrency")}


def test_compose_agrees_with_make_cluster() -> None:
    """The same executor, settings, queues, concurrency, worker hostnames and GPU pool as
    ``make cluster`` (testing/cluster.py), read from both."""
    from airflow_provider_deepocr.testing.cluster import (
        SHARED_SETTINGS,
        TOPOLOGY,
        ClusterConfig,
        process_commands,
        worker_name,
    )

    services = yaml.safe_load(COMPOSE.read_text())["services"]
    airflow_services = [n for n, s in services.items() if n.startswith("airflow-")]
    for name in airflow_services:
        env = services[name]["environment"]
        for key, value in SHARED_SETTINGS.items():
            assert str(env.get(key)) == value, (name, key)
    cluster = process_commands(ClusterConfig())
    compose_workers = {"default": "airflow-worker-cpu", "gpu": "airflow-worker-gpu"}
    assert set(compose_workers) == set(TOPOLOGY["workers"])
    for worker, service in compose_workers.items():
        spec = services[service]
        cmd, env = cluster[f"worker-{worker}"]
        assert (
            _worker_args(spec["command"])
            == _worker_args(cmd[1:])
            == {
                "--queues": TOPOLOGY["workers"][worker]["queues"],
                "--concurrency": str(TOPOLOGY["workers"][worker]["concurrency"]),
            }
        )
        assert spec["environment"]["DEEPOCR_WORKER_HOSTNAME"] == env["DEEPOCR_WORKER_HOSTNAME"]
        assert env["DEEPOCR_WORKER_HOSTNAME"] == worker_name(worker) == spec["hostname"]
    init = " ".join(services["airflow-init"]["command"])
    for pool, slots in TOPOLOGY["pools"].items():
        assert f"airflow pools set {pool} {slots} " in init
    for name in airflow_services:  # the celery extra (celery<5.7) on every Airflow image
        build = services[name].get("build", {}).get("dockerfile_inline", "")
        assert ",celery]" in build, name
    serve = services["deepocr-serve"]  # the optional model server on the GPU node
    assert serve["profiles"] == ["serve"] and serve["entrypoint"] == ["deepocr"]
    assert serve["command"].startswith("serve ")
    assert serve["image"] == services["airflow-worker-gpu"]["image"]
