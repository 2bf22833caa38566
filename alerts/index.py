"""Which rules a trend point or a story concerns, looked up without scanning every rule.

Exact keys are a dictionary lookup; patterns (``ticker:*``) are matched once per new
``(key, window)`` and the answer is cached, so the steady-state cost of a point no rule cares
about is one dictionary probe.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from alerts.ruleset import RuleSet, StoryRule, TrendRule


class RuleIndex:
    def __init__(self, rules: RuleSet) -> None:
        self._exact: dict[tuple[str, str], list[TrendRule]] = {}
        self._patterns: list[TrendRule] = []
        for rule in rules.trend_rules:
            if rule.is_pattern:
                self._patterns.append(rule)
            else:
                for window in rule.windows:
                    self._exact.setdefault((rule.key, window), []).append(rule)
        self._cache: dict[tuple[str, str], tuple[TrendRule, ...]] = {}
        self._story_by_ticker: dict[str, list[StoryRule]] = {}
        self._story_any: list[StoryRule] = []
        for story in rules.story_rules:
            if story.any_ticker:
                self._story_any.append(story)
            else:
                for t in story.tickers:
                    self._story_by_ticker.setdefault(t, []).append(story)
        self.windows = frozenset(w for r in rules.trend_rules for w in r.windows)

    def for_point(self, key: str, window: str) -> tuple[TrendRule, ...]:
        slot = (key, window)
        found = self._cache.get(slot)
        if found is None:
            if window not in self.windows:
                found = ()
            else:
                matched = list(self._exact.get(slot, ()))
                matched += [r for r in self._patterns if window in r.windows and fnmatchcase(key, r.key)]
                found = tuple(matched)
            if len(self._cache) < 1_000_000:
                self._cache[slot] = found
        return found

    def for_story(self, tickers: tuple[str, ...]) -> list[StoryRule]:
        if not tickers:
            return []
        out = list(self._story_any)
        for t in tickers:
            for rule in self._story_by_ticker.get(t.upper(), ()):
                if rule not in out:
                    out.append(rule)
        return out

    @property
    def has_story_rules(self) -> bool:
        return bool(self._story_any or self._story_by_ticker)
