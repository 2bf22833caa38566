"""The retrain job around its child process: skips, refusals, the gate, reports and metrics.

The child is replaced by a recorded runner here (its real run is in test_retrain_gate.py), except
for the time-budget test, which starts the real child and kills it.
"""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry

from models.data import load_split
from models.gate import GatePolicy, decide
from models.runs import RunReports
from monitor.core.records import utcnow
from monitor.learning.labels import LabelStore, Vote
from monitor.learning.metrics import RetrainMetrics
from monitor.learning.retrain import _in_holdout, run_child, run_retrain


def _votes(texts, label="negative", task="sentiment", labeller="ann"):
    return [Vote(task, t, label, labeller, "test", None, utcnow()) for t in texts]


def _comparison(spec, *, champ_fixed=(0.80, 0.70), chall_fixed=(0.80, 0.70), champ_hold=0.2, chall_hold=0.9):
    def m(acc, f1):
        return {"n": 100, "accuracy": acc, "macro_f1": f1}

    return {
        "challenger": "v-challenger",
        "champion": spec["champion"],
        "fixed": {
            s["name"]: {"task": s["task"], "n": 100, "champion": m(*champ_fixed), "challenger": m(*chall_fixed)}
            for s in spec["validation_sets"]
        },
        "holdout": {
            "n": len(spec["holdout"]),
            "champion": {"accuracy": champ_hold},
            "challenger": {"accuracy": chall_hold},
            "by_task": {},
        },
        "training": {"train_rows": {}},
    }


class FakeRunner:
    def __init__(self, **outcome):
        self.outcome = outcome
        self.specs = []

    def __call__(self, spec, workdir, threads, nice, budget, *, cancel=None):
        self.specs.append((spec, threads, nice, budget))
        return _comparison(spec, **self.outcome)


def _registry_with_champion(settings):
    from models.registry import Registry

    reg = Registry.from_settings(settings)
    reg.publish(lambda tmp: {"kind": "fake"}, version="v-champion")
    reg.publish(lambda tmp: {"kind": "fake"}, version="v-challenger")
    reg.promote("v-champion")
    return reg


def test_gate_needs_a_gain_on_held_out_labels_and_no_drop_on_fixed_sets():
    spec = {"champion": "v1", "validation_sets": [{"name": "sentiment", "task": "sentiment"}], "holdout": [0] * 20}
    policy = GatePolicy(min_gain=0.05, max_drop=0.01, min_holdout=10)
    ok = decide(_comparison(spec), policy)
    assert ok.promote and "gain +0.7000" in ok.reason
    no_gain = decide(_comparison(spec, chall_hold=0.22), policy)
    assert not no_gain.promote and "< min_gain 0.05" in no_gain.reason
    poisoned = decide(_comparison(spec, chall_fixed=(0.60, 0.50)), policy)
    assert not poisoned.promote
    assert "fixed set 'sentiment': accuracy 0.8000 -> 0.6000 (drop 0.2000 > max_drop 0.01)" in poisoned.reason
    assert "macro_f1 0.7000 -> 0.5000" in poisoned.reason
    few = decide(_comparison({**spec, "holdout": [0] * 3}), policy)
    assert not few.promote and "only 3 held-out fresh labels" in few.reason
    assert decide(_comparison({**spec, "champion": None}), policy).promote


def test_run_skips_with_a_reason_and_reports_it(make_settings):
    settings = make_settings(retrain={"min_new_labels": 3})
    store = LabelStore(settings.state_dir / "labels.db")
    store.add(_votes(["t1", "t2"]))
    runner = FakeRunner()
    metrics = RetrainMetrics(CollectorRegistry())
    report = run_retrain(settings, store, runner=runner, metrics=metrics)
    assert report["result"] == "skipped" and "2 new labels < min_new_labels=3" in report["reason"]
    assert runner.specs == []
    assert [r["result"] for r in _reports(settings)] == ["skipped"]
    assert metrics.runs.labels("skipped")._value.get() == 1


def _reports(settings):
    from models.registry import Registry

    return RunReports(Registry.from_settings(settings)).all()


