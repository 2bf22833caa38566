"""The retrain job: fresh labels -> a challenger trained in a child process -> the gate -> promotion.

One run (:func:`run_retrain`, from the apscheduler cron ``retrain.cron`` or ``finsent retrain --now``):

1. **Plan**: resolve the stored votes (``monitor.learning.labels``: majority, then latest). Skip, with the
   reason, when fewer than ``retrain.min_new_labels`` votes arrived or changed since the last
   completed run. Labels whose text is in a fixed validation set are refused for training (they
   would make the gate's evidence meaningless). The rest is split by a stable hash of the text:
   ``retrain.holdout_share`` is held out (never trained on, in this run or any later one).
2. **Train** in a child process (``python -m monitor.app.commands.challenger``) with ``retrain.threads``
   OpenMP/torch threads and ``retrain.nice`` added niceness, so classify keeps its cores; killed
   past ``retrain.time_budget``. The training rows are the profile's base data (the replay that
   keeps the model from forgetting) plus the fresh labels. The child publishes the challenger
   unpromoted and scores it and the champion on every fixed set and on the held-out labels.
3. **Gate** (``models.gate``) and promote when it passes and ``retrain.auto_promote``; a serving
   engine in this process swaps at once (others follow the registry pointer between batches).
4. **Report** in the registry (``models.runs``), whatever the result, and Prometheus metrics.

**A standby pair.** Several ``retrain`` instances may run (sharing the model registry): the one
that holds the retrain lease (``monitor.core.bus.lease``: a consumer group over
``topics.retrain_lease``) runs the scheduled jobs; the others wait. When the holder dies the group
gives the lease to a standby within ``kafka.session_timeout_ms``; if the dead holder's run had not
finished (no run report since the cron's last fire time within the misfire grace), the new holder
runs it at once. An instance that loses the lease stops its training child and promotes nothing
(result ``cancelled``). Every instance reads every label (its own consumer group,
``retrain.label_group``), and ``POST /labels`` also publishes what it stores on the labels topic.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any, Protocol

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from models import GatePolicy, Registry, RunReports, decide, load_fixed_sets, normalise_for_dedup
from monitor.core.bus import FENCE_SHARE, Bus, GroupLease
from monitor.learning.labels import LabelStore, ResolvedLabel
from monitor.learning.metrics import RetrainMetrics
from monitor.stages import shadow_pointer, shadow_stats, start_shadow, stop_shadow

log = structlog.get_logger(__name__)


@dataclass
class RunPlan:
    train: list[tuple[str, str, str]]
    holdout: list[tuple[str, str, str]]
    refused: list[tuple[str, str, str]]
    fresh: int
    up_to_seq: int


def _in_holdout(task: str, text: str, share: float) -> bool:
    """Stable across runs: a held-out text stays held out forever."""

    digest = hashlib.sha256(f"{task}\0{normalise_for_dedup(text)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def validation_texts(settings: Any) -> set[tuple[str, str]]:
    """(task, normalised text) of every row of every fixed validation set (all rows, not a sample)."""

    specs = [s.model_dump(mode="json") for s in settings.retrain.validation_sets]
    return {
        (task, normalise_for_dedup(r.text)) for task, rows in load_fixed_sets(specs, None, 0).values() for r in rows
    }


def plan_run(settings: Any, labels: list[ResolvedLabel], fresh: int, up_to_seq: int) -> RunPlan:

    blocked = validation_texts(settings)
    plan = RunPlan([], [], [], fresh, up_to_seq)
    for r in labels:
        row = (r.task, r.text, r.label)
        if (r.task, normalise_for_dedup(r.text)) in blocked:
            plan.refused.append(row)
        elif _in_holdout(r.task, r.text, settings.retrain.holdout_share):
            plan.holdout.append(row)
        else:
            plan.train.append(row)
    return plan


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"r{now:%Y%m%d-%H%M%S}-{os.urandom(3).hex()}"


# -- the child process -----------------------------------------------------------------------------
class ChildTimeout(RuntimeError):
    pass


class ChildFailed(RuntimeError):
    pass


class ChildCancelled(RuntimeError):
    """The run was called off (this instance lost the retrain lease); the child was stopped."""


CHALLENGER_MODULE = "monitor.app.commands.challenger"
"""The child's entry point (in the composition root: it builds settings from the spec)."""


