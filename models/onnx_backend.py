"""The ONNX Runtime backend: export a version's network, quantise it to int8, check its accuracy,
and run it on CPU.

A version directory may hold (all listed in its manifest's checksums like every other file)::

    onnx/model.onnx         the network (both heads) in fp32, traced with eager attention
                            (ORT fuses attention, LayerNorm and GELU itself when it loads the graph)
    onnx/model.int8.onnx    the same with every MatMul weight int8, per output channel
                            (ORT dynamic quantisation); embeddings, LayerNorm, softmax stay fp32

and the manifest's ``onnx`` section records how each variant scored on the validation sets,
mixed with the lexical expert exactly as served, against the fp32 network: a variant is ``ok``
when it loses at most ``ONNX_TOLERANCE`` (0.5 pt) accuracy on every task. The engine only serves
an ``ok`` variant (see ``models/engine.py``).

Files are written at training time (``models.training.train``), or added to an existing version
by ``finsent models export`` (``Registry.add_files``: new files only, never a changed one).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from models.batching import pad_rows, plan_batches
from models.data import load_split, model_text
from models.lexical import LEXICAL_DIR, LexicalExpert, mix_log_probs

log = structlog.get_logger(__name__)

ONNX_DIR = "onnx"
FP32_FILE = f"{ONNX_DIR}/model.onnx"
INT8_FILE = f"{ONNX_DIR}/model.int8.onnx"
VARIANTS = {"fp32": FP32_FILE, "int8": INT8_FILE}
ONNX_TOLERANCE = 0.005  # accuracy a variant may lose against the fp32 network, per task
INPUTS = ("input_ids", "attention_mask")
OPSET = 17


class OnnxUnavailable(RuntimeError):
    """The version has no usable ONNX file for the requested variant (missing, failed check, broken)."""


def available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


# -- export -----------------------------------------------------------------------------------
def export(model: Any, out_dir: Path, *, sample_len: int = 16) -> dict[str, Path]:
    """Write ``onnx/model.onnx`` (fp32) and ``onnx/model.int8.onnx`` under ``out_dir``.

    ``model`` is a ``FinsentModel`` (any device/mode: a CPU fp32 eager-attention copy is exported,
    the eager attention being the pattern ORT's optimiser fuses). Returns the written paths.
    """
    import copy

    import torch

    onnx_dir = Path(out_dir) / ONNX_DIR
    onnx_dir.mkdir(parents=True, exist_ok=True)
    cpu = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    if hasattr(cpu, "set_attn_implementation"):
        cpu.set_attn_implementation("eager")

    from models.network import ENTITY_OUTPUT  # heavy: imports torch and transformers

    class _Both(torch.nn.Module):
        """Every story head's logits and, with an entity head, the last token states (the entity
        head itself runs on the host, per target: ``models.network.entity_logits``)."""

        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m
            self.tasks = list(m.heads.keys()) + ([ENTITY_OUTPUT] if getattr(m, "has_entity_head", False) else [])

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.m.serving_outputs(input_ids, attention_mask)
            return tuple(out[t] for t in self.tasks)

    wrapper = _Both(cpu).eval()
    ids = torch.full((2, sample_len), 1000, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, sample_len // 2 :] = 0
    fp32 = Path(out_dir) / FP32_FILE
    int8 = Path(out_dir) / INT8_FILE
    axes = {name: {0: "batch", 1: "tokens"} for name in INPUTS} | {t: {0: "batch"} for t in wrapper.tasks}
    if ENTITY_OUTPUT in axes:
        axes[ENTITY_OUTPUT] = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notices about Python control flow on shapes
        torch.onnx.export(
            wrapper,
            (ids, mask),
            str(fp32),
            dynamo=False,
            input_names=list(INPUTS),
            output_names=wrapper.tasks,
            dynamic_axes=axes,
            opset_version=OPSET,
        )
    # Quantising the traced graph (not one pre-fused by ORT's transformer optimiser) measured
    # faster: the fused Attention op's QKV weights would stay out of the int8 MatMul kernels.
    _quantize(fp32, int8)
    return {"fp32": fp32, "int8": int8}


def _quantize(src: Path, dst: Path, keep_fp32: Sequence[str] = ()) -> None:
    """int8 weights per output channel for every MatMul (dynamic activation scales) but the nodes
    named in ``keep_fp32``; the embeddings, LayerNorms, softmax and the task heads (Gemm) stay fp32."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(
        logging.WARNING
    )  # the quantiser narrates every tensor (and a pre-processing hint) on the root logger
    try:
        quantize_dynamic(
            str(src),
            str(dst),
            per_channel=True,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=list(keep_fp32),
        )
    finally:
        logging.disable(logging.NOTSET)


