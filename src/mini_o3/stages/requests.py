"""The typed request of each launchable stage: its input URIs, its config overrides, where it logs
and where it runs. A KFP component builds one from its flat inputs, ``mini-o3 stage sft|rl|eval``
from flags; the stage function takes it in-process, and a remote run seals it as ``request.json``
for ``mini-o3 stage run <uri>`` (``mini_o3.dispatch``). One declaration per stage input.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from mini_o3.launch.settings import LaunchSettings

from .common import Tracking

#: File name of a sealed request inside its folder.
REQUEST_NAME = "request.json"


class StageRequest(BaseModel):
    """What every launchable stage takes besides its inputs."""

    model_config = ConfigDict(extra="forbid")

    out_uri: str = Field(..., description="output prefix (SFT / RL: <out>/model and <out>/run; eval: the folder)")
    overrides: list[str] = Field(default_factory=list, description="KEY=VALUE overrides of the stage's config")
    tracking: Tracking = Field(default_factory=Tracking, description="the pipeline's MLflow parent run")
    launch: LaunchSettings = Field(default_factory=LaunchSettings, description="where the stage runs")


class SFTRequest(StageRequest):
    """LLaMA-Factory SFT: sealed cold-start data + base model → sealed SFT model (overrides: SFTConfig)."""

    stage: Literal["sft"] = "sft"
    data_uri: str = Field(..., description="sealed cold-start data folder")
    model: str = Field(..., description="base model: sealed model URI or hub id (hf://org/name)")


class RLRequest(StageRequest):
    """GRPO: sealed policy + data collections → sealed RL policy (overrides: RLConfig)."""

    stage: Literal["rl"] = "rl"
    engine: str = Field("local", description="local (reference engine) or verl (Ray cluster)")
    model_uri: str = Field(..., description="policy to start from: sealed URI or hub id")
    train_uris: list[str] = Field(default_factory=list, description="collections / folders with train.parquet")
    val_uris: list[str] = Field(default_factory=list, description="collections / folders with val.parquet")
    nnodes: int = Field(1, ge=1, description="verl: nodes (Ray worker pods)")
    gpus_per_node: int = Field(8, ge=0, description="verl: GPUs per node; reference engine: the pod's GPUs")


class EvalRequest(StageRequest):
    """Avg@k: sealed model + benchmark collections → sealed report folder (overrides: EvalConfig)."""

    stage: Literal["evaluate"] = "evaluate"
    model_uri: str = Field(..., description="sealed model URI or hub id (only recorded for openai:)")
    bench_uris: list[str] = Field(default_factory=list, description="sealed benchmark collections / folders")
    k: int | None = Field(None, ge=1, description="samples per question; None: the paper's per benchmark")
    backend: str = Field("vllm", description="vllm, local or openai:URL[#model]")
    judge: bool | None = Field(None, description="True: judge credentials given; False: none; None: look at the env")
    gpus: int = Field(1, ge=1, description="GPUs of the vLLM server")


AnyRequest = Annotated[Union[SFTRequest, RLRequest, EvalRequest], Field(discriminator="stage")]
_ADAPTER: TypeAdapter[SFTRequest | RLRequest | EvalRequest] = TypeAdapter(AnyRequest)


def parse_request(text: str) -> SFTRequest | RLRequest | EvalRequest:
    """A request from its JSON (``stage`` says which)."""
    return _ADAPTER.validate_json(text)