def test_run_refuses_validation_texts_holds_out_a_stable_slice_and_promotes(make_settings):
    settings = make_settings(
        retrain={"min_new_labels": 5, "min_holdout": 1, "threads": 1, "nice": 7, "time_budget": "20m"}
    )
    reg = _registry_with_champion(settings)
    store = LabelStore(settings.state_dir / "labels.db")
    valid_text = load_split("sentiment", "valid")[0].text
    fresh = [f"ACME glorped {i}" for i in range(40)]
    store.add(_votes(fresh + [valid_text.lower() + "  "]))  # near-copy of a validation row
    runner = FakeRunner()
    metrics = RetrainMetrics(CollectorRegistry())
    report = run_retrain(settings, store, runner=runner, metrics=metrics)
    spec, threads, nice, budget = runner.specs[0]
    assert (threads, nice, budget) == (1, 7, 1200.0)
    trained = {t for _, t, _ in spec["train"]}
    held = {t for _, t, _ in spec["holdout"]}
    assert valid_text.lower() + "  " not in trained | held
    assert report["labels"] == {"train": len(trained), "holdout": len(held), "refused_in_validation_set": 1}
    assert trained | held == set(fresh) and not trained & held and 2 <= len(held) <= 16
    assert all(_in_holdout("sentiment", t, 0.2) for t in held)  # the same slice on every run
    assert spec["validation_sets"] == [  # the news-domain set is a fixed set by default
        {"name": "sentiment", "task": "sentiment", "path": None, "bundled": "tweets"},
        {"name": "topic", "task": "topic", "path": None, "bundled": "tweets"},
        {"name": "news_sentiment", "task": "sentiment", "path": None, "bundled": "news"},
    ]
    assert report["result"] == "promoted" and reg.current() == "v-challenger"
    stored = RunReports(reg).for_version("v-challenger")
    assert stored["fixed"]["sentiment"]["champion"]["accuracy"] == 0.8 and stored["gate"]["passed"]
    assert metrics.runs.labels("promoted")._value.get() == 1
    assert metrics.champion.labels("sentiment", "macro_f1")._value.get() == 0.7
    # the labels were used: the next run has nothing new
    assert run_retrain(settings, store, runner=runner)["result"] == "skipped"


def test_poisoned_run_is_rejected_with_the_reason_in_the_registry(make_settings, tmp_path):
    settings = make_settings(retrain={"min_new_labels": 5, "min_holdout": 1})
    reg = _registry_with_champion(settings)
    store = LabelStore(settings.state_dir / "labels.db")
    store.add(_votes([f"ACME glorped {i}" for i in range(40)]))
    report = run_retrain(settings, store, runner=FakeRunner(chall_fixed=(0.5, 0.4)))
    assert report["result"] == "rejected" and "fixed set 'sentiment'" in report["reason"]
    assert reg.current() == "v-champion"
    # `finsent models list|show` print it
    from tests.models.test_cli import run_cli

    proc = run_cli(settings.home, "models", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "rejected" in proc.stdout
    listing = json.loads(proc.stdout.strip().splitlines()[-1])
    assert listing["runs"][-1]["result"] == "rejected"
    gates = {v["version"]: v["gate"] for v in listing["versions"]}
    assert gates["v-challenger"]["result"] == "rejected" and gates["v-champion"] is None
    proc = run_cli(settings.home, "models", "show", "v-challenger")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["retrain_report"]["result"] == "rejected"
    assert "fixed:sentiment (n=100)" in proc.stderr and "0.8000     0.5000" in proc.stderr


def test_child_past_its_time_budget_is_killed_and_reported(make_settings):
    settings = make_settings(retrain={"min_new_labels": 1, "time_budget": 0.5, "nice": 5})
    store = LabelStore(settings.state_dir / "labels.db")
    store.add(_votes([f"ACME glorped {i}" for i in range(20)]))
    report = run_retrain(settings, store, runner=run_child)
    assert report["result"] == "timeout" and "time_budget" in report["reason"]
    assert store.new_since_last_run() == 20  # not used up: the next run tries again
