"""Annotation templates: ``{{ name }}`` placeholders over a fixed set of variables, nothing else.

Deliberately not a general template engine: a rule file is configuration, and configuration must
not be able to run code or reach attributes. A template may only name variables from the
allow-list its rule type publishes (checked when the rule file is loaded) and apply one of a few
formatting filters: ``{{ value | pct }}``, ``{{ value | round }}``, ``{{ value | signed }}``,
``{{ key | upper }}``. Labels are reachable as ``{{ labels.<name> }}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_PLACEHOLDER = re.compile(
    r"\{\{\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)?)\s*(?:\|\s*(?P<filter>[A-Za-z_]+)\s*)?\}\}"
)


def _plain(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return str(value)


def _number(value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise TypeError("not a number")


FILTERS: dict[str, Callable[[object], str]] = {
    "pct": lambda v: f"{_number(v) * 100:.1f}%",
    "round": lambda v: f"{_number(v):.2f}",
    "signed": lambda v: f"{_number(v):+.2f}",
    "upper": lambda v: _plain(v).upper(),
    "lower": lambda v: _plain(v).lower(),
}


class TemplateError(ValueError):
    """A template names a variable or filter that does not exist, or is malformed."""


@dataclass(frozen=True)
class Template:
    """A parsed annotation template; :meth:`render` never raises on a valid one."""

    text: str
    names: frozenset[str]

    @classmethod
    def parse(cls, text: str, allowed: frozenset[str] | None = None) -> Template:
        names: set[str] = set()
        for m in _PLACEHOLDER.finditer(text):
            name, flt = m.group("name"), m.group("filter")
            if flt is not None and flt not in FILTERS:
                raise TemplateError(f"unknown filter {flt!r} in {m.group(0)!r} (known: {', '.join(sorted(FILTERS))})")
            root = name.split(".", 1)[0]
            if "." in name and root != "labels":
                raise TemplateError(f"only labels.<name> may use a dot, got {m.group(0)!r}")
            if allowed is not None and root != "labels" and name not in allowed:
                raise TemplateError(
                    f"unknown template variable {name!r} (known: {', '.join(sorted(allowed))}, labels.<name>)"
                )
            names.add(name)
        leftover = _PLACEHOLDER.sub("", text)
        if "{{" in leftover or "}}" in leftover:
            raise TemplateError(f"malformed placeholder in {text!r}: use {{{{ name }}}} or {{{{ name | filter }}}}")
        return cls(text=text, names=frozenset(names))

    def render(self, variables: Mapping[str, object], labels: Mapping[str, str] | None = None) -> str:
        labels = labels or {}

        def substitute(m: re.Match[str]) -> str:
            name, flt = m.group("name"), m.group("filter")
            if name.startswith("labels."):
                value: object = labels.get(name.split(".", 1)[1], "")
            else:
                value = variables.get(name, "")
            if flt:
                try:
                    return FILTERS[flt](value)
                except (TypeError, ValueError):
                    return _plain(value)
            return _plain(value)

        return _PLACEHOLDER.sub(substitute, self.text)


def render(text: str, variables: Mapping[str, object], labels: Mapping[str, str] | None = None) -> str:
    return Template.parse(text).render(variables, labels)
