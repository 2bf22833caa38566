"""Training phases after the loop: what is served, its calibration, and its validation report.

:func:`fit_lexical` fits the TF-IDF expert and mixes it into the network's logits as the engine
will (weight chosen per head); :func:`calibrate` fits one temperature per head on validation NLL;
:func:`evaluate` scores what the engine serves (the mixture) on every validation set and writes the
entity head's report next to the story-sentiment baseline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import structlog
import torch

from models.calibration import expected_calibration_error, fit_temperature, nll
from models.data import Example, Task, labels_for
from models.entities import entity_report
from models.evaluation import classification_metrics, compute_entity_logits
from models.lexical import LexicalExpert, mix_log_probs
from models.training_config import RunConfig, TrainProfile
from models.training_data import EntityData, TaskData, TrainingData, selection_score, valid_sets
from models.training_loop import FitResult, Logits
from models.training_model import Network

log = structlog.get_logger(__name__)


# -- the lexical expert ----------------------------------------------------------------------
@dataclass
class LexicalMix:
    """The lexical expert and what it changes in the served logits."""

    expert: LexicalExpert | None  # None: the profile serves the network alone
    info: dict[str, Any]  # the manifest's ``lexical`` entry, plus "valid": the expert's own logits per task and set
    served: Logits  # per story head and validation set: the logits the engine serves (the mixture)


def fit_lexical(data: TrainingData, prof: TrainProfile, network_logits: Logits) -> LexicalMix:
    """Fit the TF-IDF expert on the training rows (news and fresh labels included), pick each head's
    weight (``prof.lexical_grid``, else ``prof.lexical_weight``) by the selection score, and mix it
    into every validation set's logits as the engine will."""

    tasks = data.tasks
    grid = sorted(set(prof.lexical_grid)) if prof.lexical_grid else [prof.lexical_weight]
    if max(grid) <= 0.0:
        return LexicalMix(None, {"weight": 0.0}, network_logits)
    started = time.time()
    expert = LexicalExpert.fit(
        {t: ([r.text for r in td.train], [r.label for r in td.train]) for t, td in tasks.items()},
        {t: len(labels_for(t)) for t in tasks},
    )
    served: Logits = {}
    valid: Logits = {}
    weights: dict[str, float] = {}
    scores: dict[str, dict[str, float]] = {}
    for task, td in tasks.items():
        rows_by_set = {"tweets": td.valid, **td.more_valid}
        lex = {name: expert.log_probs([r.text for r in rows])[task] for name, rows in rows_by_set.items()}
        valid[task] = {name: torch.from_numpy(v) for name, v in lex.items()}
        selection = valid_sets(td, prof)

        def score(
            w: float, task: Task = task, selection: dict[str, list[Example]] = selection, lex: dict[str, Any] = lex
        ) -> float:
            f1 = {
                n: classification_metrics(
                    task,
                    [r.label for r in rows],
                    mix_log_probs(network_logits[task][n].numpy(), lex[n], w).argmax(-1).tolist(),
                )["macro_f1"]
                for n, rows in selection.items()
            }
            return selection_score(f1)

        scores[task] = {str(w): round(score(w), 4) for w in grid}
        weights[task] = max(grid, key=lambda w: (scores[task][str(w)], -w))
        served[task] = {
            name: torch.from_numpy(mix_log_probs(network_logits[task][name].numpy(), lex[name], weights[task]))
            for name in rows_by_set
        }
    seconds = round(time.time() - started, 1)
    log.info("lexical_expert_fitted", vocabulary=len(expert.vectorizer.vocabulary_), seconds=seconds, weights=weights)
    info = {
        "weight": weights["sentiment"],
        "weights": weights,
        "grid_selection_scores": scores,
        "features": "tf-idf word 1-2 grams, one vocabulary for all tasks",
        "classifier": "logistic regression per task (C=10)",
        "vocabulary": len(expert.vectorizer.vocabulary_),
        "fit_seconds": seconds,
        "valid": valid,
    }
    return LexicalMix(expert, info, served)


# -- calibration -----------------------------------------------------------------------------
@dataclass
class Calibration:
    """One temperature per head (``models/calibration.py``)."""

    temperatures: dict[str, float]  # per story head, as fitted (the calibrated metrics use these)
    entity: float | None  # the entity head's, rounded (None: no entity head)

    def rounded(self) -> dict[str, float]:
        """What the manifest and the model's config carry: every head's temperature to 4 decimals."""
        out = {task: round(t, 4) for task, t in self.temperatures.items()}
        if self.entity is not None:
            out["entity"] = self.entity
        return out


def calibrate(
    data: TrainingData, prof: TrainProfile, served: Logits, entity_logits: torch.Tensor | None
) -> Calibration:
    """Each story head's temperature on its pooled selection sets (tweets, and news when selected
    on) of the served logits; the entity head's on its SEntFiN validation targets."""
    temperatures: dict[str, float] = {
        task: fit_temperature(*_selection_pool(td, prof, served[task])) for task, td in data.tasks.items()
    }
    entity = None
    if data.entities is not None and entity_logits is not None:
        y = torch.tensor([t.label for e in data.entities.valid for t in e.targets])
        entity = round(fit_temperature(entity_logits, y), 4)
    return Calibration(temperatures, entity)


