"""Which alert a rule's reading is about, and where its notifications go.

An alert is one rule on one trend key (or one story): its labels name it, their hash is its
fingerprint, and its route - the receiver (the rule's, else ``alerts.default_receiver``) and the
notification group (the receiver and the rule's ``group_by`` labels) - follows from the rule.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from alerts.ruleset import RuleBase, StoryRule, TrendRule
from alerts.settings import EngineOptions
from monitor.core.records import ScoredItem


@dataclass(frozen=True)
class Target:
    """Everything about one (rule, subject) alert that never changes: computed once, cached."""

    fingerprint: str
    labels: dict[str, str]
    receiver: str
    group_key: str
    group_labels: dict[str, str]


def fingerprint_of(labels: Mapping[str, str]) -> str:
    """Stable across processes and versions: sha256 of the sorted label set (which names the rule)."""
    blob = json.dumps(sorted(labels.items()), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def group_key_of(receiver: str, group_labels: Mapping[str, str]) -> str:
    inner = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(group_labels.items()))
    return f'{{}}/{{receiver="{receiver}"}}:{{{inner}}}'


def trend_labels(rule: TrendRule, key: str) -> dict[str, str]:
    labels = dict(rule.labels)
    labels.update(alertname=rule.name, severity=rule.severity, key=key, window=rule.window)
    kind, sep, name = key.partition(":")
    if sep and kind in ("ticker", "topic", "source"):
        labels[kind] = name
    return labels


def story_labels(rule: StoryRule, scored: ScoredItem, tickers: str) -> dict[str, str]:
    labels = dict(rule.labels)
    labels.update(
        alertname=rule.name, severity=rule.severity, ticker=tickers, story=scored.item.id, source=scored.item.source
    )
    return labels


class Router:
    def __init__(self, options: EngineOptions) -> None:
        self.options = options
        self._targets: dict[tuple[str, str], Target] = {}

    def route(self, rule: RuleBase, labels: dict[str, str]) -> Target:
        receiver = rule.receiver or self.options.default_receiver
        if "..." in rule.group_by:
            group_labels = dict(labels)
        else:
            group_labels = {k: labels[k] for k in rule.group_by if k in labels}
        return Target(
            fingerprint=fingerprint_of(labels),
            labels=labels,
            receiver=receiver,
            group_key=group_key_of(receiver, group_labels),
            group_labels=group_labels,
        )

    def trend(self, rule: TrendRule, key: str) -> Target:
        slot = (rule.name, key)
        target = self._targets.get(slot)
        if target is None:
            target = self.route(rule, trend_labels(rule, key))
            self._targets[slot] = target
        return target

    def story(self, rule: StoryRule, scored: ScoredItem, tickers: str) -> Target:
        return self.route(rule, story_labels(rule, scored, tickers))
