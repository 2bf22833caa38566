"""InferenceEngine on the tiny model: order, token budget, calibrated outputs, hot reload."""

from __future__ import annotations

import dataclasses
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
    small = InferenceEngine(
        Registry(tiny_home / "models"),
        ClassifierSettings(max_batch_tokens=64, max_batch_size=4, quantize=False, cpu_bf16=False),
        device="cpu",
    )
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
    loaded = engine._loaded
    engine._loaded = dataclasses.replace(
        loaded, runner=lambda ids, mask: shapes.append(tuple(ids.shape)) or loaded.runner(ids, mask)
    )
    try:
        engine.predict(texts)
    finally:
        engine._loaded = loaded
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


def test_serves_the_fastest_backend_that_passed_the_accuracy_check(tiny_engine: InferenceEngine) -> None:
    manifest = tiny_engine.manifest
    variants = manifest["onnx"]["variants"]
    assert manifest["onnx"]["exported"] and {"onnx/model.onnx", "onnx/model.int8.onnx"} <= set(manifest["files"])
    for entry in variants.values():  # the check compares each variant with the fp32 network on validation
        assert entry["ok"] == all(entry[t]["loss_pt"] <= 0.5 for t in ("sentiment", "topic"))
    expected = "int8" if variants["int8"]["ok"] else "float32" if variants["fp32"]["ok"] else None
    if expected is None:
        assert tiny_engine.backend == "torch" and tiny_engine.fallback_reason
    else:
        assert (tiny_engine.backend, tiny_engine.precision) == ("onnx", expected)
        assert tiny_engine.fallback_reason is None and tiny_engine.fallbacks == 0


def test_onnx_and_torch_agree(tiny_home: Path) -> None:
    reg = Registry(tiny_home / "models")
    texts = [e.text for e in load_split("sentiment", "valid")[:24]]
    fp = dict(quantize=False, cpu_bf16=False)
    onnx = InferenceEngine(reg, ClassifierSettings(backend="onnx", **fp), device="cpu")
    torch_ = InferenceEngine(reg, ClassifierSettings(backend="torch", **fp), device="cpu")
    assert (onnx.backend, onnx.precision, torch_.backend, torch_.precision) == ("onnx", "float32", "torch", "float32")
    a, b = onnx.predict_probs(texts)[1], torch_.predict_probs(texts)[1]
    for task in a:
        assert abs(a[task] - b[task]).max() < 1e-3


def test_onnx_parallel_micro_batches_equal_one_at_a_time(tiny_home: Path) -> None:
    """Micro-batches run side by side (one per worker, a lone batch split) give the same
    probabilities, in input order, as running them one after the other."""
    reg = Registry(tiny_home / "models")
    texts = [e.text for e in load_split("sentiment", "valid")[:40]]
    fp = dict(quantize=False, cpu_bf16=False)  # fp32: int8 activation scales depend on the batch
    one = InferenceEngine(reg, ClassifierSettings(backend="onnx", onnx_workers=1, threads=2, **fp), device="cpu")
    two = InferenceEngine(
        reg, ClassifierSettings(backend="onnx", onnx_workers=2, threads=2, **fp, cpu_max_batch_tokens=128), device="cpu"
    )
    assert one.backend == two.backend == "onnx"
    assert one._loaded.runner.workers == 1 and two._loaded.runner.workers == 2
    for batch in (texts, texts[:3], texts[:1]):
        a, b = one.predict_probs(batch)[1], two.predict_probs(batch)[1]
        for task in a:
            assert a[task].shape == b[task].shape == (len(batch), a[task].shape[1])
            assert abs(a[task] - b[task]).max() < 1e-4


def _rewrite_manifest(reg: Registry, version: str, edit) -> None:
    """Edit a version's manifest and re-seal its checksum (a version exported without ONNX, ...)."""
    from models.registry import _files_checksum

    path = reg.path(version) / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    manifest["checksum"] = _files_checksum(manifest["files"])
    path.write_text(json.dumps(manifest))


def test_version_without_onnx_falls_back_to_torch(tiny_home_copy: Path, settings_for, caplog) -> None:
    reg = Registry(tiny_home_copy / "models")
    version = reg.current()

    def drop_onnx(m: dict) -> None:
        m.pop("onnx")
        m["files"] = {k: v for k, v in m["files"].items() if not k.startswith("onnx/")}

    _rewrite_manifest(reg, version, drop_onnx)
    shutil.rmtree(reg.path(version) / "onnx")
    engine = InferenceEngine.from_settings(settings_for(tiny_home_copy), device="cpu")
    assert engine.backend == "torch" and engine.fallbacks == 1
    assert "finsent models export" in engine.fallback_reason
    assert engine.predict(["Shares plunge"])[0].model_version == version
    torch_only = InferenceEngine(reg, ClassifierSettings(backend="torch"), device="cpu")
    assert torch_only.fallbacks == 0 and torch_only.fallback_reason is None  # not wanted: no fallback


def test_corrupt_onnx_file_falls_back_to_torch(tiny_home_copy: Path, settings_for) -> None:
    reg = Registry(tiny_home_copy / "models")
    for name in ("model.onnx", "model.int8.onnx"):
        with open(reg.path(reg.current()) / "onnx" / name, "r+b") as fh:  # bit rot
            fh.seek(2000)
            fh.write(b"\x00garbage\x00")
    engine = InferenceEngine.from_settings(settings_for(tiny_home_copy), device="cpu")
    assert engine.backend == "torch" and "checksum" in engine.fallback_reason
    assert len(engine.predict(["Fed hikes", "Stock soars"])) == 2  # still serving


