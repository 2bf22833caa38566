"""InferenceEngine on the tiny model: order, token budget, calibrated outputs, hot reload."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from models.data import TOPIC_LABELS, load_split
from models.engine import InferenceEngine, Prediction
from models.registry import Registry
from models.settings import ClassifierSettings

TEXTS = [
    "$AAPL beats on earnings, raises guidance",
    "Fed",
    "Oil prices tumble as OPEC output rises and demand outlook weakens across Asia and Europe this quarter",
    "",
    "Bank of Japan keeps rates unchanged",
    "Tesla recalls 50,000 vehicles over software glitch https://t.co/abc",
]


def test_predictions_are_complete_and_calibrated(tiny_engine: InferenceEngine) -> None:
    preds = tiny_engine.predict(TEXTS)
    assert len(preds) == len(TEXTS)
    for p in preds:
        assert isinstance(p, Prediction)
        assert set(p.sentiment_probs) == {"negative", "neutral", "positive"}
        assert set(p.topic_probs) == set(TOPIC_LABELS)
        assert sum(p.sentiment_probs.values()) == pytest.approx(1.0, abs=1e-4)
        assert sum(p.topic_probs.values()) == pytest.approx(1.0, abs=1e-4)
        assert p.sentiment == max(p.sentiment_probs, key=p.sentiment_probs.get)
        assert p.topic == max(p.topic_probs, key=p.topic_probs.get)
        assert p.sentiment_score == pytest.approx(p.sentiment_probs["positive"] - p.sentiment_probs["negative"])
        assert -1.0 <= p.sentiment_score <= 1.0
        assert p.model_version == tiny_engine.version
    with pytest.raises(ValidationError):
        preds[0].sentiment = "positive"  # frozen
    assert tiny_engine.predict([]) == []


def test_order_is_preserved_across_sorted_micro_batches(tiny_home: Path, settings_for) -> None:
    texts = [e.text for e in load_split("sentiment", "valid")[:60]]
    small = InferenceEngine(Registry(tiny_home / "models"),
                            ClassifierSettings(max_batch_tokens=64, max_batch_size=4, quantize=False, cpu_bf16=False), device="cpu")
    batched = small.predict(texts)
    one_by_one = [small.predict([t])[0] for t in texts[:12]]
    for a, b in zip(batched[:12], one_by_one):
        assert a.sentiment == b.sentiment and a.topic == b.topic
        assert a.sentiment_probs["positive"] == pytest.approx(b.sentiment_probs["positive"], abs=1e-3)
    reversed_preds = small.predict(texts[::-1])
    assert [p.topic for p in reversed_preds[::-1]] == [p.topic for p in batched]


def _batch_shapes(engine: InferenceEngine, texts: list[str]) -> list[tuple[int, int]]:
    """(rows, width) of every micro-batch the engine runs to predict ``texts``."""
    shapes: list[tuple[int, int]] = []
    model = engine._loaded.model
    original = model.all_logits
    model.all_logits = lambda ids, mask: shapes.append(tuple(ids.shape)) or original(ids, mask)
    try:
        engine.predict(texts)
    finally:
        del model.all_logits
    return shapes


def test_micro_batches_respect_the_token_budget(tiny_home: Path) -> None:
    settings = ClassifierSettings(max_batch_tokens=96, max_batch_size=5, quantize=False)
    engine = InferenceEngine(Registry(tiny_home / "models"), settings, device="cpu")
    shapes = _batch_shapes(engine, [e.text for e in load_split("topic", "valid")[:40]])
    assert sum(rows for rows, _ in shapes) == 40
    assert all(rows <= 5 and (rows * width <= 96 or rows == 1) for rows, width in shapes)
    widths = [w for _, w in shapes]
    assert widths == sorted(widths, reverse=True)  # length-sorted: longest batch first
    assert engine.count_tokens(["a b c"]) == [5]  # [CLS] a b c [SEP]


def test_cpu_token_budget_caps_the_batches(tiny_home: Path) -> None:
    settings = ClassifierSettings(max_batch_tokens=8192, cpu_max_batch_tokens=128, quantize=False)
    engine = InferenceEngine(Registry(tiny_home / "models"), settings, device="cpu")
    shapes = _batch_shapes(engine, [e.text for e in load_split("sentiment", "valid")[:30]])
    assert len(shapes) > 1 and all(rows * width <= 128 or rows == 1 for rows, width in shapes)


def test_count_tokens_matches_tokenizer(tiny_engine: InferenceEngine) -> None:
    counts = tiny_engine.count_tokens(TEXTS)
    assert len(counts) == len(TEXTS) and all(c >= 2 for c in counts)
    assert counts[2] > counts[1]


def _clone_version(reg: Registry, version: str) -> str:
    src = reg.path(version)

    def build(tmp: Path) -> dict:
        shutil.copytree(src, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("manifest.json"))
        body = json.loads((src / "manifest.json").read_text())
        for key in ("format", "version", "created_at", "files", "checksum"):
            body.pop(key, None)
        return body

    return reg.publish(build)


def test_reload_if_changed_follows_promote_and_rollback(tiny_home_copy: Path, settings_for) -> None:
    reg = Registry(tiny_home_copy / "models")
    first = reg.current()
    engine = InferenceEngine.from_settings(settings_for(tiny_home_copy), device="cpu")
    assert engine.reload_if_changed() is False
    second = _clone_version(reg, first)
    reg.promote(second)
    assert engine.reload_if_changed() is True
    assert engine.version == second and engine.predict(["Fed hikes"])[0].model_version == second
    reg.rollback()
    assert engine.reload_if_changed() is True and engine.version == first


def test_corrupt_version_is_never_loaded(tiny_home_copy: Path, settings_for) -> None:
    reg = Registry(tiny_home_copy / "models")
    first = reg.current()
    engine = InferenceEngine.from_settings(settings_for(tiny_home_copy), device="cpu")
    second = _clone_version(reg, first)
    reg.promote(second)
    with open(reg.path(second) / "model.safetensors", "r+b") as fh:  # bit rot after promotion
        fh.seek(1000)
        fh.write(b"\x00garbage\x00")
    assert engine.reload_if_changed() is False  # refused; the old model keeps serving
    assert engine.version == first
    from models.registry import CorruptVersionError

    with pytest.raises(CorruptVersionError):
        InferenceEngine.from_settings(settings_for(tiny_home_copy), device="cpu")


def test_pinned_version_never_reloads(tiny_home_copy: Path, settings_for) -> None:
    reg = Registry(tiny_home_copy / "models")
    first = reg.current()
    engine = InferenceEngine(reg, ClassifierSettings(version=first), device="cpu")
    reg.promote(_clone_version(reg, first))
    assert engine.reload_if_changed() is False and engine.version == first


def test_microbatcher_over_the_engine(tiny_engine: InferenceEngine) -> None:
    from models.batching import MicroBatcher

    with MicroBatcher(tiny_engine.predict, tiny_engine.count_tokens, max_batch_tokens=256, max_batch_size=8,
                      max_delay_ms=5) as mb:
        futures = [mb.submit(t) for t in TEXTS]
        results = [f.result(timeout=60) for f in futures]
    direct = tiny_engine.predict(TEXTS)
    assert [r.topic for r in results] == [d.topic for d in direct]
