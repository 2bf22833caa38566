"""The inference engine the daemon uses: registry version in, calibrated predictions out.

* Texts are tokenised once, sorted by length and cut into micro-batches by a token budget
  (``classifier.max_batch_tokens`` / ``max_batch_size``) so little compute goes to padding;
  results come back in input order. ONNX Runtime runs the micro-batches side by side, one per
  core (``classifier.onnx_workers``), splitting a lone batch so no core idles.
* Backends: on CPU, ONNX Runtime (``models/onnx_backend.py``) in int8 (per-channel MatMul
  weights) or fp32, whichever is fastest among those the version's accuracy check passed (within
  0.5 pt of fp32 on every task); otherwise torch (int8 when its own check passed, else bf16
  autocast when validated in bf16, else fp32). A missing, failed or corrupt ONNX file makes torch
  serve, with one ``onnx_fallback_to_torch`` log line (``engine.fallback_reason``, counted in
  ``engine.fallbacks``). CUDA: torch in bf16 (fp16 where bf16 is missing), pinned host buffers.
* Versions trained with a lexical expert (``models/lexical.py``) serve the log-linear mixture of
  the network and the expert with the manifest's weight, exactly as validated.
* Probabilities are temperature-calibrated per head (temperatures from the manifest).
* ``reload_if_changed()`` re-reads the registry's ``current`` pointer and swaps the loaded model
  atomically (a single reference assignment), so in-flight ``predict`` calls finish on the old one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

# Before torch starts OpenMP (when this is the first import of torch, as in the daemon): idle
# OpenMP threads sleep instead of spinning, so they leave the cores to the Kafka client and the
# other stages between batches (ONNX Runtime sessions get the same with allow_spinning=0).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch

from models import onnx_backend
from models.batching import pad_rows, plan_batches, spread_batches
from models.data import model_text
from models.entities import find_spans, token_mask
from models.hf import quiet_loading
from models.lexical import LEXICAL_DIR, LexicalExpert, mix_log_probs
from models.network import ENTITY_OUTPUT, FinsentModel, entity_logits
from models.prediction import EntityPrediction, Prediction
from models.quantization import quantize_dynamic_int8
from models.registry import Registry, RegistryError
from models.settings import ClassifierSettings
from models.training_config import cpu_has_bf16

log = structlog.get_logger(__name__)


Runner = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]
"""A loaded network: padded ``(input_ids, attention_mask)`` int64 arrays in, logits per task out."""

TOKEN_CACHE_SIZE = 8192  # texts whose token ids are remembered (count_tokens then predict: one tokenisation)

EntityTargets = Sequence[tuple[str, Sequence[str]]]
"""The targets of one text: ``(ticker, the surface forms it is written as, e.g. "$GLBX", "Globex")``."""


@dataclass(frozen=True)
class _Loaded:
    version: str
    runner: Runner
    tokenizer: Any
    labels: dict[str, tuple[str, ...]]
    temperatures: dict[str, float]
    device: torch.device
    backend: str  # "onnx" (ONNX Runtime) or "torch"
    precision: str  # int8 / bf16 (CPU autocast) / bfloat16 / float16 (CUDA) / float32
    manifest: dict[str, Any]
    max_length: int | None = None  # tokens the version was trained and validated with
    lexical: LexicalExpert | None = None  # mixed in with ``lexical_weights`` (None: the network alone)
    lexical_weights: dict[str, float] = field(default_factory=dict)  # per task; absent = 0
    fallback: str | None = None  # why ONNX Runtime is not serving although it was wanted
    tokens: dict[str, tuple[list[int], list[tuple[int, int]]]] = field(default_factory=dict)
    """model_text -> (ids, character offsets of each id) (bounded cache)"""
    entity_head: torch.nn.Linear | None = None  # target-aware sentiment head (versions since issue #25)

    @property
    def quantized(self) -> bool:
        return self.precision == "int8"


def _pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("classifier.device is 'cuda' but CUDA is not available")
        return torch.device("cuda")
    return torch.device("cpu")


def _torch_runner(model: Any, device: torch.device, autocast: torch.dtype | None) -> Runner:
    def run(ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        with (
            torch.inference_mode(),
            torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None),
        ):
            if device.type == "cuda":  # pinned host memory: the copy overlaps the previous batch's compute
                t_ids = torch.from_numpy(ids).pin_memory().to(device, non_blocking=True)
                t_mask = torch.from_numpy(mask).pin_memory().to(device, non_blocking=True)
            else:
                t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)
            logits = model.serving_outputs(t_ids, t_mask)
            return {task: lg.float().cpu().numpy() for task, lg in logits.items()}

    return run


def _load_torch(
    path: Path, manifest: dict[str, Any], device: torch.device, quantize: bool, cpu_bf16: bool, version: str
) -> tuple[Runner, str]:

    with quiet_loading():
        model = FinsentModel.from_pretrained(str(path), local_files_only=True)
    model.eval()
    autocast: torch.dtype | None = None
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        model = model.to(device=device, dtype=dtype)  # type: ignore[call-arg]  # transformers wraps .to in a decorator mypy reads wrongly
        return _torch_runner(model, device, None), str(dtype).replace("torch.", "")
    q = manifest.get("quantization") or {}
    if quantize and q.get("ok"):
        return _torch_runner(quantize_dynamic_int8(model), device, None), "int8"
    # The manifest's validation metrics were computed under bf16 autocast: serving in bf16
    # on a CPU that does bf16 natively reproduces them (and is ~1.7x faster than fp32).
    validated_bf16 = (manifest.get("training") or {}).get("autocast") == "bfloat16"
    if cpu_bf16 and validated_bf16 and cpu_has_bf16():
        autocast = torch.bfloat16
    return _torch_runner(model, device, autocast), "bf16" if autocast else "float32"


def load_version(
    registry: Registry,
    version: str,
    device: torch.device,
    quantize: bool,
    cpu_bf16: bool = True,
    backend: str = "auto",
    threads: int | None = None,
    onnx_workers: int | None = None,
) -> _Loaded:
    """Verify checksums, then load the version's network on the fastest validated backend.

    On CPU with ``backend`` auto/onnx: ONNX Runtime int8 (when ``quantize``), then ONNX Runtime
    fp32, each only when the version's ``onnx`` accuracy check passed and its file verifies;
    otherwise torch (int8 when its own check passed, bf16 autocast when validated in bf16, fp32).
    An unusable ONNX file never stops serving: torch takes over with one log line saying why.
    """
    from transformers import AutoTokenizer

    # ONNX files are optional: a corrupt one makes us serve torch, not refuse the version.
    manifest = registry.verify(version, skip_prefix=onnx_backend.ONNX_DIR + "/")
    path: Path = registry.path(version)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    labels = {t: tuple(names) for t, names in manifest["tasks"].items()}
    temps = {t: float(v) for t, v in manifest.get("calibration", {}).get("temperatures", {}).items()}
    runner: Runner | None = None
    chosen = "torch"
    precision = ""
    fallback: str | None = None
    if device.type == "cpu" and backend in ("auto", "onnx"):
        reasons = []
        for variant in ("int8", "fp32") if quantize else ("fp32",):
            try:
                workers = onnx_workers or threads or os.cpu_count() or 1
                runner = onnx_backend.load_runner(
                    path,
                    manifest,
                    variant,
                    threads,
                    verify=lambda rel: registry.verify_file(version, rel),
                    workers=workers,
                )
                chosen, precision = "onnx", "int8" if variant == "int8" else "float32"
                break
            except (onnx_backend.OnnxUnavailable, RegistryError) as err:
                reasons.append(f"{variant}: {err}")
        if runner is None:
            fallback = "; ".join(reasons)
        elif reasons:
            log.info("onnx_variant_skipped", version=version, reasons=reasons)
    if runner is None:
        runner, precision = _load_torch(path, manifest, device, quantize, cpu_bf16, version)
        if fallback:
            log.warning("onnx_fallback_to_torch", version=version, reason=fallback, precision=precision)
    trained_length = manifest.get("max_length")
    lex_info = manifest.get("lexical") or {}  # one weight for every head, or per-head "weights"
    lexical_weights = {t: float((lex_info.get("weights") or {}).get(t, lex_info.get("weight", 0.0))) for t in labels}
    lexical = LexicalExpert.load(path / LEXICAL_DIR) if any(w > 0 for w in lexical_weights.values()) else None
    head = _load_entity_head(path, manifest)
    log.info(
        "model_loaded",
        version=version,
        device=str(device),
        backend=chosen,
        precision=precision,
        workers=getattr(runner, "workers", 1),
        lexical_weights=lexical_weights,
        entity_head=head is not None,
    )
    return _Loaded(
        version,
        runner,
        tokenizer,
        labels,
        temps,
        device,
        chosen,
        precision,
        manifest,
        int(trained_length) if trained_length else None,
        lexical,
        lexical_weights,
        fallback,
        entity_head=head,
    )


def _load_entity_head(path: Path, manifest: dict[str, Any]) -> torch.nn.Linear | None:
    """The entity head's weights (a few KB), run on the host over the token states of any backend."""
    if not (manifest.get("entity") or {}).get("head"):
        return None
    from safetensors.torch import load_file

    weights = load_file(str(path / "model.safetensors"))
    w, b = weights["entity_head.weight"].float(), weights["entity_head.bias"].float()
    head = torch.nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        head.weight.copy_(w)
        head.bias.copy_(b)
    return head.eval()


