"""Reading a YAML file with one clear problem statement for each way it can fail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlFileError(ValueError):
    """The file could not be read or is not YAML; the message says which, for people."""


def load_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise YamlFileError(f"cannot read file: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise YamlFileError(f"not a UTF-8 text file (byte {err.start}: {err.reason})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise YamlFileError(f"not valid YAML: {err}") from None
    except RecursionError:
        raise YamlFileError("not valid YAML: nested too deeply") from None
