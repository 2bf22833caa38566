"""The first-model child's entry point: ``python -m monitor.app.commands.first_model SPEC.json``.

Started by :mod:`monitor.app.first_model` when the daemon finds no usable model: it trains the
spec's profile, promotes the result (unless a model became current meanwhile), and keeps ``progress`` (a JSON :class:`TrainingProgress`)
up to date for the daemon's ``/readyz`` and page. SPEC (JSON): ``home``, ``classifier``,
``training`` (the daemon's sections), ``profile``, ``progress`` (path), ``log_level``,
``log_format``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from models.training import train
from models.training_progress import TrainingProgress
from monitor.app.commands.child_spec import load_spec


def progress_writer(path: Path):
    """Writes each progress report to ``path`` whole (a reader never sees half a file)."""

    def write(progress: TrainingProgress) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(progress.model_dump_json(), encoding="utf-8")
        os.replace(tmp, path)

    return write


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m monitor.app.commands.first_model SPEC.json", file=sys.stderr)
        return 2
    spec, settings = load_spec(args[0])
    settings.ensure_dirs()
    train(
        settings,
        profile=spec["profile"],
        promote=None,  # only if the registry still has no current version (another may have come meanwhile)
        progress=False,
        on_progress=progress_writer(Path(spec["progress"])),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
