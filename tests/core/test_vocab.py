"""The vocabularies: string enums that are still their strings, one source for the README's lists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.vocab import PageFlag, Stage, Status, readme_section

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_lists_are_the_enums() -> None:
    text = README.read_text()
    found = re.search(r"<!-- vocab:start -->\n(.*?)\n<!-- vocab:end -->", text, re.S)
    assert found is not None
    assert found.group(1) == readme_section()
    assert "`incomplete_document`" in found.group(1) and "`first_frame_only`" in found.group(1)


def test_a_member_is_its_string_in_json_and_text() -> None:
    assert (
        json.dumps({errors.CORRUPT: [Stage.RENDER, PageFlag.DOWNSCALED]})
        == '{"corrupt": ["render", "downscaled"]}'
    )
    assert f"{Status.QUARANTINED}" == "quarantined" and Status("warned") is Status.WARNED
    assert {errors.Reason.CORRUPT: 1} == {"corrupt": 1}


def test_a_misspelt_word_is_an_error() -> None:
    with pytest.raises(AttributeError):
        _ = Stage.RENDR  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        Status("quarantine")


def test_every_reason_constant_is_a_reason_member() -> None:
    constants = {k: v for k, v in vars(errors).items() if k.isupper() and isinstance(v, str)}
    assert constants == {m.name: m for m in errors.Reason}
