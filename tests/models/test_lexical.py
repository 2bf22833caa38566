"""The lexical expert: fitting, pickle-free storage, the mixture, and its place in a trained version."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from models.data import load_split
from models.engine import InferenceEngine
from models.lexical import LEXICAL_DIR, LexicalExpert, mix_log_probs
from models.registry import Registry
from models.settings import ClassifierSettings

TRAIN = {
    "sentiment": (
        [
            "Acme shares surge after record profit",
            "Acme stock plunges on fraud probe",
            "Acme to hold annual meeting",
            "Beta Corp soars as sales beat",
            "Beta Corp sinks after guidance cut",
            "Beta Corp names new auditor",
        ]
        * 2,
        [1, 0, 2, 1, 0, 2] * 2,
    ),
    "topic": (["Fed raises rates again", "Acme declares quarterly dividend", "Fed holds rates steady"], [1, 4, 1]),
}
N_CLASSES = {"sentiment": 3, "topic": 20}


def test_fitted_expert_separates_its_training_words() -> None:
    expert = LexicalExpert.fit(TRAIN, N_CLASSES)
    lp = expert.log_probs(["shares surge", "stock plunges", "annual meeting"])
    assert lp["sentiment"].shape == (3, 3) and lp["topic"].shape == (3, 20)
    assert list(lp["sentiment"].argmax(1)) == [1, 0, 2]
    np.testing.assert_allclose(np.exp(lp["sentiment"]).sum(1), 1.0, rtol=1e-5)


def test_classes_never_seen_in_training_are_least_likely() -> None:
    topic = LexicalExpert.fit(TRAIN, N_CLASSES).log_probs(["Fed dividend"])["topic"][0]
    unseen = [c for c in range(20) if c not in (1, 4)]
    assert topic[unseen].max() < min(topic[1], topic[4]) - 5


def test_save_and_load_give_identical_scores_without_pickle(tmp_path: Path) -> None:
    expert = LexicalExpert.fit(TRAIN, N_CLASSES)
    expert.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocabulary.json", "weights.safetensors"]
    loaded = LexicalExpert.load(tmp_path)
    texts = ["Acme shares surge", "unknown words only", "", "Fed & dividend news https://t.co/x"]
    a, b = expert.log_probs(texts), loaded.log_probs(texts)
    for task in a:
        np.testing.assert_array_equal(a[task], b[task])


def test_load_refuses_weights_that_do_not_match_the_vocabulary(tmp_path: Path) -> None:
    LexicalExpert.fit(TRAIN, N_CLASSES).save(tmp_path)
    other = tmp_path / "other"
    LexicalExpert.fit({"sentiment": TRAIN["sentiment"]}, N_CLASSES).save(other)
    (tmp_path / "weights.safetensors").write_bytes((other / "weights.safetensors").read_bytes())
    with pytest.raises((ValueError, KeyError)):
        LexicalExpert.load(tmp_path)


def test_fit_without_words_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no usable words"):
        LexicalExpert.fit({"sentiment": (["!", "?"], [0, 1])}, N_CLASSES)


def test_mixture_weights() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.1, 0.0]], dtype=np.float32)
    lexical = np.log(np.array([[0.1, 0.8, 0.1], [0.7, 0.2, 0.1]], dtype=np.float32))
    np.testing.assert_array_equal(mix_log_probs(logits, lexical, 0.0), logits)
    np.testing.assert_array_equal(mix_log_probs(logits, None, 0.5), logits)
    only_lexical = mix_log_probs(logits, lexical, 1.0)
    np.testing.assert_allclose(
        only_lexical - only_lexical.max(1, keepdims=True), lexical - lexical.max(1, keepdims=True), atol=1e-6
    )
    # a confident network outvotes a mild lexical disagreement; a near-tie is settled by the expert
    assert list(mix_log_probs(logits, lexical, 0.35).argmax(1)) == [0, 0]


def test_trained_version_serves_the_validated_mixture(
    tiny_home: Path, tiny_engine: InferenceEngine, settings_for
) -> None:
    """The engine's predictions on the trainer's validation rows give the manifest's accuracy."""
    reg = Registry(tiny_home / "models")
    m = reg.read_manifest(reg.current())
    assert m["lexical"]["weights"]["sentiment"] in m["training"]["hyperparameters"]["lexical_grid"]
    assert m["lexical"]["weight"] == m["lexical"]["weights"]["sentiment"]
    assert {f"{LEXICAL_DIR}/vocabulary.json", f"{LEXICAL_DIR}/weights.safetensors"} <= set(m["files"])
    seed, limit = m["training"]["seed"], m["training"]["hyperparameters"]["valid_limit"]
    for task in ("sentiment", "topic"):
        assert set(m["metrics"][task]["components"]) == {"network", "lexical"}
        rows = random.Random(seed + 1).sample(load_split(task, "valid"), limit)  # as the trainer drew them
        # torch in the precision the metrics were measured in reproduces them exactly
        torch_engine = InferenceEngine(reg, ClassifierSettings(backend="torch"), device="cpu")
        assert _accuracy(torch_engine, task, rows) == m["metrics"][task]["accuracy"], task
        if tiny_engine.backend == "onnx":  # the served ONNX variant: what its accuracy check measured
            variant = "int8" if tiny_engine.precision == "int8" else "fp32"
            expected = m["onnx"]["variants"][variant][task]["accuracy"]
            assert _accuracy(tiny_engine, task, rows) == pytest.approx(expected, abs=1 / len(rows) + 1e-9), task


def _accuracy(engine: InferenceEngine, task: str, rows) -> float:
    preds = engine.predict([r.text for r in rows])
    names = engine._loaded.labels[task]
    got = [names.index(p.sentiment if task == "sentiment" else p.topic) for p in preds]
    return round(sum(g == r.label for g, r in zip(got, rows)) / len(rows), 4)
