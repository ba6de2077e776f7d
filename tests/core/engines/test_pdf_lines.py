"""pdf_lines: words into lines and lines into blocks (issue 21, item 5: hyphens, CJK)."""

from __future__ import annotations

from airflow_provider_deepocr.core.engines.pdf_lines import join_lines, join_words, merge_lines


def test_hyphenated_line_ends_join_and_other_line_ends_stay() -> None:
    assert join_lines(["sed diam non-", "umy eir-", "mod tempor"]) == "sed diam nonumy eirmod tempor"
    assert join_lines(["in 2024 -", "Revenue"]) == "in 2024 -\nRevenue"  # not a word break
    assert join_lines(["the well-", "Known Brand"]) == "the well-\nKnown Brand"  # capital: not a break
    assert join_lines(["soft\u00adhy\u00ad", "phen"]) == "soft\u00adhyphen"


def test_cjk_characters_join_without_spaces() -> None:
    assert join_words(["本年度", "营业", "收入", "of", "EUR"]) == "本年度营业收入 of EUR"
    assert join_lines(["本年度营业", "收入增长"]) == "本年度营业收入增长"
    assert join_words(["한국", "어"]) == "한국어"


def test_merge_keeps_columns_sizes_and_rows_apart() -> None:
    def unit(box: list[int], text: str, label: str = "text", h: float = 10.0) -> dict[str, object]:
        return {"box": box, "text": text, "label": label, "h": h}

    units = [
        unit([100, 100, 400, 110], "Revenue grew in every"),
        unit([100, 111, 400, 121], "region this year."),
        unit([450, 111, 500, 121], "12.5"),  # same row, to the right: continues the line
        unit([100, 123, 400, 131], "Figure 1. Units", "figure_caption", h=8.0),
        unit([100, 132, 400, 142], "Body text again"),  # bigger type: not the caption's
        unit([520, 100, 900, 110], "Right column"),
    ]
    blocks = merge_lines(units, [0, 0, 0, 0, 0, 1])
    assert [(b["label"], b["text"]) for b in blocks] == [
        ("text", "Revenue grew in every\nregion this year. 12.5"),
        ("figure_caption", "Figure 1. Units"),
        ("text", "Body text again"),
        ("text", "Right column"),
    ]
    assert blocks[0]["bbox"] == [100, 100, 500, 121]
