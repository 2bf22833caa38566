from __future__ import annotations

from pathlib import Path

import pytest

from models.data import (
    DATA_DIR,
    TOPIC_LABELS,
    DataError,
    data_hashes,
    dedup_against,
    labels_for,
    load_split,
    model_text,
    normalise_for_dedup,
    parse_label,
    read_labelled_csv,
)


def test_topic_labels_match_vendored_labels_file() -> None:
    names = [line.strip() for line in (DATA_DIR / "topic" / "labels.txt").read_text().splitlines() if line.strip()]
    assert tuple(names) == TOPIC_LABELS
    assert len(TOPIC_LABELS) == 20


def test_attribution_travels_with_the_data() -> None:
    text = (DATA_DIR / "LICENSE").read_text()
    assert "MIT" in text and "zeroshot/twitter-financial-news-sentiment" in text and "-topic" in text


@pytest.mark.parametrize(
    ("task", "raw", "expected"),
    [
        ("sentiment", "0", "negative"),  # Bearish
        ("sentiment", "1", "positive"),  # Bullish
        ("sentiment", 2, "neutral"),
        ("sentiment", "Positive", "positive"),
        ("sentiment", "bearish", "negative"),
        ("topic", "5", "Earnings"),
        ("topic", "fed | central banks", "Fed | Central Banks"),
    ],
)
def test_parse_label(task, raw, expected) -> None:
    assert labels_for(task)[parse_label(task, raw)] == expected


@pytest.mark.parametrize(
    ("task", "raw"), [("sentiment", "3"), ("sentiment", "great"), ("topic", "20"), ("topic", "-1")]
)
def test_parse_label_rejects_unknown(task, raw) -> None:
    with pytest.raises(ValueError, match="unknown"):
        parse_label(task, raw)


def test_vendored_files_parse_with_multiline_texts() -> None:
    train = load_split("sentiment", "train")
    assert len(train) == 9543
    assert any("\n" in e.text for e in train)
    assert len(load_split("sentiment", "valid")) == 2388
    assert len(load_split("topic", "train")) == 16990
    assert len(load_split("topic", "valid")) == 4117


def test_dedup_counts_match_the_dataset_readme() -> None:
    for task, near_copies in (("sentiment", 38), ("topic", 676)):
        valid = load_split(task, "valid")
        assert len(valid) - len(dedup_against(valid, load_split(task, "train"))) == near_copies


def test_normalise_strips_urls() -> None:
    assert normalise_for_dedup("$AAPL up https://t.co/abc ") == normalise_for_dedup("$aapl UP https://t.co/xyz")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Apple &amp; Google beat  estimates https://t.co/XKcPDilIuU", "Apple & Google beat estimates http"),
        ("$TSLA falls\n\t8% http://x.co/a?b=1 and https://y.com/z", "$TSLA falls 8% http and http"),
        ("   ", " "),
        ("", " "),
    ],
)
def test_model_text_reduces_links_and_entities(raw: str, expected: str) -> None:
    assert model_text(raw) == expected


def test_model_text_shortens_the_topic_set_by_a_third() -> None:
    """The point of model_text: fewer word-pieces per tweet (44 -> 27 on average for the topic set)."""
    from transformers import AutoTokenizer

    from models.network import base_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(base_model_path()))
    texts = [r.text for r in load_split("topic", "valid")]
    before = sum(map(len, tokenizer(texts)["input_ids"]))
    after = sum(map(len, tokenizer([model_text(t) for t in texts])["input_ids"]))
    assert after < 0.7 * before


def test_read_csv_errors_name_the_row(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text('text,label\n"ok one",positive\n"multi\nline",nope\n')
    with pytest.raises(DataError, match=r"row 3: unknown sentiment label 'nope'"):
        read_labelled_csv(bad, "sentiment")
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("body,label\nx,1\n")
    with pytest.raises(DataError, match="missing column"):
        read_labelled_csv(nocol, "sentiment")


def test_data_hashes_cover_all_files() -> None:
    hashes = data_hashes()
    assert len(hashes) == 6 and all(len(h) == 64 for h in hashes.values())
