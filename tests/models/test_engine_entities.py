"""Per-target sentiment from the engine (issue #25) on the tiny model: one pass per story, the same
numbers on every backend, the story's sentiment standing in where the model cannot see a target."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.engine import InferenceEngine
from models.registry import Registry
from models.settings import ClassifierSettings

TEXTS = [
    "Globex shares soar after rival Initech recalls flagship product",
    "$AAPL $MSFT $NVDA stocks to watch",
    "Fed holds rates",
]
TARGETS = [
    [("GLBX", ["Globex"]), ("INTC", ["Initech"])],
    [("AAPL", ["$AAPL"]), ("MSFT", ["$MSFT"]), ("NVDA", ["$NVDA"])],
    [("ACME", ["$ACME", "Acme"])],
]


def test_every_target_gets_its_own_calibrated_verdict(tiny_engine: InferenceEngine) -> None:
    preds = tiny_engine.predict(TEXTS, TARGETS)
    assert [[e.ticker for e in p.entities] for p in preds] == [[t for t, _ in ts] for ts in TARGETS]
    for p, ts in zip(preds, TARGETS):
        for e in p.entities:
            assert abs(sum(e.sentiment_probs.values()) - 1) < 1e-5
            assert e.sentiment == max(e.sentiment_probs, key=e.sentiment_probs.get)
            assert e.sentiment_score == pytest.approx(e.sentiment_probs["positive"] - e.sentiment_probs["negative"])
    assert [e.method for e in preds[0].entities] == ["entity", "entity"]
    assert preds[0].entities[0].sentiment_probs != preds[0].entities[1].sentiment_probs  # two targets, two verdicts
    # a target not written in the text: the story's own verdict stands in
    (acme,) = preds[2].entities
    assert acme.method == "story" and acme.sentiment_probs == preds[2].sentiment_probs
    # targets change nothing about the story-level verdict (the same single pass)
    plain = tiny_engine.predict(TEXTS)
    assert [p.sentiment_probs for p in plain] == [p.sentiment_probs for p in preds]
    assert all(p.entities == () for p in plain)


def test_entity_head_agrees_across_backends_and_matches_the_network(tiny_home: Path) -> None:
    reg = Registry(tiny_home / "models")
    fp = dict(quantize=False, cpu_bf16=False)
    onnx = InferenceEngine(reg, ClassifierSettings(backend="onnx", **fp), device="cpu")
    torch_ = InferenceEngine(reg, ClassifierSettings(backend="torch", **fp), device="cpu")
    assert (onnx.backend, torch_.backend) == ("onnx", "torch")
    a, b = onnx.predict(TEXTS, TARGETS), torch_.predict(TEXTS, TARGETS)
    for pa, pb in zip(a, b):
        for ea, eb in zip(pa.entities, pb.entities):
            assert max(abs(ea.sentiment_probs[k] - eb.sentiment_probs[k]) for k in ea.sentiment_probs) < 1e-3

    # the served probabilities are the network's entity head, calibrated with the manifest's temperature
    from transformers import AutoTokenizer

    from models.entities import find_spans, token_mask
    from models.network import FinsentModel

    path = reg.path(reg.current())
    model = FinsentModel.from_pretrained(str(path)).eval()
    tok = AutoTokenizer.from_pretrained(str(path))
    t = json.loads((path / "manifest.json").read_text())["calibration"]["temperatures"]["entity"]
    enc = tok([TEXTS[0]], return_offsets_mapping=True, return_tensors="pt")
    masks = [token_mask(enc["offset_mapping"][0].tolist(), find_spans(TEXTS[0], s)) for _, s in TARGETS[0]]
    with torch.inference_mode():
        hidden = model.token_states(enc["input_ids"], enc["attention_mask"])
        lg = model.entity_logits(hidden, enc["attention_mask"], torch.tensor(masks), torch.tensor([0, 0]))
    expected = torch.softmax(lg / t, -1).numpy()
    got = np.array([[e.sentiment_probs[k] for k in ("negative", "neutral", "positive")] for e in b[0].entities])
    assert np.abs(expected - got).max() < 1e-4


def test_manifest_reports_the_entity_head_against_the_story_baseline(tiny_engine: InferenceEngine) -> None:
    section = tiny_engine.manifest["entity"]
    assert section["head"] is True and section["temperature"] > 0
    report = section["valid"]["sentfin"]
    for subset in ("all", "multi", "disagree"):
        r = report[subset]
        assert r["n"] > 0 and 0 <= r["accuracy"] <= 1 and 0 <= r["baseline_story"]["accuracy"] <= 1
        assert r["gain_pt"]["accuracy"] == pytest.approx(
            100 * (r["accuracy"] - r["baseline_story"]["accuracy"]), abs=0.11
        )
    assert report["all"]["n"] >= report["multi"]["n"] >= report["disagree"]["n"]
