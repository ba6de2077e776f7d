"""A warehouse whose documents were all quarantined by a suite (the sleep engine on the sample
documents, SQLite), built once per session; each test gets its own copy of the database and work
area (the sources are shared, read only)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

# a suite every document fails: the sleep engine's text block on every page says "… at 200 dpi."
# (its title block does not), so one block per page fails
QUARANTINE_ALL = {
    "blocks": [
        {"type": "expect_column_values_to_not_match_regex", "kwargs": {"column": "text", "regex": "dpi"}}
    ]
}


@dataclass
class Quarantined:
    docs: Path
    db: Path
    work: Path
    run_id: str

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db}"


@pytest.fixture(scope="session")
def quarantined_once(tmp_path_factory: pytest.TempPathFactory) -> Quarantined:
    from airflow_provider_deepocr.core.engines.sleep import SleepEngine
    from airflow_provider_deepocr.core.pipeline import run_pipeline
    from airflow_provider_deepocr.core.sources import WorkArea
    from airflow_provider_deepocr.core.warehouse import Warehouse
    from airflow_provider_deepocr.testing.samples import write_samples

    root = tmp_path_factory.mktemp("review")
    write_samples(root / "docs")
    wh = Warehouse(f"sqlite:///{root / 'wh.db'}")
    summary = run_pipeline(
        str(root / "docs"), wh, SleepEngine(), WorkArea(str(root / "work")), suites=QUARANTINE_ALL
    )
    assert summary.loaded_documents == 0 and summary.failed == {"validation_failed": 4}
    wh.dispose()
    return Quarantined(root / "docs", root / "wh.db", root / "work", summary.run_id)


@pytest.fixture
def quarantined(quarantined_once: Quarantined, tmp_path: Path) -> Quarantined:
    db = tmp_path / "wh.db"
    shutil.copy(quarantined_once.db, db)
    shutil.copytree(quarantined_once.work, tmp_path / "work")
    return Quarantined(quarantined_once.docs, db, tmp_path / "work", quarantined_once.run_id)
