"""Targets, their spans and word-piece masks, the entity JSONL format, the entity report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.data import DataError, Example
from models.entities import (
    EntityExample,
    Target,
    entity_report,
    find_spans,
    load_entity_jsonl,
    load_sentfin_entities,
    single_cashtag_examples,
    token_mask,
)

NEG, NEU, POS = 0, 1, 2


def test_find_spans_whole_words_case_insensitive_longest_first() -> None:
    text = "Globex beats GLOBEX Corp; globexian rivals; $GLBX up"
    assert find_spans(text, ["Globex"]) == [(0, 6), (13, 19)]
    assert find_spans(text, ["Globex", "GLOBEX Corp"]) == [(0, 6), (13, 24)]
    assert find_spans(text, ["$GLBX"]) == [(44, 49)]
    assert find_spans(text, ["", "  "]) == []


def test_token_mask_marks_overlapping_word_pieces_only() -> None:
    offsets = [(0, 0), (0, 3), (3, 6), (7, 12), (0, 0)]  # [CLS] glo ##bex beats [SEP]
    assert token_mask(offsets, [(0, 6)]) == [0, 1, 1, 0, 0]
    assert token_mask(offsets, [(7, 12)]) == [0, 0, 0, 1, 0]
    assert token_mask(offsets, []) == [0, 0, 0, 0, 0]


def test_sentfin_entities_split_by_headline_and_keep_conflicts() -> None:
    train, valid = load_sentfin_entities("train"), load_sentfin_entities("valid")
    assert not {e.text for e in train} & {e.text for e in valid}  # disjoint by headline
    assert 0.15 < len(valid) / (len(train) + len(valid)) < 0.25
    assert any(e.disagree for e in valid) and any(len(e.targets) > 1 for e in train)


def test_single_cashtag_rows_become_entity_rows() -> None:
    rows = [Example("$AAPL beats estimates", POS), Example("$AAPL and $MSFT fall", NEG), Example("no tag", NEU)]
    out = single_cashtag_examples(rows)
    assert out == [EntityExample("$AAPL beats estimates", (Target("AAPL", ("$AAPL",), POS),))]


def test_entity_jsonl_reads_the_documented_format(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text(
        json.dumps(
            {
                "text": "Globex soars as rival Initech recalls its phone",
                "entities": [
                    {"ticker": "GLBX", "name": "Globex", "label": "positive"},
                    {"name": "Initech", "span": [22, 29], "label": "negative"},
                ],
            }
        )
        + "\n\n"
    )
    (row,) = load_entity_jsonl(path)
    assert [t.label for t in row.targets] == [POS, NEG] and row.disagree
    assert row.targets[1].spans == ((22, 29),) and "Globex" in row.targets[0].surfaces


def test_entity_jsonl_names_every_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"text": "ok", "entities": [{"name": "ok", "label": "neutral"}]}),
                "not json",
                json.dumps({"text": "x", "entities": [{"name": "x", "label": "bullish-ish"}]}),
                json.dumps({"text": "x", "entities": [{"name": "x", "span": [5, 99], "label": "neutral"}]}),
                json.dumps({"text": "x", "entities": []}),
            ]
        )
    )
    with pytest.raises(DataError) as err:
        load_entity_jsonl(path)
    msg = str(err.value)
    assert all(f"line {n}" in msg for n in (2, 3, 4, 5)) and "line 1:" not in msg
    (tmp_path / "latin.jsonl").write_bytes(b'{"text": "caf\xe9"}')
    with pytest.raises(DataError, match="latin.jsonl: not UTF-8"):
        load_entity_jsonl(tmp_path / "latin.jsonl")


def test_entity_report_against_hand_counts() -> None:
    rows = [
        EntityExample("a", (Target("A", ("A",), POS), Target("B", ("B",), NEG))),  # disagree, multi
        EntityExample("b", (Target("C", ("C",), NEU),)),
    ]
    # entity predictions: A right, B right, C wrong; the story says positive for text 1, neutral for 2
    report = entity_report(rows, [[POS, NEG], [POS]], [POS, NEU])
    assert report["all"]["n"] == 3 and report["all"]["accuracy"] == round(2 / 3, 4)
    assert report["all"]["baseline_story"]["accuracy"] == round(2 / 3, 4)  # A and C right, B wrong
    assert report["disagree"]["n"] == 2 and report["disagree"]["accuracy"] == 1.0
    assert report["disagree"]["baseline_story"]["accuracy"] == 0.5 and report["disagree"]["gain_pt"]["accuracy"] == 50.0
    assert report["multi"]["n"] == 2 and report["texts"] == 2
