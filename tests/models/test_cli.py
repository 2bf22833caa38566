"""The models subcommands as a user runs them (subprocess, real exit codes and output)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_cli(home: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "FINSENT_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    env.pop("FINSENT_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "monitor.app.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_eval_prints_a_table_and_a_json_last_line(tiny_home: Path, tmp_path: Path) -> None:
    data = tmp_path / "eval.csv"
    data.write_text(
        "text,label\n"
        '"$XYZ - Acme downgraded to Sell at Goldman",negative\n'
        '"Acme shares surge after record quarter",positive\n'
        '"Acme to present at conference\nnext week",neutral\n'
        '"Brent crude falls 3%",0\n'
    )
    proc = run_cli(tiny_home, "eval", "--task", "sentiment", "--data", str(data), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    report = json.loads(lines[-1])
    assert report["task"] == "sentiment" and report["n"] == 4
    assert 0.0 <= report["accuracy"] <= 1.0 and 0.0 <= report["macro_f1"] <= 1.0
    assert set(report["per_class"]) == {"negative", "neutral", "positive"}
    assert report["support"] == {"negative": 2, "neutral": 1, "positive": 1}  # id 0 = Bearish
    assert any("macro-F1" in line for line in lines[:-1])


def test_eval_topic_with_integer_ids(tiny_home: Path, tmp_path: Path) -> None:
    data = tmp_path / "topic.csv"
    data.write_text("text,label\nFed raises rates by 25bp,1\nAcme declares quarterly dividend,4\n")
    proc = run_cli(tiny_home, "eval", "--task", "topic", "--data", str(data), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["n"] == 2 and len(report["per_class"]) == 20


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('text,label\n"fine",positive\n"meh",great\n', "row 3: unknown sentiment label 'great'"),
        ("body,label\nx,positive\n", "missing column(s) text"),
        ("text,label\nx,7\n", "row 2: unknown sentiment label id 7"),
    ],
)
def test_eval_bad_input_is_a_clear_usage_error(tmp_path: Path, content: str, message: str) -> None:
    data = tmp_path / "bad.csv"
    data.write_text(content)
    proc = run_cli(tmp_path / "home", "eval", "--task", "sentiment", "--data", str(data))
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_models_list_show_promote_rollback(tiny_home_copy: Path) -> None:
    from models.registry import Registry
    from tests.models.test_engine import _clone_version

    reg = Registry(tiny_home_copy / "models")
    first = reg.current()
    second = _clone_version(reg, first)
    proc = run_cli(tiny_home_copy, "models", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout.strip().splitlines()[-1])
    assert listing["current"] == first and [v["version"] for v in listing["versions"]] == sorted([first, second])

    proc = run_cli(tiny_home_copy, "models", "promote", second)
    assert proc.returncode == 0 and reg.current() == second
    proc = run_cli(tiny_home_copy, "models", "show", second)
    assert proc.returncode == 0 and json.loads(proc.stdout)["version"] == second
    proc = run_cli(tiny_home_copy, "models", "rollback")
    assert proc.returncode == 0 and reg.current() == first

    (reg.path(second) / "config.json").write_text("{}")
    proc = run_cli(tiny_home_copy, "models", "promote", second)
    assert proc.returncode == 1 and "refusing to promote" in proc.stderr and "Traceback" not in proc.stderr
    assert reg.current() == first
    proc = run_cli(tiny_home_copy, "models", "list")
    assert proc.returncode == 0


def test_bench_json_report(tiny_home: Path) -> None:
    proc = run_cli(
        tiny_home, "bench", "--json", "--device", "cpu", "--n", "48", "--request-size", "16", "--repeat", "1"
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"texts_per_s", "baseline_texts_per_s", "ratio", "device"} <= set(report)
    assert report["device"] == "cpu" and report["n"] == 48
    assert report["texts_per_s"] > 0 and report["baseline_texts_per_s"] > 0
    assert report["accuracy"] is not None and report["baseline_accuracy"] is not None
    # every backend/precision tried is reported; the served one first, with the top-level numbers
    tried = {(c["backend"], c["precision"]) for c in report["candidates"] if c["measured"]}
    assert report["candidates"][0]["texts_per_s"] == report["texts_per_s"]
    assert (report["backend"], report["precision"]) in tried and ("torch", "float32") in tried
    assert {"onnx", "torch"} <= {b for b, _ in tried}


def test_models_ensure_keeps_a_current_model_and_trains_when_there_is_none(
    tiny_home_copy: Path, tmp_path: Path
) -> None:
    from models.registry import Registry

    reg = Registry(tiny_home_copy / "models")
    before = reg.versions()
    proc = run_cli(tiny_home_copy, "models", "ensure", "--profile", "tiny")
    assert proc.returncode == 0, proc.stderr
    assert f"model {reg.current()} is current" in proc.stdout and reg.versions() == before

    empty = tmp_path / "empty-home"
    # trains a tiny version, ONNX export and its check included: minutes on a loaded 2-core VM
    proc = run_cli(empty, "models", "ensure", "--profile", "tiny", timeout=900)
    assert proc.returncode == 0, proc.stderr
    fresh = Registry(empty / "models")
    assert fresh.current() is not None and fresh.versions() == [fresh.current()]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["promoted"] is True


def test_eval_without_data_reports_every_domain(tiny_home: Path) -> None:
    """No --data: the task's fixed validation sets, tweets and news, each with accuracy, macro-F1, ECE."""
    proc = run_cli(tiny_home, "eval", "--task", "sentiment", "--device", "cpu", "--limit", "40")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["task"] == "sentiment" and report["version"]
    assert list(report["sets"]) == ["tweets", "tweets_dedup", "news", "news_semeval"]
    for name, domain in (("tweets", "tweets"), ("news", "news"), ("news_semeval", "news")):
        one = report["sets"][name]
        assert one["n"] == 40 and one["domain"] == domain
        assert 0.0 <= one["macro_f1"] <= 1.0 and 0.0 <= one["ece"] <= 1.0
        assert set(one["per_class"]) == {"negative", "neutral", "positive"}
    assert "data news_semeval" in proc.stdout  # a table per set before the JSON line