class InferenceEngine:
    """Loaded from the registry: ``current`` unless a version is given (then pinned)."""

    def __init__(
        self,
        registry: Registry,
        settings: ClassifierSettings | None = None,
        *,
        version: str | None = None,
        device: str | None = None,
        quantize: bool | None = None,
    ) -> None:
        self.settings = settings or ClassifierSettings()
        self.registry = registry
        pinned = version or self.settings.version
        self._pinned = pinned if pinned and pinned != "current" else None
        self._device = _pick_device(device or self.settings.device)
        self._quantize = self.settings.quantize if quantize is None else quantize
        if self.settings.threads:
            torch.set_num_threads(self.settings.threads)
        self.fallbacks = 0  # loads where ONNX Runtime was wanted but torch had to serve
        self._reload_lock = threading.Lock()
        self._loaded = self._load(registry.resolve(self._pinned))

    def _load(self, version: str) -> _Loaded:
        loaded = load_version(
            self.registry,
            version,
            self._device,
            self._quantize,
            self.settings.cpu_bf16,
            self.settings.backend,
            self.settings.threads,
            self.settings.onnx_workers,
        )
        if loaded.fallback:
            self.fallbacks += 1
        return loaded

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> InferenceEngine:
        """From the full ``Settings`` (registry at ``settings.models_dir``)."""
        return cls(Registry.from_settings(settings), settings.classifier, **kwargs)

    # -- properties -------------------------------------------------------------------------
    @property
    def version(self) -> str:
        return self._loaded.version

    @property
    def device(self) -> torch.device:
        return self._loaded.device

    @property
    def quantized(self) -> bool:
        return self._loaded.quantized

    @property
    def precision(self) -> str:
        """What the model runs in: int8, bf16 (autocast), bfloat16/float16 (CUDA) or float32."""
        return self._loaded.precision

    @property
    def backend(self) -> str:
        """``onnx`` (ONNX Runtime) or ``torch``."""
        return self._loaded.backend

    @property
    def fallback_reason(self) -> str | None:
        """Why the loaded version is not served by ONNX Runtime although it was wanted (None: it is)."""
        return self._loaded.fallback

    @property
    def manifest(self) -> dict[str, Any]:
        return self._loaded.manifest

    # -- registry changes -------------------------------------------------------------------
    def reload_if_changed(self) -> bool:
        """Load the registry's current version if it differs from the loaded one.

        Returns True when a new model was swapped in. A pinned engine never changes; a current
        version that fails verification is refused (logged) and the old model keeps serving.
        """
        if self._pinned:
            return False
        with self._reload_lock:
            try:
                target = self.registry.current()
            except RegistryError as err:
                log.warning("model_reload_failed", error=str(err))
                return False
            if not target or target == self._loaded.version:
                return False
            try:
                loaded = self._load(target)
            except (RegistryError, OSError, ValueError) as err:
                log.error("model_reload_refused", version=target, error=str(err))
                return False
            previous, self._loaded = self._loaded.version, loaded
            log.info("model_swapped", version=target, previous=previous)
            return True

    # -- inference --------------------------------------------------------------------------
    def _encode(self, loaded: _Loaded, clean: Sequence[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """Token ids (with their character offsets) of texts already cleaned with ``model_text``.

        Remembered per loaded version (bounded): the classify stage counts a story's tokens when
        it arrives and predicts it a little later, and pays for one tokenisation, not two.
        """
        cache = loaded.tokens
        ids = [cache.get(t) for t in clean]
        missing = list(dict.fromkeys(t for t, i in zip(clean, ids) if i is None))
        if not missing:
            return ids  # type: ignore[return-value]
        # Never longer than the version was validated with: its manifest metrics then hold.
        limit = min(self.settings.max_length, loaded.max_length or self.settings.max_length)
        enc = loaded.tokenizer(missing, truncation=True, max_length=limit, return_offsets_mapping=True)
        fresh = dict(zip(missing, zip(enc["input_ids"], enc["offset_mapping"])))
        if len(cache) + len(fresh) > TOKEN_CACHE_SIZE:
            cache.clear()
        if len(fresh) <= TOKEN_CACHE_SIZE:
            cache.update(fresh)
        return [i if i is not None else fresh[t] for t, i in zip(clean, ids)]

    def forget_tokens(self) -> None:
        """Empty the token-id cache (benchmarks: every timed pass pays for its tokenisation)."""
        self._loaded.tokens.clear()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text costs in a batch (special tokens included, after truncation)."""
        return [len(ids) for ids, _ in self._encode(self._loaded, [model_text(t) for t in texts])] if texts else []

    def predict_probs(self, texts: Sequence[str]) -> tuple[str, dict[str, np.ndarray]]:
        """Calibrated probabilities per head, rows in input order, and the version that made them."""
        version, probs, _ = self._run(texts, None)
        return version, probs

    def _run(
        self, texts: Sequence[str], targets: Sequence[EntityTargets] | None
    ) -> tuple[str, dict[str, np.ndarray], list[list[np.ndarray | None]]]:
        """Story-level probabilities per head and, for each text's targets, the target's calibrated
        sentiment probabilities (None: the model cannot see the target; the story's stands in)."""
        loaded = self._loaded  # one reference for the whole call: a concurrent swap can't mix models
        n = len(texts)
        wanted = [list(t) for t in targets] if targets is not None else [[] for _ in range(n)]
        entity: list[list[np.ndarray | None]] = [[None] * len(t) for t in wanted]
        if n == 0:
            return (
                loaded.version,
                {t: np.zeros((0, len(v)), dtype=np.float32) for t, v in loaded.labels.items()},
                entity,
            )
        clean = [model_text(t) for t in texts]  # the network and the lexical expert read the same input
        enc = self._encode(loaded, clean)
        ids = [e[0] for e in enc]
        out = {t: np.empty((n, len(v)), dtype=np.float32) for t, v in loaded.labels.items()}
        budget = self.settings.max_batch_tokens
        if loaded.device.type == "cpu":
            budget = min(budget, self.settings.cpu_max_batch_tokens)
        batches = plan_batches([len(e) for e in ids], budget, self.settings.max_batch_size)
        workers = getattr(loaded.runner, "workers", 1)
        if workers > 1:  # ONNX Runtime: micro-batches side by side, one per worker at least
            batches = spread_batches(batches, workers)
        padded = [pad_rows(ids, b) for b in batches]
        if workers > 1:
            results = loaded.runner.map(padded)  # type: ignore[attr-defined]
        else:
            results = (loaded.runner(*p) for p in padded)
        head = loaded.entity_head
        for batch, (_, mask), logits in zip(batches, padded, results):
            states = logits.pop(ENTITY_OUTPUT, None)
            for task, lg in logits.items():
                out[task][batch] = lg
            if head is not None and states is not None and any(wanted[i] for i in batch):
                self._entities(
                    head, loaded.temperatures.get("entity", 1.0), batch, mask, states, clean, enc, wanted, entity
                )
        lexical = loaded.lexical.log_probs(clean, cleaned=True) if loaded.lexical is not None else {}
        for task, lg in out.items():
            z = mix_log_probs(lg, lexical.get(task), loaded.lexical_weights.get(task, 0.0)) / loaded.temperatures.get(
                task, 1.0
            )
            out[task] = _softmax(z)
        return loaded.version, out, entity

    @staticmethod
    def _entities(
        head: torch.nn.Linear,
        temperature: float,
        batch: Sequence[int],
        mask: np.ndarray,
        states: np.ndarray,
        clean: Sequence[str],
        enc: Sequence[tuple[list[int], list[tuple[int, int]]]],
        wanted: Sequence[Sequence[tuple[str, Sequence[str]]]],
        into: list[list[np.ndarray | None]],
    ) -> None:
        """The entity head over one micro-batch's token states: every target found in its text."""
        width = mask.shape[1]
        rows, owner, dest = [], [], []
        for r, i in enumerate(batch):
            offsets = enc[i][1]
            for k, (_, surfaces) in enumerate(wanted[i]):
                m = token_mask(offsets, find_spans(clean[i], surfaces))
                if any(m):
                    rows.append(m + [0] * (width - len(m)))
                    owner.append(r)
                    dest.append((i, k))
        if not rows:
            return
        with torch.inference_mode():
            lg = entity_logits(
                head,
                torch.from_numpy(np.ascontiguousarray(states, dtype=np.float32)),
                torch.from_numpy(mask),
                torch.tensor(rows),
                torch.tensor(owner),
            ).numpy()
        probs = _softmax(lg / temperature)
        for (i, k), p in zip(dest, probs):
            into[i][k] = p

    def predict(self, texts: Sequence[str], targets: Sequence[EntityTargets] | None = None) -> list[Prediction]:
        """One prediction per text; with ``targets`` (per text, its tickers and how each is written)
        each prediction also carries every target's own sentiment (``Prediction.entities``)."""
        version, probs, entity = self._run(texts, targets)
        labels = self._loaded.labels
        s_names, t_names = labels["sentiment"], labels["topic"]
        i_pos, i_neg = s_names.index("positive"), s_names.index("negative")
        sp, tp = probs["sentiment"], probs["topic"]
        s_arg, t_arg = sp.argmax(-1), tp.argmax(-1)
        results: list[Prediction] = []
        for k in range(len(texts)):
            srow, trow = sp[k].tolist(), tp[k].tolist()
            story_sentiment = s_names[int(s_arg[k])]
            ents = []
            for (ticker, _), p in zip(targets[k] if targets is not None else (), entity[k]):
                row = srow if p is None else p.tolist()
                ents.append(
                    EntityPrediction(
                        ticker=ticker,
                        sentiment=s_names[int(np.argmax(row))] if p is not None else story_sentiment,  # type: ignore[arg-type]
                        sentiment_probs=dict(zip(s_names, row)),
                        sentiment_score=max(-1.0, min(1.0, row[i_pos] - row[i_neg])),
                        method="entity" if p is not None else "story",
                    )
                )
            results.append(
                Prediction(
                    sentiment=story_sentiment,  # type: ignore[arg-type]
                    sentiment_probs=dict(zip(s_names, srow)),
                    sentiment_score=max(-1.0, min(1.0, srow[i_pos] - srow[i_neg])),
                    topic=t_names[int(t_arg[k])],
                    topic_probs=dict(zip(t_names, trow)),
                    model_version=version,
                    entities=tuple(ents),
                )
            )
        return results


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
