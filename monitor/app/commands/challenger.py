"""The retrain child's entry point: ``python -m monitor.app.commands.challenger SPEC.json OUT.json``.

Started by :mod:`monitor.learning.retrain` with capped threads and a lower priority; it builds the
settings the spec names and hands them to :func:`models.challenger.run` (the spec and result formats
are documented there). An entry point builds settings, so it lives in the composition root.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from models.challenger import run
from monitor.app.commands.child_spec import load_spec


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m monitor.app.commands.challenger SPEC.json OUT.json", file=sys.stderr)
        return 2
    spec, settings = load_spec(args[0])
    out = run(settings, spec)
    tmp = Path(args[1]).with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2), encoding="utf-8")
    os.replace(tmp, args[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
