"""``finsent`` subcommands contributed by the models package: train, eval, bench, models.

torch/transformers are imported inside the handlers so ``finsent --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

from models import onnx_backend
from models.data import DataError, Example, labels_for, read_labelled_csv
from models.domains import SET_INFO, validation_sets
from models.entities import EntityExample, entity_report, load_entity_jsonl, load_sentfin_entities
from models.registry import Registry, RegistryError
from models.runs import RunReports, summary_line
from monitor.app.backtest import BacktestError, backtest, read_stories_file, read_stories_topic
from monitor.app.cliargs import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_config_option, settings_from_args


def _settings(args: argparse.Namespace) -> Any:
    # Before torch loads OpenMP: idle threads sleep instead of spinning, which keeps shared or
    # oversubscribed cores from collapsing (read once, when the OpenMP runtime starts).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    return settings_from_args(args)


def _err(msg: str) -> None:
    print(f"finsent: {msg}", file=sys.stderr)


# -- train -----------------------------------------------------------------------------------
def _cmd_train(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from models.training import train  # heavy: imports torch

    settings.ensure_dirs()
    result = train(
        settings, profile=args.profile, epochs=args.epochs, device=args.device, promote=True if args.promote else None
    )
    m = result.manifest
    for task in ("sentiment", "topic"):
        full, dedup = m["metrics"][task]["valid"], m["metrics"][task]["valid_dedup"]
        print(
            f"{task:<9} valid acc {full['accuracy']:.4f} macro-F1 {full['macro_f1']:.4f} (n={full['n']})  "
            f"dedup acc {dedup['accuracy']:.4f} macro-F1 {dedup['macro_f1']:.4f} (n={dedup['n']})"
        )
    print(
        f"version {result.version}{' (promoted)' if result.promoted else ''}  "
        f"duration {m['training']['duration_s']:.0f}s on {m['training']['device']}"
    )
    print(
        json.dumps(
            {
                "version": result.version,
                "promoted": result.promoted,
                "duration_s": m["training"]["duration_s"],
                "metrics": {
                    t: {k: m["metrics"][t][k]["accuracy"] for k in ("valid", "valid_dedup")}
                    for t in ("sentiment", "topic")
                },
            }
        )
    )
    return EXIT_OK


# -- eval ------------------------------------------------------------------------------------
def _format_table(report: dict[str, Any]) -> str:
    lines = [
        f"task {report['task']}  version {report['version']}  data {report['data']}  n={report['n']}",
        f"accuracy {report['accuracy']:.4f}   macro-F1 {report['macro_f1']:.4f}   ECE {report['ece']:.4f}",
        "",
        f"{'class':<30} {'F1':>7} {'support':>8}",
    ]
    for name, f1 in report["per_class"].items():
        lines.append(f"{name:<30} {f1:>7.4f} {report['support'][name]:>8}")
    return "\n".join(lines)


def _entity_table(name: str, version: str, report: dict[str, Any]) -> str:
    lines = [
        f"task entity  version {version}  data {name}  texts={report['texts']}",
        "",
        f"{'subset':<34} {'n':>6} {'accuracy':>9} {'macro-F1':>9}   {'story baseline acc / F1':>24}",
    ]
    labels = {
        "all": "every entity",
        "multi": "texts with several entities",
        "disagree": "texts whose entities disagree",
    }
    for key, label in labels.items():
        r = report[key]
        if not r.get("n"):
            lines.append(f"{label:<34} {0:>6}")
            continue
        b = r["baseline_story"]
        lines.append(
            f"{label:<34} {r['n']:>6} {r['accuracy']:>9.4f} {r['macro_f1']:>9.4f}   "
            f"{b['accuracy']:>11.4f} / {b['macro_f1']:.4f}"
        )
    return "\n".join(lines)


def _cmd_eval_entity(args: argparse.Namespace) -> int:
    """``finsent eval --task entity``: per-entity sentiment against the story-sentiment baseline."""

    try:
        sets: dict[str, list[EntityExample]] = (
            {args.data: load_entity_jsonl(Path(args.data))}
            if args.data
            else {"sentfin_valid": load_sentfin_entities("valid")}
        )
    except DataError as err:
        _err(str(err))
        return EXIT_USAGE
    settings = _settings(args)
    from models.engine import InferenceEngine  # heavy: imports torch and transformers

    try:
        engine = InferenceEngine.from_settings(settings, version=args.version, device=args.device)
    except RegistryError as err:
        _err(str(err))
        return EXIT_FAILURE
    labels = list(engine.manifest["tasks"]["sentiment"])
    reports: dict[str, Any] = {}
    for name, rows in sets.items():
        if args.limit and args.limit < len(rows):
            rows = random.Random(0).sample(rows, args.limit)
        targets = [
            [(str(k), [*t.surfaces, *(e.text[a:b] for a, b in t.spans)]) for k, t in enumerate(e.targets)] for e in rows
        ]
        preds = engine.predict([e.text for e in rows], targets)
        predicted = [[labels.index(x.sentiment) for x in p.entities] for p in preds]
        report = entity_report(rows, predicted, [labels.index(p.sentiment) for p in preds])
        report["read_by_entity_head"] = sum(x.method == "entity" for p in preds for x in p.entities)
        report["version"] = engine.version
        reports[name] = report
        print(_entity_table(name, engine.version, report))
        print()
    print(json.dumps({"task": "entity", "version": engine.version, "sets": reports}))
    return EXIT_OK


def _cmd_eval(args: argparse.Namespace) -> int:

    if args.task == "entity":
        return _cmd_eval_entity(args)

    sets: dict[str, list[Example]] = {}
    try:
        if args.data:
            sets[args.data] = read_labelled_csv(Path(args.data), args.task)
        else:  # every fixed validation set of the task, tweets and news (models/domains.py)
            sets = validation_sets(args.task)
    except DataError as err:
        _err(str(err))
        return EXIT_USAGE
    settings = _settings(args)
    import torch

    from models.calibration import ece_from_probs  # heavy: imports torch
    from models.engine import InferenceEngine  # heavy: imports torch and transformers
    from models.evaluation import classification_metrics  # heavy: imports torch and scikit-learn

    try:
        engine = InferenceEngine.from_settings(settings, version=args.version, device=args.device)
    except RegistryError as err:
        _err(str(err))
        return EXIT_FAILURE
    names = list(labels_for(args.task))
    reports: dict[str, dict[str, Any]] = {}
    for name, rows in sets.items():
        if args.limit and args.limit < len(rows):  # a fixed random sample: some files are sorted by label
            rows = random.Random(0).sample(rows, args.limit)
        _, probs = engine.predict_probs([r.text for r in rows])
        p = torch.from_numpy(probs[args.task])
        y_true = [r.label for r in rows]
        report = classification_metrics(args.task, y_true, p.argmax(-1).tolist())
        report["ece"] = round(ece_from_probs(p, torch.tensor(y_true)), 4)  # of the served, calibrated probabilities
        report["support"] = {n: sum(1 for y in y_true if y == i) for i, n in enumerate(names)}
        report["version"] = engine.version
        report["data"] = name
        if name in SET_INFO and not args.data:
            report["domain"] = SET_INFO[name][0]
        reports[name] = report
        print(_format_table(report))
        print()
    if args.data:
        print(json.dumps(reports[args.data]))
    else:
        print(json.dumps({"task": args.task, "version": engine.version, "sets": reports}))
    return EXIT_OK


# -- bench -----------------------------------------------------------------------------------
def _cmd_bench(args: argparse.Namespace) -> int:
    settings = _settings(args)
    import torch

    from models.bench import read_texts, run_bench  # heavy: imports torch

    texts = labels = None
    if args.texts:
        try:
            texts, labels = read_texts(Path(args.texts))
        except (OSError, ValueError) as err:
            _err(str(err))
            return EXIT_USAGE
    if args.device == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    elif args.device == "cuda" and not torch.cuda.is_available():
        _err("--device cuda: CUDA is not available")
        return EXIT_USAGE
    else:
        devices = [args.device]
    try:
        report = run_bench(
            settings,
            texts=texts,
            labels=labels,
            devices=devices,
            n=args.n,
            version=args.version,
            request_size=args.request_size,
            repeat=args.repeat,
        )
    except RegistryError as err:
        _err(str(err))
        return EXIT_FAILURE
    for dev, r in report["by_device"].items():
        e, b = r["engine"], r["baseline"]
        print(f"[{dev}] n={report['n']} version={report['version']}")
        for c in r["candidates"]:
            if not c.get("measured"):
                print(f"  -- {c['candidate']}")
                continue
            mark = "*" if c is e else " "
            print(
                f" {mark}{c['backend']:>5} {c['precision']:<8}{c['texts_per_s']:>9.1f} texts/s  p50 {c['p50_ms']:>8.1f} ms"
                f"  p99 {c['p99_ms']:>8.1f} ms  {c['ratio']:.2f}x  acc={c['accuracy']}  check={c['accuracy_check_ok']}"
            )
        print(
            f"  pipeline {b['texts_per_s']:>9.1f} texts/s  p50 {b['p50_ms']:>8.1f} ms  p99 {b['p99_ms']:>8.1f} ms"
            f"  (batch_size {b['batch_size']}, acc={b['accuracy']})"
        )
        print(f"  served (*) {e['backend']} {e['precision']}: ratio {r['ratio']:.2f}x  agreement {r['agreement']:.4f}")
        m = r["entity"]
        print(
            f"  stories (realistic mix: {m['stories']}, {100 * m['multi_ticker_share']:.1f} % multi-ticker): "
            f"{m['with_entities_stories_per_s']:.1f}/s with per-ticker sentiment, "
            f"{m['story_only_stories_per_s']:.1f}/s story only = {m['ratio']:.2f}x"
        )
    if args.json:
        print(json.dumps(report))
    return EXIT_OK


# -- models list/show/promote/rollback -------------------------------------------------------
def _registry(args: argparse.Namespace):

    return Registry.from_settings(_settings(args))


def _summary(manifest: dict[str, Any]) -> str:
    m = manifest.get("metrics", {})
    try:
        s, t = m["sentiment"]["valid"], m["topic"]["valid"]
        return (
            f"sent acc {s['accuracy']:.3f} F1 {s['macro_f1']:.3f}  topic acc {t['accuracy']:.3f}  "
            f"profile {manifest['training']['profile']}"
        )
    except (KeyError, TypeError):
        return "(no metrics)"


def _cmd_models_ensure(args: argparse.Namespace) -> int:
    """Serve-ready registry: keep a valid current version, else train one with ``--profile``."""

    reg = _registry(args)
    current = reg.current()
    if current is not None:
        try:
            reg.verify(current)
            print(f"model {current} is current")
            return EXIT_OK
        except RegistryError as err:
            _err(f"current version {current} is unusable ({err}); training a new one")
    eta = {"quick": "a few minutes on 2 idle CPU cores", "tiny": "about a minute"}.get(args.profile, "a while")
    print(
        f"no usable model in {reg.versions_dir}: training the '{args.profile}' profile, {eta}, once "
        f"(`finsent train` trains the full model)",
        file=sys.stderr,
    )
    args.epochs, args.device, args.promote = None, "auto", True
    return _cmd_train(args)


def _cmd_models_list(args: argparse.Namespace) -> int:

    reg = _registry(args)
    current = reg.current()
    rows = []

    runs = RunReports(reg).all()
    by_version = {r["challenger"]: r for r in runs if r.get("challenger")}
    for v in reg.versions():
        try:
            manifest = reg.read_manifest(v)
            status, summary = "ok", _summary(manifest)
        except RegistryError as err:
            manifest, status, summary = {}, "INCOMPLETE", str(err)
        run = by_version.get(v)
        rows.append(
            {
                "version": v,
                "current": v == current,
                "status": status,
                "created_at": manifest.get("created_at"),
                "gate": {"run_id": run["run_id"], "result": run["result"], "reason": run.get("reason")}
                if run
                else None,
            }
        )
        gate = f"  gate: {run['result']}" if run else ""
        print(f"{'*' if v == current else ' '} {v}  {status:<10} {summary}{gate}")
    if not rows:
        print(f"no model versions in {reg.versions_dir}")
    if runs:
        print(f"retrain runs (last {min(len(runs), args.runs)} of {len(runs)}; `finsent models show V` for a report):")
        for run in runs[-args.runs :]:
            print(f"  {summary_line(run)}")
    if args.json:
        print(
            json.dumps(
                {
                    "current": current,
                    "versions": rows,
                    "runs": [
                        {k: r.get(k) for k in ("run_id", "result", "reason", "challenger", "champion")}
                        for r in runs[-args.runs :]
                    ],
                }
            )
        )
    return EXIT_OK


def _report_table(report: dict[str, Any]) -> str:
    """The gate's evidence: champion and challenger side by side, then the decision."""
    lines = [
        f"retrain run {report['run_id']}: {report['result']} -- {report.get('reason', '')}",
        f"  {'data':<28} {'metric':<9} {'champion':>9} {'challenger':>10}",
    ]
    for name, e in (report.get("fixed") or {}).items():
        for metric in ("accuracy", "macro_f1"):
            old = (e.get("champion") or {}).get(metric)
            lines.append(
                f"  {'fixed:' + name + ' (n=' + str(e['n']) + ')':<28} {metric:<9} "
                f"{'-' if old is None else f'{old:.4f}':>9} {e['challenger'][metric]:>10.4f}"
            )
    hold = report.get("holdout") or {}
    if hold:
        old = (hold.get("champion") or {}).get("accuracy")
        lines.append(
            f"  {'held-out fresh (n=' + str(hold.get('n', 0)) + ')':<28} {'accuracy':<9} "
            f"{'-' if old is None else f'{old:.4f}':>9} {hold['challenger']['accuracy']:>10.4f}"
        )
    return "\n".join(lines)


