"""The fidelity metrics against hand-worked answers."""

from __future__ import annotations

import pytest

from airflow_provider_deepocr.testing import truth


def test_normalise_keeps_numbers_and_drops_sentence_punctuation() -> None:
    assert truth.normalise("Total: 1,234.50 USD.") == "total 1,234.50 usd"
    assert truth.normalise("ＡＢＣ  (net)") == "abc net"


def test_word_f1_is_bag_of_words() -> None:
    assert truth.word_f1("b a", "a b") == 1.0
    assert truth.word_f1("a b c d", "a b") == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert truth.word_f1("", "a") == 0.0
    assert truth.word_recall("a", "a b") == 0.5


def test_order_similarity_sees_interleaved_columns() -> None:
    left, right = "one two three four", "five six seven eight"
    good = f"{left} {right}"
    interleaved = "one five two six three seven four eight"
    assert truth.order_similarity(good, good) == 1.0
    assert truth.order_similarity(interleaved, good) < 0.7
    assert truth.word_f1(interleaved, good) == 1.0


def test_cells_compared_at_their_position() -> None:
    want = [["Item", "2024"], ["Cash", "1,200"]]
    assert truth.cell_accuracy([want], [want]) == 1.0
    shifted = [["", "Item", "2024"], ["", "Cash", "1,200"]]
    assert truth.cell_accuracy([shifted], [want]) == 0.0
    assert truth.cell_accuracy([[["item", "2024"], ["cash", "1,000"]]], [want]) == 0.75
    assert truth.tables_found([], [want]) == 0
    assert truth.tables_found([shifted, want], [want]) == 1