def _selection_pool(
    td: TaskData, prof: TrainProfile, logits: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits and labels of a head's selection sets, concatenated (what its temperature is fitted on)."""
    rows_by_set = {"tweets": td.valid, **td.more_valid}
    selection = list(valid_sets(td, prof))
    return (
        torch.cat([logits[n] for n in selection]),
        torch.tensor([r.label for n in selection for r in rows_by_set[n]]),
    )


# -- the validation report -------------------------------------------------------------------
@dataclass
class Evaluation:
    """The manifest's ``metrics`` and ``entity`` sections."""

    metrics: dict[str, Any]
    entity: dict[str, Any]


def evaluate(
    run: RunConfig,
    data: TrainingData,
    net: Network,
    fitted: FitResult,
    lexical: LexicalMix,
    calibration: Calibration,
) -> Evaluation:
    """Metrics of what the engine serves (the mixture) on every validation set of each story head,
    uncalibrated and calibrated, and the entity head's report (``{"head": False}`` without one)."""
    prof = run.profile
    metrics: dict[str, Any] = {
        task: _task_metrics(task, td, prof, fitted.logits[task], lexical, calibration.temperatures[task])
        for task, td in data.tasks.items()
    }
    entity_section: dict[str, Any] = {"head": False}
    if data.entities is not None and fitted.entity_logits is not None and calibration.entity is not None:
        entity_section = _entity_section(data.entities, fitted.entity_logits, calibration.entity, run, net, lexical)
    return Evaluation(metrics, entity_section)


def _task_metrics(
    task: Task,
    td: TaskData,
    prof: TrainProfile,
    network: dict[str, torch.Tensor],
    lexical: LexicalMix,
    t: float,
) -> dict[str, Any]:
    """One story head's ``metrics`` entry: ``network`` is its network logits per validation set and
    ``t`` its temperature."""
    served = lexical.served[task]
    rows_by_set = {"tweets": td.valid, **td.more_valid}
    selection = list(valid_sets(td, prof))
    pool_lg, pool_y = _selection_pool(td, prof, served)
    keep = [i for i, k in enumerate(td.dedup_mask) if k]
    per_set: dict[str, Any] = {}
    for name, rows in rows_by_set.items():
        y = torch.tensor([r.label for r in rows])
        lg = served[name]
        pred = lg.argmax(-1).tolist()
        per_set[name] = classification_metrics(task, y.tolist(), pred)
        per_set[name]["ece"] = {
            "uncalibrated": round(expected_calibration_error(lg, y), 4),
            "calibrated": round(expected_calibration_error(lg, y, t), 4),
        }
        per_set[name]["selection"] = name in selection
        if lexical.expert is not None:  # each part alone, to show what the mixture adds
            per_set[name]["components"] = {
                part: {
                    k: v
                    for k, v in classification_metrics(task, y.tolist(), z.argmax(-1).tolist()).items()
                    if k in ("accuracy", "macro_f1")
                }
                for part, z in (
                    ("network", network[name]),
                    ("lexical", lexical.info["valid"][task][name]),
                )
            }
        if name == "tweets":
            per_set["tweets_dedup"] = classification_metrics(
                task, [int(y[i].item()) for i in keep], [pred[i] for i in keep]
            )
    full = per_set["tweets"]
    metrics: dict[str, Any] = {
        # top-level accuracy/macro_f1 = full tweet validation (what the retrain job compares)
        "accuracy": full["accuracy"],
        "macro_f1": full["macro_f1"],
        "valid": full,
        "valid_dedup": per_set["tweets_dedup"],
        "sets": per_set,  # every fixed validation set of the task, by name (models/domains.py)
        "selection_score": round(selection_score({n: per_set[n]["macro_f1"] for n in selection}), 4),
        "nll": {
            "uncalibrated": round(nll(pool_lg, pool_y), 4),
            "calibrated": round(nll(pool_lg, pool_y, t), 4),
            "on": selection,
        },
    }
    if lexical.expert is not None:
        metrics["components"] = full["components"]
    if prof.valid_limit is not None:
        metrics["valid_subset"] = prof.valid_limit
    return metrics


def _entity_section(
    ents: EntityData,
    logits: torch.Tensor,
    temperature: float,
    run: RunConfig,
    net: Network,
    lexical: LexicalMix,
) -> dict[str, Any]:
    """The manifest's ``entity`` section: the head's temperature and its report on the SEntFiN
    validation split (disjoint by headline), next to the story-sentiment baseline as served."""

    _, story = compute_entity_logits(
        net.model,
        net.tokenizer,
        ents.valid,
        max_length=run.profile.max_length,
        device=run.device,
        autocast_dtype=run.amp,
        max_batch_tokens=run.engine_budget,
    )
    weight = float((lexical.info.get("weights") or {}).get("sentiment", 0.0))
    if lexical.expert is not None and weight > 0:
        lex = lexical.expert.log_probs([e.text for e in ents.valid])["sentiment"]
        story = torch.from_numpy(mix_log_probs(story.numpy(), lex, weight))
    pred = logits.argmax(-1).tolist()
    per_example, k = [], 0
    for e in ents.valid:
        per_example.append(pred[k : k + len(e.targets)])
        k += len(e.targets)
    report = entity_report(ents.valid, per_example, story.argmax(-1).tolist())
    log.info(
        "entity_head_evaluated",
        macro_f1=report["all"]["macro_f1"],
        disagree_accuracy=report["disagree"].get("accuracy"),
        disagree_baseline=(report["disagree"].get("baseline_story") or {}).get("accuracy"),
    )
    return {
        "head": True,
        "method": "span-pooled target-aware sentiment (models.network.entity_logits)",
        "labels": list(labels_for("sentiment")),
        "temperature": temperature,
        "train_rows": len(ents.train),
        "valid": {"sentfin": report},
        "valid_split": "SEntFiN headlines, 1 in 5 by a hash of the normalised headline (models.domains)",
    }
