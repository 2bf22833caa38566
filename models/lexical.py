"""The lexical expert: TF-IDF word n-grams + one logistic regression per task, mixed with the network.

A linear model over word 1-2 grams is much weaker than the fine-tuned encoder alone, but it errs
on different texts: it memorises exact wording (templated wire headlines, tickers, rare words the
sub-word encoder blurs) where the network generalises. Their log-linear mixture

    log p(y | x) = (1 - w) · log softmax(network logits) + w · log p_lexical(y | x) + const

beats either one (measured in docs/MODELS.md). One vectoriser, fitted on the training texts of
every task, feeds a logistic regression per task, so a text is tokenised once for all heads.
Training costs ~20 s on 2 cores; inference ~50k texts/s, next to nothing beside the encoder.

A fitted expert is stored beside the network in a registry version, without pickle:
``lexical/vocabulary.json`` (terms in index order, vectoriser parameters, classes per task) and
``lexical/weights.safetensors`` (idf, and per task the coefficients and intercepts). Loading
rebuilds the scikit-learn vectoriser from them, so scores equal the fitted expert's exactly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.data import model_text

LEXICAL_DIR = "lexical"
_FORMAT = 1
_NGRAMS = (1, 2)
_MIN_DF = 2  # a term seen in one training text only is noise (and bloats the vocabulary)


def _vectorizer(min_df: int, vocabulary: dict[str, int] | None = None) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        ngram_range=_NGRAMS, min_df=min_df, sublinear_tf=True, dtype=np.float32, vocabulary=vocabulary
    )


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def mix_log_probs(network_logits: np.ndarray, lexical_log_probs: np.ndarray | None, weight: float) -> np.ndarray:
    """The log-linear mixture, as logits (softmax of them is the mixture); the network's alone at w=0."""
    z = np.asarray(network_logits, dtype=np.float32)
    if lexical_log_probs is None or weight <= 0.0:
        return z
    return (1.0 - weight) * _log_softmax(z) + weight * np.asarray(lexical_log_probs, dtype=np.float32)


@dataclass
class _Head:
    coef: np.ndarray  # (n_classes, n_features)
    intercept: np.ndarray  # (n_classes,)


def _fit_head(x: Any, labels: Sequence[int], n_classes: int, c: float) -> _Head:
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(labels)
    seen = np.unique(y)
    coef = np.zeros((n_classes, x.shape[1]), dtype=np.float32)
    intercept = np.full(n_classes, -30.0, dtype=np.float32)  # classes never seen get no evidence
    if len(seen) == 1:  # nothing to separate: that class everywhere
        intercept[seen[0]] = 0.0
        return _Head(coef, intercept)
    clf = LogisticRegression(C=c, max_iter=300).fit(x, y)
    w, b = clf.coef_, clf.intercept_
    if len(seen) == 2:  # sklearn keeps one row for two classes: p(second) = sigmoid(w·x + b)
        w, b = np.vstack([-w / 2, w / 2]), np.array([-b[0] / 2, b[0] / 2])
    coef[seen], intercept[seen] = w, b
    intercept[np.setdiff1d(np.arange(n_classes), seen)] = float(b.min()) - 10.0
    return _Head(coef, intercept)


@dataclass
class LexicalExpert:
    """A TF-IDF vectoriser shared by every task, and a linear head per task."""

    vectorizer: Any
    heads: dict[str, _Head]

    @classmethod
    def fit(
        cls, data: Mapping[str, tuple[Sequence[str], Sequence[int]]], n_classes: Mapping[str, int], c: float = 10.0
    ) -> LexicalExpert:
        """``data[task] = (raw texts, label ids)``; texts are cleaned with ``model_text`` as the network's are."""
        clean = {task: [model_text(t) for t in texts] for task, (texts, _) in data.items()}
        corpus = [t for texts in clean.values() for t in texts]
        if not corpus:
            raise ValueError("lexical expert: no training texts")
        vectorizer = _vectorizer(_MIN_DF if len(corpus) >= 1000 else 1)  # tiny sets (tests) keep every term
        try:
            vectorizer.fit(corpus)
        except ValueError as err:  # sklearn: "empty vocabulary"
            raise ValueError(f"lexical expert: no usable words in the training texts ({err})") from None
        heads = {
            task: _fit_head(vectorizer.transform(clean[task]), labels, n_classes[task], c)
            for task, (_, labels) in data.items()
        }
        return cls(vectorizer, heads)

    def log_probs(self, texts: Sequence[str], *, cleaned: bool = False) -> dict[str, np.ndarray]:
        """Per task, ``(len(texts), n_classes)`` float32 log-probabilities.

        ``cleaned=True``: the texts already went through ``model_text`` (the engine cleans once for
        the network and the expert).
        """
        if not texts:
            return {t: np.zeros((0, len(h.intercept)), dtype=np.float32) for t, h in self.heads.items()}
        x = self.vectorizer.transform(list(texts) if cleaned else [model_text(t) for t in texts])
        return {
            t: _log_softmax(np.asarray(x @ h.coef.T, dtype=np.float32) + h.intercept) for t, h in self.heads.items()
        }

    # -- storage ---------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        directory.mkdir(parents=True, exist_ok=True)
        terms = [""] * len(self.vectorizer.vocabulary_)
        for term, index in self.vectorizer.vocabulary_.items():
            terms[index] = term
        tensors = {"idf": np.asarray(self.vectorizer.idf_, dtype=np.float32)}
        for task, head in self.heads.items():
            tensors[f"{task}.coef"], tensors[f"{task}.intercept"] = head.coef, head.intercept
        save_file(tensors, str(directory / "weights.safetensors"))
        meta = {
            "format": _FORMAT,
            "ngram_range": list(_NGRAMS),
            "min_df": self.vectorizer.min_df,
            "tasks": sorted(self.heads),
            "terms": terms,
        }
        (directory / "vocabulary.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> LexicalExpert:
        from safetensors.numpy import load_file

        meta = json.loads((directory / "vocabulary.json").read_text(encoding="utf-8"))
        if meta.get("format") != _FORMAT or tuple(meta.get("ngram_range", ())) != _NGRAMS:
            raise ValueError(f"lexical expert {directory}: unsupported format {meta.get('format')!r}")
        tensors = load_file(str(directory / "weights.safetensors"))
        terms = meta["terms"]
        vectorizer = _vectorizer(int(meta["min_df"]), vocabulary={t: i for i, t in enumerate(terms)})
        vectorizer.idf_ = tensors["idf"]
        heads = {}
        for task in meta["tasks"]:
            head = _Head(tensors[f"{task}.coef"], tensors[f"{task}.intercept"])
            if head.coef.shape[1] != len(terms) or head.coef.shape[0] != head.intercept.shape[0]:
                raise ValueError(f"lexical expert {directory}: {task} weights do not match the vocabulary")
            heads[task] = head
        return cls(vectorizer, heads)
