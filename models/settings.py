"""Config sections owned by the classifier: inference (``classifier``) and training (``training``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ClassifierSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    device: Literal["auto", "cpu", "cuda"] = "auto"
    version: str | None = Field(default=None, description="registry version to serve; unset = 'current'")
    max_batch_tokens: int = Field(default=8192, ge=64, description="token budget of one micro-batch")
    cpu_max_batch_tokens: int = Field(
        default=1024,
        ge=64,
        description="token budget of one micro-batch inside the engine on CPU (smaller batches stay in cache: "
        "measured ~1.2-1.4x faster than 8192 on a 2-core VM); the engine uses min(this, max_batch_tokens)",
    )
    max_batch_size: int = Field(default=256, ge=1)
    max_delay_ms: int = Field(default=50, ge=0, description="longest a story waits for its batch to fill")
    latency_target_ms: int | None = Field(
        default=500,
        ge=1,
        description="a story waits for company only while its age + the batch's estimated model time stays "
        "below this (unset: wait up to max_delay_ms regardless)",
    )
    max_length: int = Field(default=128, ge=8, le=512)
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads; unset = all cores")
    onnx_workers: int | None = Field(
        default=None,
        ge=1,
        description="ONNX Runtime on CPU: micro-batches run side by side, each on threads/onnx_workers cores "
        "(unset = one per thread: measured fastest for headlines on 2 cores); 1 = one batch at a time on all threads",
    )
    quantize: bool = Field(default=True, description="int8 on CPU when it keeps accuracy (ONNX Runtime or torch)")
    backend: Literal["auto", "onnx", "torch"] = Field(
        default="auto",
        description="CPU backend: auto = the fastest the version's accuracy check passed (ONNX Runtime int8, "
        "then ONNX fp32, then torch); onnx = the same preference; torch = torch only",
    )
    cpu_bf16: bool = Field(
        default=True,
        description="bf16 autocast on CPUs with native bf16 when the version was validated in bf16",
    )


class TrainingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    epochs: int | None = Field(
        default=None, ge=1, description="epochs of the 'default' profile; unset = the profile's (--epochs overrides)"
    )
    seed: int = 13
    threads: int | None = Field(
        default=None,
        ge=1,
        description="torch CPU threads while training; unset = the cores other processes leave free, re-read "
        "every 15 s while training runs (models.threads)",
    )
