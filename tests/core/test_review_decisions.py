"""Review decisions against the warehouse (issue 20 mutants): a rejection removes a loaded document
whole and keeps it out, an approval holds for its own configuration only, and approving a loaded
document leaves its rows alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.pipeline import run_pipeline
from airflow_provider_deepocr.core.review import decide
from airflow_provider_deepocr.core.warehouse import Warehouse
from tests.core.test_no_page_lost import Scripted, _tiff, _work
from tests.digest import table_digest


class Truncating(Scripted):
    """Scripted pages that stop at the token limit (flagged ``truncated``: in the review queue)."""

    def ocr(self, pages, temperature=0.0):  # type: ignore[no-untyped-def]
        out = super().ocr(pages, temperature)
        for r in out:
            r.finish_reason = "length"
        return out


def _rows_of(wh: Warehouse, doc_id: str) -> dict[str, int]:
    names = ("documents", "pages", "blocks", "load_ledger")
    with wh.engine.connect() as conn:
        return {
            n: conn.execute(
                sa.text(f"select count(*) from deepocr_{n} where doc_id = :d"), {"d": doc_id}
            ).scalar_one()
            for n in names
        }


@pytest.fixture()
def loaded(tmp_path: Path) -> tuple[Path, Warehouse, object, str]:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "fax.tiff").write_bytes(_tiff(2))
    wh = Warehouse(f"sqlite:///{tmp_path / 'wh.db'}")
    work = _work(tmp_path)
    run_pipeline(str(inbox), wh, Truncating(), work, on_validation_failure="warn")
    with wh.engine.connect() as conn:
        doc_id = conn.execute(sa.text("select doc_id from deepocr_documents")).scalar_one()
    return inbox, wh, work, doc_id


def test_a_rejection_removes_the_loaded_document_and_keeps_it_out(loaded: tuple) -> None:  # type: ignore[type-arg]
    inbox, wh, work, doc_id = loaded
    assert _rows_of(wh, doc_id) == {"documents": 1, "pages": 2, "blocks": 2, "load_ledger": 1}
    decide(wh, work, doc_id, "reject", "alice")
    gone = {"documents": 0, "pages": 0, "blocks": 0, "load_ledger": 0}
    assert _rows_of(wh, doc_id) == gone
    for skip in (True, False):  # later runs keep it out, with and without the incremental listing
        run_pipeline(str(inbox), wh, Truncating(), work, on_validation_failure="warn", skip_unchanged=skip)
        assert _rows_of(wh, doc_id) == gone
    with wh.engine.connect() as conn:
        reasons = (
            conn.execute(sa.text("select reason from deepocr_failures where page_no is null")).scalars().all()
        )
    assert reasons == [errors.REJECTED]


def test_approving_a_loaded_document_leaves_its_rows_untouched(loaded: tuple) -> None:  # type: ignore[type-arg]
    _, wh, work, doc_id = loaded
    before = table_digest(wh.engine).hashes
    decide(wh, work, doc_id, "approve", "alice")
    after = table_digest(wh.engine).hashes
    before.pop("reviews"), after.pop("reviews")
    assert after == before  # loaded_at and run_id included: nothing was rewritten


def test_an_approval_holds_for_its_own_configuration_only(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "fax.tiff").write_bytes(_tiff(2))
    wh = Warehouse(f"sqlite:///{tmp_path / 'wh.db'}")
    work = _work(tmp_path)
    run_pipeline(str(inbox), wh, Truncating(), work)  # quarantined: truncated pages
    with wh.engine.connect() as conn:
        doc_id = conn.execute(sa.text("select doc_id from deepocr_failures")).scalar_one()
    decide(wh, work, doc_id, "approve", "alice")
    assert _rows_of(wh, doc_id)["documents"] == 1
    other = Truncating()
    other.model = "scripted-2"  # another configuration, whose output fails validation too
    run_pipeline(str(inbox), wh, other, work)
    assert _rows_of(wh, doc_id)["documents"] == 0  # quarantined again: the approval was for the first
