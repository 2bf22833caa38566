"""Offline: what a trained version would score on every fixed set for each lexical weight, and the
temperature and ECE per domain, without retraining (used for the tables in docs/MODELS.md).

    PYTHONPATH=. HF_HUB_OFFLINE=1 python tests/bench/domain_selection.py FINSENT_HOME [VERSION] [LIMIT]

(LIMIT: a fixed random sample of LIMIT rows of each set, for a quick look on a busy machine.)

Prints one JSON object: per task, per weight w of the grid, macro-F1 / accuracy on each set, the
selection score (mean macro-F1 over the selection sets, tweets + news: models.training_data.selection_score's rule) and
the tweets-only score; then, for the version's own weight and for the chosen one, the temperature
fitted on the pooled selection sets and the ECE per set before / after.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import torch

GRID = (0.0, 0.1, 0.2, 0.25, 0.35, 0.5)


def main(home: str, version: str | None = None, limit: str | None = None) -> dict:
    from models.calibration import expected_calibration_error, fit_temperature
    from models.data import TASKS
    from models.domains import SET_INFO, validation_sets
    from models.engine import load_version
    from models.evaluation import classification_metrics, compute_logits
    from models.lexical import LEXICAL_DIR, LexicalExpert, mix_log_probs
    from models.registry import Registry
    from models.training_config import cpu_has_bf16

    reg = Registry(Path(home) / "models")
    version = version if version and version != "current" else reg.current()
    loaded = load_version(reg, version, torch.device("cpu"), quantize=False)
    lexical = LexicalExpert.load(reg.path(version) / LEXICAL_DIR)
    manifest = loaded.manifest
    amp = torch.bfloat16 if manifest["training"].get("autocast") == "bfloat16" and cpu_has_bf16() else None
    out: dict = {"version": version, "served_weight": manifest["lexical"].get("weight"), "tasks": {}}
    for task in TASKS:
        sets = {
            n: random.Random(0).sample(rows, int(limit)) if limit and int(limit) < len(rows) else rows
            for n, rows in validation_sets(task).items()
        }
        net, lex = {}, {}
        for name, rows in sets.items():
            texts = [r.text for r in rows]
            net[name] = compute_logits(
                loaded.model,
                loaded.tokenizer,
                texts,
                max_length=manifest["max_length"],
                device=torch.device("cpu"),
                autocast_dtype=amp,
                max_batch_tokens=1024,
            )[task]
            lex[name] = lexical.log_probs(texts)[task]
        ys = {n: [r.label for r in rows] for n, rows in sets.items()}
        sel = [n for n, (_, on) in SET_INFO.items() if on and (task == "sentiment" or n.startswith("tweets"))]
        grid = {}
        for w in GRID:
            per = {}
            for name in sets:
                z = torch.from_numpy(mix_log_probs(net[name].numpy(), lex[name], w))
                m = classification_metrics(task, ys[name], z.argmax(-1).tolist())
                per[name] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "per_class": m["per_class"]}
            grid[str(w)] = {
                "sets": per,
                "selection_score": round(sum(per[n]["macro_f1"] for n in sel) / len(sel), 4),
                "tweets_score": per["tweets"]["macro_f1"],
            }
        chosen = max(GRID, key=lambda w: (grid[str(w)]["selection_score"], -w))
        calib = {}
        for label, w in (("served", float(manifest["lexical"].get("weight", 0.0))), ("chosen", chosen)):
            zs = {n: torch.from_numpy(mix_log_probs(net[n].numpy(), lex[n], w)) for n in sets}
            t_tweets = fit_temperature(zs["tweets"], torch.tensor(ys["tweets"]))
            t_pool = fit_temperature(torch.cat([zs[n] for n in sel]), torch.tensor([y for n in sel for y in ys[n]]))
            calib[label] = {
                "weight": w,
                "T_tweets": round(t_tweets, 4),
                "T_pooled": round(t_pool, 4),
                "ece": {
                    n: {
                        "uncalibrated": round(expected_calibration_error(zs[n], torch.tensor(ys[n])), 4),
                        "T_tweets": round(expected_calibration_error(zs[n], torch.tensor(ys[n]), t_tweets), 4),
                        "T_pooled": round(expected_calibration_error(zs[n], torch.tensor(ys[n]), t_pool), 4),
                    }
                    for n in sets
                },
            }
        out["tasks"][task] = {"grid": grid, "chosen_weight": chosen, "calibration": calib}
    return out


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
