"""The synthetic samples: realistic, deterministic, and truthful about bad inputs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from airflow_provider_deepocr.core.records import Document, DocumentRef, PageImage
from airflow_provider_deepocr.core.render import detect_media_type, render_pages
from airflow_provider_deepocr.testing import samples


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_samples_are_deterministic_and_in_subfolders(tmp_path: Path) -> None:
    first = samples.write_samples(tmp_path / "a")
    samples.write_samples(tmp_path / "b")
    assert [p.relative_to(tmp_path / "a").as_posix() for p in first] == list(samples.SAMPLE_FILES)
    assert all("/" in name for name in samples.SAMPLE_FILES)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert len(set(_digests(tmp_path / "a").values())) == 4


def test_bad_inputs_are_deterministic(tmp_path: Path) -> None:
    a = samples.write_bad_inputs(tmp_path / "a")
    b = samples.write_bad_inputs(tmp_path / "b")
    assert a == b
    da, db = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert set(da) == set(a)
    # AES encryption draws a random IV, so only the encrypted file differs byte for byte.
    assert {k: v for k, v in da.items() if k != "encrypted.pdf"} == {
        k: v for k, v in db.items() if k != "encrypted.pdf"
    }
    assert (tmp_path / "a" / "empty.pdf").stat().st_size == 0


def test_balance_sheet_adds_up() -> None:
    bs = samples.balance_sheet()
    for year in (0, 1):
        assert bs["total_assets"][year] == bs["total_liabilities_and_equity"][year]
        assert (
            bs["total_assets"][year]
            == bs["total_current_assets"][year] + bs["total_non_current_assets"][year]
        )
        assert bs["total_equity"][year] == sum(r[1 + year] for r in bs["equity_rows"])
    totals = samples.receipt_totals()
    assert totals["total"] == pytest.approx(totals["subtotal"] + totals["tax"])


def test_samples_render_and_read_like_documents(tmp_path: Path) -> None:
    paths = samples.write_samples(tmp_path)
    kinds = [detect_media_type(p.read_bytes()) for p in paths]
    assert kinds == ["application/pdf", "application/pdf", "image/png", "image/tiff"]
    finance, clinic, receipt, fax = paths
    fin_doc = Document.from_bytes(DocumentRef(uri=str(finance)), finance.read_bytes())
    pages = list(render_pages(fin_doc, dpi=72, with_text_layer=True))
    text = pages[0].text_layer or ""
    assert isinstance(pages[0], PageImage)
    for needle in (samples.COMPANY, "Consolidated Balance Sheet", "TOTAL ASSETS", "2024", "2023"):
        assert needle in text
    scan_doc = Document.from_bytes(DocumentRef(uri=str(clinic)), clinic.read_bytes())
    (scan,) = render_pages(scan_doc, dpi=72, with_text_layer=True)
    assert isinstance(scan, PageImage) and scan.text_layer is None
    # scanned look: grey paper, not pure white, and some ink
    lo, hi = scan.image.convert("L").getextrema()
    assert hi < 255 and lo < 100


def test_cli_writes_samples_and_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert samples.main([str(tmp_path), "--bad"]) == 0
    out = capsys.readouterr().out
    assert "finance/consolidated_balance_sheet_2024.pdf" in out and '"corrupt"' in out
    assert (tmp_path / "bad" / "encrypted.pdf").is_file()
    assert (tmp_path / "receipts" / "receipt_0001.png").is_file()
