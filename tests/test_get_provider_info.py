from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

from airflow_provider_deepocr.get_provider_info import get_provider_info


def test_provider_info_names_importable_modules_and_the_connection_type() -> None:
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-deepocr"
    modules = [
        m for section in ("hooks", "operators") for entry in info[section] for m in entry["python-modules"]
    ]
    for module in modules:
        importlib.import_module(module)
    (conn,) = info["connection-types"]
    assert conn["connection-type"] == "deepseek_ocr"
    module, _, cls = conn["hook-class-name"].rpartition(".")
    hook = getattr(importlib.import_module(module), cls)
    assert hook.conn_type == "deepseek_ocr"


def test_airflow_providers_list_shows_the_provider(tmp_path: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    airflow = Path(sys.executable).with_name("airflow")
    out = subprocess.run(
        [str(airflow), "providers", "list", "-o", "plain"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert "airflow-provider-deepocr" in out