def _int8_fallbacks(fp32: Path) -> list[tuple[str, list[str]]]:
    """What to keep in fp32 when quantising every MatMul loses too much accuracy, mildest first:
    the feed-forward down-projections (where BERT-style encoders carry their outlier
    activations), then the last encoder layer, then both. ``(description, node names)``."""
    import re

    import onnx

    names = [n.name for n in onnx.load(str(fp32), load_external_data=False).graph.node if n.op_type == "MatMul"]
    layer = {n: int(m.group(1)) for n in names if (m := re.search(r"layer\.(\d+)/", n))}
    if not layer:
        return []
    last = max(layer.values())
    down = [n for n in names if n.endswith("/output/dense/MatMul") and "/attention/" not in n]
    final = [n for n in names if layer.get(n) == last]
    plans = [
        ("feed-forward down-projections", down),
        (f"encoder layer {last}", final),
        (f"feed-forward down-projections and encoder layer {last}", sorted(set(down) | set(final))),
    ]
    return [(label, nodes) for label, nodes in plans if nodes]


# -- running ----------------------------------------------------------------------------------
class OnnxRunner:
    """One ORT session: ``(input_ids, attention_mask)`` int64 arrays in, logits per task out.

    ``workers`` > 1: :meth:`map` runs that many micro-batches side by side (ORT releases the GIL
    and a session may run concurrently), each on ``threads // workers`` intra-op threads. On
    small matrices (news headlines are 20-60 tokens) one batch per core beats every core on one
    batch: no synchronisation between the threads of each small kernel (measured in
    docs/BENCHMARKS.md, "Classifier")."""

    def __init__(self, path: Path, threads: int | None = None, workers: int = 1) -> None:
        import onnxruntime as ort

        threads = threads or (os.cpu_count() or 1)
        self.workers = max(1, min(workers, threads))
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, threads // self.workers)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # No busy-waiting between kernels: spinning threads steal the cores the Kafka client,
        # the tokenizer and the other stages need (and collapse on an oversubscribed machine).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.tasks = [o.name for o in self.session.get_outputs()]
        self._pool: ThreadPoolExecutor | None = None

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
        return dict(zip(self.tasks, outs))

    def map(self, padded: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """Logits of each padded micro-batch, in order; up to ``workers`` at a time."""
        if self.workers == 1 or len(padded) < 2:
            return [self(ids, mask) for ids, mask in padded]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="onnx")
        return list(self._pool.map(lambda batch: self(*batch), padded))


def load_runner(
    version_dir: Path,
    manifest: dict[str, Any],
    variant: str,
    threads: int | None = None,
    verify: Callable[[str], object] | None = None,
    workers: int = 1,
) -> OnnxRunner:
    """The checked ``variant`` of a version, or ``OnnxUnavailable`` saying why not.

    ``verify(relative_path)`` checks the file against the version's manifest (raises on mismatch).
    """
    if not available():
        raise OnnxUnavailable("onnxruntime is not installed")
    section = manifest.get("onnx") or {}
    rel = VARIANTS[variant]
    if rel not in (manifest.get("files") or {}):
        raise OnnxUnavailable(f"version has no {rel} (export it: finsent models export)")
    check = (section.get("variants") or {}).get(variant) or {}
    if not check.get("ok"):
        raise OnnxUnavailable(f"{variant} did not pass the accuracy check: {check.get('reason') or check}")
    try:
        if verify is not None:
            verify(rel)
        return OnnxRunner(Path(version_dir) / rel, threads, workers)
    except Exception as err:
        raise OnnxUnavailable(f"{rel} cannot be loaded: {err}") from err