def start_child(
    module: str, args: list[str], *, threads: int | None, nice: int, output: IO[bytes] | None = None
) -> subprocess.Popen[bytes]:
    """``python -m MODULE ARGS`` in its own process group, with lower priority and, when
    ``threads`` is set, OpenMP/torch capped to that many threads. Output goes to ``output``
    (inherited when None). Used by the retrain job and the daemon's first-model training."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    env.update(
        OMP_WAIT_POLICY="PASSIVE",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(
            p for p in [str(Path(__file__).resolve().parent.parent.parent), env.get("PYTHONPATH", "")] if p
        ),
    )
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))

    def lower_priority() -> None:
        os.setsid()  # its own process group: stopping the child stops anything it started
        die_with_parent()
        if nice:
            os.nice(nice)

    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        env=env,
        preexec_fn=lower_priority,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
    )


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> None:
    """Linux: SIGTERM this (forked, not yet exec'd) child when the thread that started it dies, so a
    daemon killed with ``kill -9``, by the OOM killer or a closed terminal leaves no training
    running (its own session shields it from the terminal's signals). Elsewhere: nothing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def stop_child(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM the child's process group, SIGKILL it after ``grace_s``; waits for it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_child(
    spec: dict[str, Any],
    workdir: Path,
    threads: int,
    nice: int,
    budget_s: float,
    *,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """``python -m monitor.app.commands.challenger`` with capped threads and lower priority; its result
    JSON. Setting ``cancel`` stops the child and raises :class:`ChildCancelled`."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path, out_path = workdir / "spec.json", workdir / "result.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    proc = start_child(CHALLENGER_MODULE, [str(spec_path), str(out_path)], threads=threads, nice=nice)
    log.info("retrain child started", pid=proc.pid, threads=threads, nice=nice, budget_s=budget_s)
    deadline = time.monotonic() + budget_s
    rc = None
    while rc is None:
        if cancel is not None and cancel.is_set():
            stop_child(proc)
            raise ChildCancelled("the retrain lease moved to another instance; training child stopped")
        if time.monotonic() >= deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise ChildTimeout(f"training exceeded retrain.time_budget ({budget_s:.0f}s); child killed")
        try:
            rc = proc.wait(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            continue
    if rc != 0 or not out_path.exists():
        raise ChildFailed(f"training child exited with status {rc} (its log is above)")
    return json.loads(out_path.read_text(encoding="utf-8"))


class ChildRunner(Protocol):
    """Trains a challenger from ``spec`` in ``workdir``: :func:`run_child` (tests pass fakes)."""

    def __call__(
        self,
        spec: dict[str, Any],
        workdir: Path,
        threads: int,
        nice: int,
        budget_s: float,
        *,
        cancel: threading.Event | None = None,
    ) -> dict[str, Any]: ...


# -- one run ---------------------------------------------------------------------------------------
def run_retrain(
    settings: Any,
    store: LabelStore,
    *,
    force: bool = False,
    runner: ChildRunner = run_child,
    metrics: RetrainMetrics | None = None,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """Plan, train (child), gate, promote, report. Returns the report (also stored in the registry).
    ``cancel`` set (the lease was lost) before the promotion: result ``cancelled``, nothing promoted."""

    cfg = settings.retrain
    registry = Registry.from_settings(settings)
    started = time.time()
    run_id = new_run_id()
    report: dict[str, Any] = {
        "run_id": run_id,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "profile": cfg.profile,
        "champion": registry.current(),
    }
    up_to = store.max_seq()
    fresh = store.new_since_last_run()
    report["new_labels"] = fresh

    def finish(result: str, reason: str) -> dict[str, Any]:
        report.update(result=result, reason=reason, duration_s=round(time.time() - started, 1))
        RunReports(registry).write(report)
        if metrics is not None:
            metrics.observe(report)
        log.info(
            "retrain run finished",
            run_id=run_id,
            result=result,
            reason=reason,
            challenger=report.get("challenger"),
            duration_s=report["duration_s"],
        )
        return report

    if not force and fresh < cfg.min_new_labels:
        return finish("skipped", f"{fresh} new labels < min_new_labels={cfg.min_new_labels}")
    plan = plan_run(settings, store.resolved(), fresh, up_to)
    report["labels"] = {
        "train": len(plan.train),
        "holdout": len(plan.holdout),
        "refused_in_validation_set": len(plan.refused),
    }
    if plan.refused:
        log.warning(
            "labels refused for training: their text is in a fixed validation set",
            count=len(plan.refused),
            examples=[t for _, t, _ in plan.refused[:3]],
        )
    if not plan.train:
        store.mark_used(up_to)
        return finish("skipped", "no trainable fresh labels (all held out or in a validation set)")
    spec = {
        "home": str(settings.home),
        "classifier": settings.classifier.model_dump(mode="json"),
        "training": {**settings.training.model_dump(mode="json"), "threads": cfg.threads},
        "profile": cfg.profile,
        "champion": report["champion"],
        "train": plan.train,
        "holdout": plan.holdout,
        "validation_sets": [s.model_dump(mode="json") for s in cfg.validation_sets],
        "validation_limit": cfg.validation_limit,
        "log_level": settings.logging.level,
        "log_format": settings.logging.format,
    }
    log.info(
        "retrain run started",
        run_id=run_id,
        fresh=fresh,
        train=len(plan.train),
        holdout=len(plan.holdout),
        refused=len(plan.refused),
        champion=report["champion"],
        profile=cfg.profile,
    )
    try:
        comparison = runner(
            spec, settings.state_dir / "retrain" / run_id, cfg.threads, cfg.nice, cfg.time_budget, cancel=cancel
        )
    except ChildTimeout as err:
        return finish("timeout", str(err))
    except ChildCancelled as err:
        return finish("cancelled", str(err))
    except Exception as err:
        log.exception("retrain child failed")
        return finish("failed", f"{type(err).__name__}: {err}")
    store.mark_used(up_to)
    report.update({k: comparison[k] for k in ("challenger", "fixed", "holdout", "training") if k in comparison})
    decision = decide(comparison, GatePolicy(cfg.min_gain, cfg.max_drop, cfg.min_holdout))
    report["gate"] = {
        "min_gain": cfg.min_gain,
        "max_drop": cfg.max_drop,
        "min_holdout": cfg.min_holdout,
        "passed": decision.promote,
        "checks": decision.checks,
    }
    if not decision.promote:
        return finish("rejected", decision.reason)
    if cancel is not None and cancel.is_set():
        return finish(
            "cancelled", f"passed the gate, but the retrain lease moved to another instance: {decision.reason}"
        )
    if not cfg.auto_promote:
        return finish("rejected", f"passed the gate but retrain.auto_promote is off: {decision.reason}")
    if cfg.shadow_period > 0:
        start_shadow(settings.models_dir, comparison["challenger"], run_id)
        return finish(
            "shadowing",
            f"{decision.reason}; shadowing {cfg.shadow_share:.0%} of live traffic for "
            f"{cfg.shadow_period:.0f}s before promotion",
        )
    registry.promote(comparison["challenger"])
    return finish("promoted", decision.reason)


def check_shadow(
    settings: Any, metrics: RetrainMetrics | None = None, now: float | None = None
) -> dict[str, Any] | None:
    """Promote or drop the shadowed challenger once its shadow period is over; the updated report.

    Promote when it was shadowed for ``retrain.shadow_period`` over at least
    ``retrain.shadow_min_samples`` stories with sentiment agreement >= ``shadow_min_agreement``;
    drop it when the agreement is lower; keep waiting while too few stories were shadow-scored.
    """

    cfg = settings.retrain
    pointer = shadow_pointer(settings.models_dir)
    if not pointer:
        return None
    now = time.time() if now is None else now
    elapsed = now - float(pointer["since"])
    stats = shadow_stats(settings.state_dir) or {}
    if stats.get("version") != pointer["version"]:
        stats = {"n": 0, "agree": 0}
    n, agreement = int(stats.get("n", 0)), float(stats.get("agreement", 0.0))
    if elapsed < cfg.shadow_period or n < cfg.shadow_min_samples:
        return None
    registry = Registry.from_settings(settings)
    reports = RunReports(registry)
    report = reports.for_version(pointer["version"]) or {"run_id": pointer["run_id"], "challenger": pointer["version"]}
    report["shadow"] = {"seconds": round(elapsed, 1), **stats}
    line = (
        f"shadowed {elapsed:.0f}s on {n} stories: sentiment agreement {agreement:.4f} (min {cfg.shadow_min_agreement})"
    )
    if agreement >= cfg.shadow_min_agreement:
        registry.promote(pointer["version"])
        report.update(result="promoted", reason=f"{report.get('reason', '')}; {line}")
    else:
        report.update(result="rejected", reason=f"{line} < min_shadow_agreement")
    stop_shadow(settings.models_dir)
    reports.write(report)
    if metrics is not None:
        metrics.observe(report)
    log.info("shadow period over", version=pointer["version"], result=report["result"], agreement=agreement, n=n)
    return report


# -- the scheduled stage ---------------------------------------------------------------------------
class RetrainScheduler:
    """Stage: the retrain job on ``retrain.cron`` (apscheduler) for the daemon's life, run by the
    instance that holds the retrain lease (always this one when no bus is given)."""

    name = "retrain"

    def __init__(
        self,
        settings: Any,
        store: LabelStore,
        metrics: RetrainMetrics,
        on_promoted: Callable[[], None] | None = None,
        *,
        bus: Bus | None = None,
        runner: ChildRunner = run_child,
    ) -> None:
        """``settings``: the root settings (``retrain``, ``models_dir`` and what training reads);
        ``on_promoted``: called after a run promotes a version (the daemon reloads its engine);
        ``bus``: where the retrain lease is held (``None``: this instance always holds it)."""
        self._settings = settings
        self._on_promoted = on_promoted
        self._store = store
        self._metrics = metrics
        self._bus = bus
        self._runner = runner
        self._scheduler: BackgroundScheduler | None = None
        self._lease: GroupLease | None = None
        self._cancel = threading.Event()  # one per holding period; set when it ends
        self._stopping = threading.Event()
        self.reports: list[dict[str, Any]] = []

    @property
    def holds_lease(self) -> bool:
        return self._bus is None or (self._lease is not None and self._lease.held)

    def _retrain_job(self) -> None:
        cancel = self._cancel
        if cancel.is_set():
            return
        try:
            report = run_retrain(self._settings, self._store, runner=self._runner, metrics=self._metrics, cancel=cancel)
        except Exception:
            log.exception("retrain run failed; serving version unchanged")
            return
        self.reports.append(report)
        if report["result"] == "promoted":
            self._reload()

    def _shadow_job(self) -> None:
        if self._cancel.is_set():
            return
        try:
            report = check_shadow(self._settings, self._metrics)
        except Exception:
            log.exception("shadow check failed")
            return
        if report is not None:
            self.reports.append(report)
            if report["result"] == "promoted":
                self._reload()

    def _reload(self) -> None:
        if self._on_promoted is not None:
            self._on_promoted()

    def _add_jobs(self, scheduler: BackgroundScheduler) -> None:
        cfg = self._settings.retrain
        scheduler.add_job(
            self._retrain_job,
            CronTrigger.from_crontab(cfg.cron, timezone=timezone.utc),
            id="retrain",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=MISFIRE_GRACE_S,
            replace_existing=True,
        )
        if cfg.shadow_period > 0:
            scheduler.add_job(
                self._shadow_job,
                "interval",
                seconds=min(60.0, max(1.0, cfg.shadow_period / 10)),
                id="shadow",
                max_instances=1,
                coalesce=True,
                replace_existing=True,
            )

    def _lease_changed(self, held: bool) -> None:
        scheduler = self._scheduler
        assert scheduler is not None
        self._metrics.lease_held.set(1 if held else 0)
        if not held:
            self._cancel.set()
            scheduler.remove_all_jobs()
            if not self._stopping.is_set():
                log.info("retrain lease lost: this instance is a standby now")
            return
        takeover = self._lease is not None and self._lease.joined
        self._cancel = threading.Event()
        self._add_jobs(scheduler)
        log.info(
            "retrain lease held: this instance runs the scheduled retrain",
            cron=self._settings.retrain.cron,
            next=str(scheduler.get_job("retrain").next_run_time),
        )
        try:
            reports = RunReports(Registry.from_settings(self._settings)).all()
            fire = missed_fire(
                self._settings.retrain.cron, reports, datetime.now(timezone.utc), cut_off_only=not takeover
            )
        except Exception:
            log.exception("cannot tell whether a scheduled run was left unfinished; not taking one over")
            return
        if fire is not None:
            log.info("taking over the run the previous lease holder did not finish", fire_time=fire.isoformat())
            scheduler.modify_job("retrain", next_run_time=datetime.now(timezone.utc))

    def run(self, stop: threading.Event) -> None:
        cfg = self._settings.retrain
        self._stopping = stop
        scheduler = BackgroundScheduler(timezone=timezone.utc)
        scheduler.start()
        self._scheduler = scheduler
        try:
            if not cfg.enabled:
                log.info("scheduled retrain disabled (retrain.enabled=false)")
                stop.wait()
                return
            self._metrics.lease_candidate.set(1)
            if self._bus is None:
                self._lease_changed(True)
                stop.wait()
            else:
                topic = self._settings.topics.retrain_lease
                self._lease = GroupLease(
                    self._bus,
                    topic,
                    "retrain",
                    on_change=self._lease_changed,
                    fence_after_s=FENCE_SHARE * self._settings.kafka.session_timeout_ms / 1000,
                )
                log.info("retrain joining its lease group", topic=topic)
                self._lease.run(stop)  # until stop; leaving the group hands the lease over
        finally:
            self._cancel.set()  # a run in progress stops its child and promotes nothing
            scheduler.shutdown(wait=True)

    def ready(self) -> tuple[bool, str]:
        if self._scheduler is None or not self._scheduler.running:
            return False, "starting"
        if not self._settings.retrain.enabled or self._bus is None:
            return True, "scheduler running"
        if self._lease is None or not self._lease.joined:
            return False, "joining the retrain lease group"
        if self._lease.held:
            return True, "scheduler running (this instance holds the retrain lease)"
        return True, "standby: another instance holds the retrain lease"


MISFIRE_GRACE_S = 3600
"""A scheduled run missed by at most this long (a busy or restarted holder) still runs."""


def missed_fire(
    cron: str,
    reports: list[dict[str, Any]],
    now: datetime,
    grace_s: float = MISFIRE_GRACE_S,
    *,
    cut_off_only: bool = False,
) -> datetime | None:
    """The latest time ``cron`` fired within ``grace_s`` before ``now`` that no finished run answered
    (no report that started at or after it, other than a cancelled one); ``None`` when there is none.
    ``cut_off_only`` (an instance that holds the lease from its start, not one that took it over):
    only when a run for that fire time was started and cancelled (its holder was stopped)."""
    trigger = CronTrigger.from_crontab(cron, timezone=timezone.utc)
    fire = None
    t = trigger.get_next_fire_time(None, now - timedelta(seconds=grace_s))
    while t is not None and t <= now:
        fire = t
        t = trigger.get_next_fire_time(t, t + timedelta(seconds=1))
    if fire is None:
        return None
    cut_off = False
    for report in reports:
        if "started_at" not in report:
            continue
        started = datetime.fromisoformat(report["started_at"])
        if started.tzinfo is None:
            started = started.replace(tzinfo=timezone.utc)
        if started < fire:
            continue
        if report.get("result") != "cancelled":
            return None
        cut_off = True
    return fire if cut_off or not cut_off_only else None
