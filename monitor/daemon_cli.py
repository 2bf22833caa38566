"""``finsent run | ingest | classify | aggregate``: the daemon, all stages or one."""

from __future__ import annotations

import argparse

from monitor.cliargs import add_config_option, settings_from_args


def _runner(stages: tuple[str, ...]):
    def handler(args: argparse.Namespace) -> int:
        overrides = {}
        if getattr(args, "kafka", None):
            overrides["kafka"] = {"bootstrap": args.kafka}
        settings = settings_from_args(args, **overrides)
        from monitor.wiring import build_daemon

        chosen = tuple(args.stages.split(",")) if getattr(args, "stages", None) else stages
        daemon, _ = build_daemon(settings, chosen)
        return daemon.run_forever()

    return handler


def _retrain(args: argparse.Namespace) -> int:
    import json

    settings = settings_from_args(args)
    settings.ensure_dirs()
    from monitor.retrain import LabelStore, retrain_once

    store = LabelStore(settings.state_dir / "labels.db")
    try:
        outcome = retrain_once(settings, store, force=args.force)
    finally:
        store.close()
    print(json.dumps(outcome.__dict__))
    return 0


def _stage_list(value: str) -> str:
    from monitor.wiring import BUILDERS

    unknown = [s for s in value.split(",") if s not in BUILDERS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(BUILDERS)}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    from monitor.wiring import PIPELINE

    specs = {
        "run": (PIPELINE, "run every stage in one process (in-process bus unless kafka.bootstrap is set)"),
        "ingest": (("ingest",), "run the configured connectors alone, producing to news.raw"),
        "classify": (("classify",), "score stories from news.raw into news.scored (a consumer-group member)"),
        "aggregate": (("aggregate",), "turn news.scored into rolling trends on news.trends"),
    }
    for name, (stages, help_text) in specs.items():
        p = sub.add_parser(name, help=help_text)
        add_config_option(p)
        p.add_argument("--kafka", metavar="HOST:PORT", help="Kafka bootstrap (overrides kafka.bootstrap)")
        if name == "run":
            p.add_argument("--stages", metavar="A,B", type=_stage_list,
                           help=f"run only these stages (default: {','.join(stages)})")
        p.set_defaults(func=_runner(stages))

    p = sub.add_parser("retrain", help="run the nightly re-training job once, now")
    add_config_option(p)
    p.add_argument("--force", action="store_true", help="train even with fewer than retrain.min_new_labels")
    p.set_defaults(func=_retrain)
