"""An Airflow home with a migrated metadata database, shared by the DAG tests of this session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for ``airflow`` subprocesses: a fresh ``AIRFLOW_HOME`` (``airflow db migrate``
    done) whose DAGs folder is this repository's ``dags/``."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, timeout=600, check=True)
    return env