def _cmd_models_show(args: argparse.Namespace) -> int:

    reg = _registry(args)
    try:
        version = reg.resolve(args.version)
        manifest = reg.verify(version)
    except RegistryError as err:
        _err(str(err))
        return EXIT_FAILURE

    report = RunReports(reg).for_version(version)
    if report is not None:
        print(_report_table(report), file=sys.stderr)
        manifest = {**manifest, "retrain_report": report}
    print(json.dumps(manifest, indent=2))
    return EXIT_OK


def _cmd_models_promote(args: argparse.Namespace) -> int:

    reg = _registry(args)
    try:
        reg.promote(args.version)
    except RegistryError as err:
        _err(f"refusing to promote: {err}")
        return EXIT_FAILURE
    print(f"current -> {args.version}")
    return EXIT_OK


def _cmd_models_rollback(args: argparse.Namespace) -> int:

    reg = _registry(args)
    try:
        version = reg.rollback()
    except RegistryError as err:
        _err(str(err))
        return EXIT_FAILURE
    print(f"current -> {version}")
    return EXIT_OK


def _when(value: str):
    from datetime import datetime, timezone

    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {value!r}") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _cmd_models_backtest(args: argparse.Namespace) -> int:

    settings = _settings(args)
    from models.engine import InferenceEngine  # heavy: imports torch and transformers

    try:
        stories = read_stories_file(Path(args.file)) if args.file else read_stories_topic(settings)
        champion_version = Registry.from_settings(settings).resolve(None)
        candidate = InferenceEngine.from_settings(settings, version=args.version)
        champion = InferenceEngine.from_settings(settings, version=champion_version)
        rules = settings.alerts.load_rules()
    except (BacktestError, RegistryError, OSError, ValueError) as err:
        _err(str(err))
        return EXIT_FAILURE
    report = backtest(settings, candidate, champion, stories, getattr(args, "from"), args.to, rules)
    m = report["models"]
    print(
        f"backtest {report['stories']} stories [{report['from'] or '-'} .. {report['to'] or '-'}): "
        f"candidate {m['candidate']['version']} vs champion {m['champion']['version']}"
    )
    print(
        f"  sentiment agreement {report['agreement']}; mix champion {m['champion']['sentiment_mix']} "
        f"candidate {m['candidate']['sentiment_mix']}"
    )
    t = report["trends"]
    print(
        f"  trend mean_score over {t['windows_compared']} windows: mean |diff| {t['mean_abs_diff']} "
        f"max {t['max_abs_diff']}"
    )
    for rule, a in report["alerts"].items():
        print(
            f"  rule {rule}: fired {a['champion']} -> {a['candidate']}  gained {len(a['gained'])} lost {len(a['lost'])}"
        )
    print(json.dumps(report))
    return EXIT_OK


