"""The split pass that training with frozen lower layers relies on."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from models.network import FinsentModel, base_model_path
from models.training_config import PROFILES
from models.training_model import param_groups


@pytest.fixture(scope="module")
def model_and_tokenizer() -> tuple[FinsentModel, object]:
    base = base_model_path()
    torch.manual_seed(0)
    return FinsentModel.from_base(base).eval(), AutoTokenizer.from_pretrained(str(base))


@pytest.mark.parametrize("layers", [0, 2, 5])
def test_split_pass_gives_the_full_pass_logits(model_and_tokenizer, layers: int) -> None:
    model, tokenizer = model_and_tokenizer
    enc = tokenizer(
        ["Apple beats estimates", "Fed holds rates steady as inflation cools further, says Powell"],
        padding=True,
        return_tensors="pt",
    )  # padded: the mask matters
    ids, mask = enc["input_ids"], enc["attention_mask"]
    with torch.inference_mode():
        full = model.task_logits(ids, mask, "topic")
        split = model.task_logits_from(model.lower_states(ids, mask, layers), mask, layers, "topic")
        other = model.task_logits_from(model.lower_states(ids, mask, layers), mask, layers, "sentiment")
    assert torch.allclose(full, split, atol=1e-5)
    assert torch.allclose(model.task_logits(ids, mask, "sentiment"), other, atol=1e-5)
    assert not torch.allclose(full[0], full[1])  # different texts, different logits: the check has teeth


def test_every_head_learns_at_the_head_rate_and_the_encoder_below_it(model_and_tokenizer) -> None:
    """Layer-wise lr decay (docs/MODELS.md): the story heads *and* the entity head train at
    ``head_lr``; encoder layers at ``lr`` times ``layer_decay`` per layer below the top."""
    model, _ = model_and_tokenizer
    profile = PROFILES["default"]
    lr_of = {id(p): g["lr"] for g in param_groups(model, profile) for p in g["params"]}
    heads = {n: p for n, p in model.named_parameters() if n.startswith(("heads.", "entity_head."))}
    assert any(n.startswith("entity_head.") for n in heads)
    assert {n: lr_of[id(p)] for n, p in heads.items()} == dict.fromkeys(heads, profile.head_lr)
    top = model.config.num_hidden_layers - 1
    for name, p in model.named_parameters():
        if name.startswith(f"bert.encoder.layer.{top}."):
            assert lr_of[id(p)] == pytest.approx(profile.lr)
        elif name.startswith("bert.encoder.layer.0."):
            assert lr_of[id(p)] == pytest.approx(profile.lr * profile.layer_decay**top)