def batched_logits(
    run: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]],
    enc: Sequence[Sequence[int]],
    max_batch_tokens: int = 1024,
    max_batch_size: int = 256,
) -> dict[str, np.ndarray]:
    """Logits of token-id rows in input order, in token-budget micro-batches (as the engine runs)."""
    from models.network import ENTITY_OUTPUT  # heavy: imports torch and transformers

    out: dict[str, np.ndarray] = {}
    for batch in plan_batches([len(e) for e in enc], max_batch_tokens, max_batch_size):
        ids, mask = pad_rows(enc, batch)
        for task, lg in run(ids, mask).items():
            if task == ENTITY_OUTPUT:
                continue  # token states, per batch width: only the engine's entity head reads them
            if task not in out:
                out[task] = np.empty((len(enc), lg.shape[-1]), dtype=np.float32)
            out[task][batch] = lg
    return out


# -- the accuracy check -------------------------------------------------------------------------
def check_variants(
    paths: dict[str, Path],
    enc: dict[str, list[list[int]]],
    labels: Mapping[str, Sequence[int]],
    reference: dict[str, np.ndarray],
    mix: Callable[[str, np.ndarray], np.ndarray],
) -> dict[str, Any]:
    """Accuracy of each ONNX variant on the validation rows against the fp32 network.

    ``enc``/``labels``: token ids and gold labels per task; ``reference``: the fp32 torch network's
    logits per task; ``mix(task, logits)``: the served logits (lexical mixture) of network logits.
    """
    result: dict[str, Any] = {
        "tolerance": ONNX_TOLERANCE,
        "reference": "torch fp32 network (+ lexical mixture)",
        "variants": {},
    }
    ref_acc = {t: _acc(mix(t, reference[t]), labels[t]) for t in enc}
    result["fp32_accuracy"] = {t: round(a, 4) for t, a in ref_acc.items()}
    for variant, path in paths.items():
        started = time.perf_counter()
        entry: dict[str, Any] = {"file": VARIANTS[variant]}
        try:
            run = OnnxRunner(path)
            logits = {t: batched_logits(run, enc[t])[t] for t in enc}
        except Exception as err:
            entry.update(ok=False, reason=f"cannot run: {err}")
            result["variants"][variant] = entry
            continue
        ok = True
        for t in enc:
            acc = _acc(mix(t, logits[t]), labels[t])
            agree = float(np.mean(logits[t].argmax(-1) == reference[t].argmax(-1)))
            entry[t] = {
                "accuracy": round(acc, 4),
                "loss_pt": round(100 * (ref_acc[t] - acc), 2),
                "network_agreement": round(agree, 4),
                "max_abs_logit_diff": round(float(np.abs(logits[t] - reference[t]).max()), 4),
            }
            ok = ok and ref_acc[t] - acc <= ONNX_TOLERANCE + 1e-9
        entry["ok"] = ok
        if not ok:
            entry["reason"] = f"loses more than {100 * ONNX_TOLERANCE:.1f} pt accuracy"
        entry["check_seconds"] = round(time.perf_counter() - started, 1)
        result["variants"][variant] = entry
    return result


def _acc(logits: np.ndarray, labels: Sequence[int]) -> float:
    return float(np.mean(np.asarray(logits).argmax(-1) == np.asarray(labels))) if len(labels) else 0.0


def build(
    model: Any,
    tokenizer: Any,
    out_dir: Path,
    valid: Mapping[str, tuple[list[str], list[int]]],
    *,
    max_length: int,
    mix: Callable[[str, np.ndarray], np.ndarray],
) -> dict[str, Any]:
    """Export, quantise and check; returns the manifest's ``onnx`` section. Never raises: a
    failure is recorded (``exported: false`` + ``error``), the version then serves torch."""
    import torch

    started = time.perf_counter()
    try:
        paths = export(model, out_dir)
        enc = {
            t: tokenizer([model_text(x) for x in texts], truncation=True, max_length=max_length)["input_ids"]
            for t, (texts, _) in valid.items()
        }
        cpu = _fp32_cpu(model)
        with torch.inference_mode():
            reference = {t: batched_logits(_torch_runner(cpu), enc[t])[t] for t in enc}
        labels = {t: y for t, (_, y) in valid.items()}
        section = check_variants(paths, enc, labels, reference, mix)
        if "int8" in paths and not section["variants"].get("int8", {}).get("ok"):
            section["variants"]["int8"] = _int8_with_fp32_parts(
                paths, section["variants"]["int8"], enc, labels, reference, mix
            )
    except Exception as err:
        log.warning("onnx_export_failed", error=f"{type(err).__name__}: {err}")
        for rel in VARIANTS.values():
            (Path(out_dir) / rel).unlink(missing_ok=True)
        return {"exported": False, "error": f"{type(err).__name__}: {err}"}
    section = {
        "exported": True,
        "opset": OPSET,
        "max_length": max_length,
        **section,
        "seconds": round(time.perf_counter() - started, 1),
    }
    log.info("onnx_exported", **{v: e.get("ok") for v, e in section["variants"].items()}, seconds=section["seconds"])
    return section


