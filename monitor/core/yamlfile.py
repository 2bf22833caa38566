"""Reading a YAML file with one clear problem statement for each way it can fail.

A key written twice in one mapping is refused, naming both lines: YAML itself keeps the last one
silently, which turns a pasted-over setting into a hidden change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlFileError(ValueError):
    """The file could not be read or is not YAML; the message says which, for people."""


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with the same key twice (merge keys ``<<`` apart)."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the SafeLoader says so below
                    continue
                if first is not None:
                    raise YamlFileError(
                        f"duplicate key {key!r} on line {line} (first on line {first}); "
                        "YAML would keep only the last, so remove one"
                    )
                seen[key] = line
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def load_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise YamlFileError(f"cannot read file: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise YamlFileError(f"not a UTF-8 text file (byte {err.start}: {err.reason})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as err:
        raise YamlFileError(f"not valid YAML: {err}") from None
    except RecursionError:
        raise YamlFileError("not valid YAML: nested too deeply") from None