def test_variant_that_failed_its_check_is_never_served(tiny_home_copy: Path, settings_for) -> None:
    reg = Registry(tiny_home_copy / "models")

    def fail_int8(m: dict) -> None:
        m["onnx"]["variants"]["int8"]["ok"] = False
        m["onnx"]["variants"]["fp32"]["ok"] = True

    _rewrite_manifest(reg, reg.current(), fail_int8)
    engine = InferenceEngine.from_settings(settings_for(tiny_home_copy), device="cpu")
    assert (engine.backend, engine.precision) == ("onnx", "float32")


def test_export_adds_onnx_to_an_existing_version(tiny_home_copy: Path, settings_for) -> None:
    """``finsent models export`` for versions trained before the ONNX backend existed."""
    from models import onnx_backend

    reg = Registry(tiny_home_copy / "models")
    version = reg.current()
    before = reg.verify(version)

    def drop_onnx(m: dict) -> None:
        m.pop("onnx")
        m["files"] = {k: v for k, v in m["files"].items() if not k.startswith("onnx/")}

    _rewrite_manifest(reg, version, drop_onnx)
    shutil.rmtree(reg.path(version) / "onnx")
    section = onnx_backend.export_version(reg, version)
    after = reg.verify(version)  # covered by the checksums again
    assert section["exported"] and after["onnx"] == section
    assert {k: v for k, v in after["files"].items() if not k.startswith("onnx/")} == {
        k: v for k, v in before["files"].items() if not k.startswith("onnx/")
    }  # nothing else changed
    assert section["fp32_accuracy"] == before["onnx"]["fp32_accuracy"]  # the same validation rows
    engine = InferenceEngine.from_settings(settings_for(tiny_home_copy), device="cpu")
    assert engine.backend == "onnx"


def test_count_tokens_then_predict_tokenises_once(tiny_home: Path) -> None:
    """The classify stage counts tokens on arrival and predicts later: one tokenisation per story."""
    engine = InferenceEngine(Registry(tiny_home / "models"), ClassifierSettings(), device="cpu")
    calls: list[list[str]] = []
    tok = engine._loaded.tokenizer
    engine._loaded = dataclasses.replace(
        engine._loaded, tokenizer=lambda texts, **kw: calls.append(list(texts)) or tok(texts, **kw)
    )
    texts = ["Fed hikes rates again", "Stock soars to a record"]
    counts = engine.count_tokens(texts)
    preds = engine.predict(texts)
    assert len(calls) == 1 and len(preds) == 2 and counts == [len(i) for i in tok(texts)["input_ids"]]
    engine.forget_tokens()
    engine.predict(texts[:1])
    assert len(calls) == 2


def test_int8_that_loses_too_much_is_requantised_with_parts_left_in_fp32(
    tiny_home: Path, tmp_path: Path, monkeypatch
) -> None:
    """Quantising every MatMul failed the accuracy check: the export tries again with the mildest
    set of fp32 parts that passes, and records what stayed fp32 and what was tried."""
    import onnx

    from models import onnx_backend

    reg = Registry(tiny_home / "models")
    src = reg.path(reg.current()) / "onnx"
    paths = {"fp32": tmp_path / "model.onnx", "int8": tmp_path / "model.int8.onnx"}
    shutil.copy(src / "model.onnx", paths["fp32"])
    plans = onnx_backend._int8_fallbacks(paths["fp32"])
    last = max(int(n.split("layer.")[1].split("/")[0]) for _, nodes in plans for n in nodes)
    assert [label for label, _ in plans] == [
        "feed-forward down-projections",
        f"encoder layer {last}",
        f"feed-forward down-projections and encoder layer {last}",
    ]
    query = f"/bert/encoder/layer.{last}/attention/self/query/MatMul"
    assert query in plans[1][1] and query not in plans[0][1]

    def fp32_matmuls(path: Path) -> set[str]:
        return {n.name for n in onnx.load(str(path)).graph.node if n.op_type == "MatMul"}

    def check(p, enc, labels, reference, mix):  # passes once the last layer's query stays fp32
        ok = query in fp32_matmuls(p["int8"])
        return {"variants": {"int8": {"ok": ok, "sentiment": {"loss_pt": 0.2 if ok else 0.9}}}}

    monkeypatch.setattr(onnx_backend, "check_variants", check)
    first = {"ok": False, "reason": "loses more than 0.5 pt accuracy"}
    entry = onnx_backend._int8_with_fp32_parts(
        paths, first, {"sentiment": [[1, 2]]}, {"sentiment": [0]}, {}, lambda t, x: x
    )
    assert entry["ok"] and entry["fp32_nodes"] == f"encoder layer {last}"
    assert [t["fp32_nodes"] for t in entry["tried"]] == [
        "none",
        "feed-forward down-projections",
        f"encoder layer {last}",
    ]
    kept = fp32_matmuls(paths["int8"])
    assert query in kept and "/bert/encoder/layer.0/output/dense/MatMul" not in kept  # the rest is int8
