"""Multi-task fine-tuning of the shared encoder, calibration, and publishing into the registry.

Each head trains on its own dataset; batches of the heads are interleaved at random in one loop
(one optimizer, one schedule). Batches are length-bucketed (sorted within large shuffled chunks) to
cut padding, which matters a lot on CPU. AdamW with layer-wise learning-rate decay, linear warmup
then linear decay, label smoothing, early stopping on validation macro-F1, then one temperature per
head fitted on validation NLL. The result is published as a new immutable registry version; the
first version is promoted automatically.

:func:`train` runs the phases in order, each in its own module, handing small dataclasses on:

==============================  ===========================================================
``models.training_config``      profiles, device; ``configure_run`` → ``RunConfig``
``models.training_data``        ``prepare_data``: rows per head, capped, de-duplicated,
                                fresh labels added → ``TrainingData``
``models.training_model``       ``build_network`` → ``Network``; ``encode_rows`` (token ids,
                                frozen-layer cache); the optimiser
``models.training_loop``        ``fit``: epochs, early stopping, best weights → ``FitResult``
``models.training_eval``        ``fit_lexical`` → ``LexicalMix``; ``calibrate`` →
                                ``Calibration``; ``evaluate`` → ``Evaluation`` (metrics, entity)
``models.training_export``      int8 quantisation check; ONNX export (while publishing)
``models.publish``              ``manifest_body``; ``publish`` (+ promote) → :class:`TrainResult`
==============================  ===========================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from models.data import DATA_DIR, LabelledExample
from models.publish import TrainResult, manifest_body, publish
from models.training_config import Device, TrainProfile, configure_run
from models.training_data import prepare_data
from models.training_eval import calibrate, evaluate, fit_lexical
from models.training_export import check_quantization
from models.training_loop import fit
from models.training_model import build_network, encode_rows
from models.training_progress import ProgressReporter, TrainingProgress


def train(
    settings: Any,
    *,
    profile: str | TrainProfile = "default",
    epochs: int | None = None,
    device: Device | str = "auto",
    extra_examples: Iterable[LabelledExample | tuple[str, str, str | int]] = (),
    promote: bool | None = None,
    progress: bool = True,
    data_dir: Path = DATA_DIR,
    seed: int | None = None,
    on_progress: Callable[[TrainingProgress], None] | None = None,
) -> TrainResult:
    """Fine-tune, calibrate, publish a new registry version; returns it.

    ``extra_examples``: fresh labels as ``(task, text, label)`` (label by name or dataset id),
    added to the task's training rows every epoch. ``promote``: None = promote only when the
    registry has no current version yet; True/False = always/never. ``on_progress``: told the
    phase and step as the run goes (:mod:`models.training_progress`).
    """
    run = configure_run(settings, profile, epochs, device, seed)  # sets torch's threads and seed
    report = ProgressReporter(run.profile.name, on_progress)
    report.phase("data")
    data = prepare_data(run.profile, run.seed, extra_examples, data_dir)
    net = build_network(run, entity=data.entities is not None)
    report.phase("encode")
    encode_rows(data, net, run)
    fitted = fit(run, data, net, progress=progress, report=report)
    report.phase("finish")
    lexical = fit_lexical(data, run.profile, fitted.logits)
    calibration = calibrate(data, run.profile, lexical.served, fitted.entity_logits)
    evaluation = evaluate(run, data, net, fitted, lexical, calibration)
    quantization = check_quantization(
        net.model, net.tokenizer, data.tasks, run.profile, {t: v["tweets"] for t, v in fitted.logits.items()}
    )
    body = manifest_body(run, data, net, fitted, lexical, calibration, evaluation, quantization)
    result = publish(settings, body, run, data, net, lexical, promote)
    report.phase("done")
    return result
