"""``finsent labels import FILE | export``: human labels in and out of the label store."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from monitor.app.cliargs import EXIT_OK, EXIT_USAGE, add_config_option, settings_from_args
from monitor.learning.labels import (
    EXPORT_FIELDS,
    LabelBatchError,
    LabelStore,
    export_rows,
    read_label_file,
    validate_rows,
)


def _store(args: argparse.Namespace):

    settings = settings_from_args(args)
    settings.ensure_dirs()
    return LabelStore(settings.state_dir / "labels.db")


def _import(args: argparse.Namespace) -> int:

    path = Path(args.file)
    try:
        rows = read_label_file(path)
        votes = validate_rows(rows, f"file:{path.name}", lookup=None, default_labeller=args.labeller)
    except LabelBatchError as err:
        print(f"finsent: {path}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, ValueError) as err:
        print(f"finsent: {err}", file=sys.stderr)
        return EXIT_USAGE
    store = _store(args)
    try:
        result = store.add(votes)
    finally:
        store.close()
    print(
        json.dumps(
            {
                "file": str(path),
                "received": len(votes),
                "inserted": result.inserted,
                "updated": result.updated,
                "unchanged": result.unchanged,
            }
        )
    )
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:

    store = _store(args)
    try:
        rows = export_rows(store, args.resolved)
    finally:
        store.close()
    out = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115 - or stdout; closed below
    try:
        if args.format == "jsonl":
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            fields = ("task", "text", "label", "votes") if args.resolved else EXPORT_FIELDS
            writer = csv.DictWriter(out, fieldnames=fields)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: json.dumps(v) if isinstance(v, dict) else v for k, v in row.items()})
    finally:
        if args.output:
            out.close()
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("labels", help="human labels for retraining: import a file, export the store")
    lsub = p.add_subparsers(dest="labels_command", metavar="ACTION", required=True)
    q = lsub.add_parser("import", help="store labels from FILE.csv|.jsonl (all or nothing; bad rows exit 2)")
    add_config_option(q)
    q.add_argument("file", metavar="FILE", help="columns/keys: task, label, text (or story_id), labeller, labelled_at")
    q.add_argument("--labeller", help="labeller for rows that name none")
    q.set_defaults(func=_import)
    q = lsub.add_parser("export", help="every vote with its provenance (or --resolved: one label per text)")
    add_config_option(q)
    q.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    q.add_argument("--resolved", action="store_true", help="apply the conflict rule (majority, then latest)")
    q.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    q.set_defaults(func=_export)