def _int8_with_fp32_parts(
    paths: dict[str, Path],
    first: dict[str, Any],
    enc: dict[str, list[list[int]]],
    labels: Mapping[str, Sequence[int]],
    reference: dict[str, np.ndarray],
    mix: Callable[[str, np.ndarray], np.ndarray],
) -> dict[str, Any]:
    """Quantising every MatMul failed the check: re-quantise with the parts of
    :func:`_int8_fallbacks` left in fp32, mildest first, and keep the first that passes (the last
    one tried otherwise, marked not ok). The entry says what stayed fp32 and what was tried."""
    tried = [{"fp32_nodes": "none", "ok": False, "reason": first.get("reason")}]
    entry = first
    for label, nodes in _int8_fallbacks(paths["fp32"]):
        _quantize(paths["fp32"], paths["int8"], keep_fp32=nodes)
        entry = check_variants({"int8": paths["int8"]}, enc, labels, reference, mix)["variants"]["int8"]
        entry["fp32_nodes"] = label
        tried.append(
            {"fp32_nodes": label, "ok": entry.get("ok", False), **{t: entry[t]["loss_pt"] for t in enc if t in entry}}
        )
        if entry.get("ok"):
            break
    entry["tried"] = tried
    log.info("onnx_int8_fallback", ok=entry.get("ok", False), fp32_nodes=entry.get("fp32_nodes"), attempts=len(tried))
    return entry


def _fp32_cpu(model: Any) -> Any:
    import copy

    import torch

    return copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()


def _torch_runner(model: Any) -> Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]:
    import torch

    def run(ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        out = model.all_logits(torch.from_numpy(ids), torch.from_numpy(mask))
        return {t: v.float().numpy() for t, v in out.items()}

    return run


def export_version(registry: Any, version: str) -> dict[str, Any]:
    """Add the ONNX files and their accuracy check to an existing version (``finsent models
    export``); returns the ``onnx`` section. The validation rows are the ones the version was
    validated on (same data, ``valid_limit`` and seed as its training run)."""
    import random

    from transformers import AutoTokenizer

    from models.network import FinsentModel  # heavy: imports torch and transformers

    manifest = registry.verify(version)
    if (manifest.get("onnx") or {}).get("exported"):
        return manifest["onnx"]
    path = registry.path(version)
    training = manifest.get("training") or {}
    limit = (training.get("hyperparameters") or {}).get("valid_limit")
    seed = int(training.get("seed", 13))
    valid: dict[str, tuple[list[str], list[int]]] = {}
    for task in manifest["tasks"]:
        rows = load_split(task, "valid")
        if limit is not None and limit < len(rows):
            rows = random.Random(seed + 1).sample(rows, limit)
        valid[task] = ([r.text for r in rows], [r.label for r in rows])
    lex_info = manifest.get("lexical") or {}  # one weight for every head, or per-head "weights"
    weights = {t: float((lex_info.get("weights") or {}).get(t, lex_info.get("weight", 0.0))) for t in valid}
    expert = LexicalExpert.load(path / LEXICAL_DIR) if any(w > 0 for w in weights.values()) else None
    lexical = {t: expert.log_probs(texts)[t] for t, (texts, _) in valid.items()} if expert else {}

    def mix(task: str, logits: np.ndarray) -> np.ndarray:
        return mix_log_probs(logits, lexical.get(task), weights[task])

    model = FinsentModel.from_pretrained(str(path), local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    max_length = int(manifest.get("max_length") or 128)
    section: dict[str, Any] = {}

    def build_files(tmp: Path) -> dict[str, Any]:
        section.update(build(model, tokenizer, tmp, valid, max_length=max_length, mix=mix))
        return {"onnx": section}

    registry.add_files(version, build_files)
    return section
