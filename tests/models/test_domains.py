"""The vendored news-domain sets: loading, label mapping, split, and the fixed validation sets."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from models.calibration import expected_calibration_error
from models.data import DATA_DIR, SENTIMENT_LABELS, data_hashes, normalise_for_dedup
from models.domains import (
    SET_INFO,
    load_semeval2017,
    load_sentfin,
    semeval_label,
    validation_sets,
)


def _names(rows) -> Counter[str]:
    return Counter(SENTIMENT_LABELS[r.label] for r in rows)


def test_sentfin_keeps_headlines_whose_entities_agree_and_splits_them_disjointly() -> None:
    train, valid = load_sentfin("train"), load_sentfin("valid")
    assert (len(train), len(valid)) == (7662, 1856)  # 9,518 of 10,753 headlines agree
    assert len(load_sentfin("all")) == len(train) + len(valid)
    assert _names(valid) == {"positive": 670, "neutral": 655, "negative": 531}
    assert not {normalise_for_dedup(r.text) for r in train} & {normalise_for_dedup(r.text) for r in valid}
    texts = {r.text: SENTIMENT_LABELS[r.label] for r in train + valid}
    assert texts["SpiceJet to issue 6.4 crore warrants to promoters"] == "neutral"  # row 1 of the file
    assert texts["Mid caps now turn into market darlings"] == "positive"


def test_sentfin_drops_headlines_with_conflicting_entities() -> None:
    import csv
    import json

    with (DATA_DIR / "news" / "sentfin_dataset_1.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    agree = [r["Title"] for r in rows if len(set(json.loads(r["Decisions"]).values())) == 1]
    assert (len(rows), len(agree)) == (10753, 9518)
    assert [r.text for r in load_sentfin("all")] == agree


@pytest.mark.parametrize(
    ("score", "label"),
    [
        (-0.8, "negative"),
        (-0.11, "negative"),
        (-0.1, "neutral"),
        (0.0, "neutral"),
        (0.1, "neutral"),
        (0.101, "positive"),
        (0.9, "positive"),
    ],
)
def test_semeval_scores_map_to_three_classes(score: float, label: str) -> None:
    assert SENTIMENT_LABELS[semeval_label(score)] == label


def test_semeval_headlines_load() -> None:
    rows = load_semeval2017()
    assert len(rows) == 1142
    assert _names(rows) == {"positive": 576, "negative": 405, "neutral": 161}


def test_fixed_validation_sets_per_task() -> None:
    sent, topic = validation_sets("sentiment"), validation_sets("topic")
    assert list(sent) == ["tweets", "tweets_dedup", "news", "news_semeval"]
    assert [len(v) for v in sent.values()] == [2388, 2350, 1856, 1142]
    assert list(topic) == ["tweets", "tweets_dedup"]
    assert set(SET_INFO) >= set(sent)


def test_news_files_are_hashed_and_attributed() -> None:
    hashes = data_hashes()
    assert {"news/sentfin_dataset_1.csv", "news/semeval2017_task5_headlines.json"} <= set(hashes)
    note = (DATA_DIR / "news" / "ATTRIBUTION.md").read_text()
    assert "10.1002/asi.24634" in note and "SemEval-2017" in note and "NOT CONFIRMED" in note
    assert "PhraseBank" in note


def test_expected_calibration_error() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    confident_right = torch.tensor([[9.0, -9.0], [9.0, -9.0], [-9.0, 9.0], [-9.0, 9.0]])
    assert expected_calibration_error(confident_right, labels) == pytest.approx(0.0, abs=1e-3)
    confident_half_wrong = torch.tensor([[9.0, -9.0], [9.0, -9.0], [9.0, -9.0], [9.0, -9.0]])
    assert expected_calibration_error(confident_half_wrong, labels) == pytest.approx(0.5, abs=1e-3)
    assert expected_calibration_error(confident_half_wrong, labels, temperature=1e6) == pytest.approx(0.0, abs=1e-3)