def _cmd_models_export(args: argparse.Namespace) -> int:
    """Add ONNX Runtime files (fp32 + int8) and their accuracy check to an existing version."""

    reg = _registry(args)
    try:
        version = reg.resolve(args.version)
        section = onnx_backend.export_version(reg, version)
    except RegistryError as err:
        _err(str(err))
        return EXIT_FAILURE
    if not section.get("exported"):
        _err(f"{version}: ONNX export failed ({section.get('error')}); the version keeps serving with torch")
        return EXIT_FAILURE
    for variant, entry in section["variants"].items():
        accs = "  ".join(
            f"{t} {entry[t]['accuracy']:.4f} ({-entry[t]['loss_pt']:+.2f} pt)"
            for t in ("sentiment", "topic")
            if t in entry
        )
        print(f"{variant:<5} {'ok' if entry.get('ok') else 'rejected':<8} {accs or entry.get('reason', '')}")
    print(json.dumps({"version": version, "onnx": section}))
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the ``finsent`` parser."""

    p = sub.add_parser("train", help="fine-tune the classifier and publish a new registry version")
    add_config_option(p)
    p.add_argument("--epochs", type=int, default=None, help="override the profile's epoch count")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument(
        "--profile",
        choices=["default", "tweets", "quick", "tiny"],
        default="default",
        help="default: the real model (<=15 min on 2 cores); quick: ~2-3 min demo; tiny: tests",
    )
    p.add_argument("--promote", action="store_true", help="make the new version current (the first one always is)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "eval",
        help="accuracy / macro-F1 / ECE of a model version on a labelled CSV (text,label), "
        "or on every fixed validation set (tweets and news) without --data; --task entity: "
        "per-entity sentiment on a JSONL file (docs/MODELS.md) or the SEntFiN validation split",
    )
    add_config_option(p)
    p.add_argument("--task", choices=["sentiment", "topic", "entity"], required=True)
    p.add_argument(
        "--data",
        default=None,
        metavar="FILE",
        help="CSV with columns text,label; for --task entity a JSONL file, one text a line with its "
        "entities (default: the task's fixed validation sets)",
    )
    p.add_argument("--version", default=None, help="registry version (default: current)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    p.add_argument("--limit", type=int, default=None, metavar="N", help="a fixed random sample of N rows of each set")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("bench", help="engine vs transformers pipeline: texts/s and batch latency")
    add_config_option(p)
    p.add_argument(
        "--texts",
        metavar="FILE",
        help="CSV with a text column, or one text per line (default: the sentiment validation set)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON on the last line")
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CPU, then CUDA too when present"
    )
    p.add_argument("--n", type=int, default=None, help="number of texts (truncate or cycle)")
    p.add_argument("--version", default=None)
    p.add_argument("--request-size", type=int, default=256, help="texts per engine.predict call")
    p.add_argument("--repeat", type=int, default=3, help="alternating rounds; best of each side is reported")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("models", help="model registry: list, show, promote, rollback, backtest, export, ensure")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    q = msub.add_parser("list", help="versions, newest last; * marks current; then the last retrain runs")
    add_config_option(q)
    q.add_argument("--json", action="store_true")
    q.add_argument("--runs", type=int, default=10, help="how many retrain runs to list")
    q.set_defaults(func=_cmd_models_list)
    q = msub.add_parser("show", help="a version's manifest (verified), with its retrain run report")
    add_config_option(q)
    q.add_argument("version", nargs="?", default="current")
    q.set_defaults(func=_cmd_models_show)
    q = msub.add_parser("promote", help="verify a version and make it current")
    add_config_option(q)
    q.add_argument("version")
    q.set_defaults(func=_cmd_models_promote)
    q = msub.add_parser("rollback", help="make the previous current version current again")
    add_config_option(q)
    q.set_defaults(func=_cmd_models_rollback)
    q = msub.add_parser(
        "backtest",
        help="re-score a past period with VERSION and the champion: how trends and "
        "alerts would have differed (writes nothing to any topic)",
    )
    add_config_option(q)
    q.add_argument("version")
    q.add_argument("--from", type=_when, default=None, metavar="T", help="ISO-8601 start (published_at)")
    q.add_argument("--to", type=_when, default=None, metavar="T", help="ISO-8601 end, exclusive")
    q.add_argument(
        "--file",
        metavar="FILE.jsonl",
        help="stories (NewsItem JSONL, e.g. a dump of news.raw); default: read news.raw from kafka.bootstrap",
    )
    q.set_defaults(func=_cmd_models_backtest)
    q = msub.add_parser(
        "export",
        help="add ONNX Runtime files (fp32, int8) + accuracy check to a version "
        "(new versions get them at training time)",
    )
    add_config_option(q)
    q.add_argument("version", nargs="?", default="current")
    q.set_defaults(func=_cmd_models_export)
    q = msub.add_parser(
        "ensure", help="train and promote a model only if none is current (compose model-init, finsent-model.service)"
    )
    add_config_option(q)
    q.add_argument("--profile", choices=["default", "quick", "tiny"], default="quick")
    q.set_defaults(func=_cmd_models_ensure)
