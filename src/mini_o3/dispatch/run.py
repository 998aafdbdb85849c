"""``run_stage``: a typed stage request (``mini_o3.stages.requests``) run here or remotely."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mini_o3 import storage
from mini_o3.launch.settings import LaunchSettings, job_name
from mini_o3.stages import StageError, StageResult, read_result
from mini_o3.stages.common import basename
from mini_o3.stages.requests import REQUEST_NAME, EvalRequest, RLRequest, SFTRequest, parse_request

Request = SFTRequest | RLRequest | EvalRequest


def stage_function(stage: str) -> Callable[..., StageResult]:
    """The stage function that takes a request of ``stage`` (sft | rl | evaluate)."""
    from mini_o3.stages import eval_stage, rl_stage, sft_stage

    return {"sft": sft_stage, "rl": rl_stage, "evaluate": eval_stage}[stage]


def run_stage(request: Request, *, name: str = "", request_uri: str = "", work: str | None = None,
              progress: bool = True) -> StageResult:
    """Run ``request`` where its ``launch.mode`` says: ``inprocess`` here (``work``: kept work folder),
    else remotely (``remote_stage``: ``name`` the Ray job / RayJob name, ``request_uri`` where the
    request is sealed)."""
    if request.launch.mode == "inprocess":
        return stage_function(request.stage)(request, work=work, progress=progress)
    return remote_stage(request, name=name, request_uri=request_uri).run()


def remote_form(request: Request) -> Request:
    """The request as the remote entrypoint runs it: in its own process (launch ``inprocess``), shaped
    by the remote cluster. SFT uses LLaMA-Factory's Ray mode with one training worker per GPU of the
    cluster; verl gets ``workers`` nodes of ``gpus_per_worker`` GPUs."""
    launch = request.launch
    update: dict[str, Any] = {"launch": LaunchSettings()}
    if isinstance(request, SFTRequest):
        ray = ["launch.mode=ray", "launch.ray_init_kwargs.address=auto",
               f"launch.ray_num_workers={max(1, launch.workers * launch.gpus_per_worker)}"]
        update["overrides"] = [*ray, *request.overrides]
    elif isinstance(request, RLRequest):
        update.update(nnodes=max(1, launch.workers), gpus_per_node=launch.gpus_per_worker)
    return request.model_copy(update=update)


def seal_request(request: Request, uri: str) -> str:
    """``request.json`` sealed as the folder ``uri`` (completion marker last); returns ``uri``."""
    with tempfile.TemporaryDirectory(prefix="mini-o3-request-") as tmp:
        (Path(tmp) / REQUEST_NAME).write_text(request.model_dump_json(indent=2) + "\n")
        storage.put_dir(tmp, uri, overwrite=True)
    return uri


def read_request(uri: str) -> Request:
    """The request sealed at ``uri`` (its folder; a local ``*.json`` file is read as it is)."""
    if uri.endswith(".json") and not storage.is_remote(uri):
        return parse_request(Path(storage.local_path(uri)).read_text())
    if not storage.is_complete(uri):
        raise storage.IncompleteArtifactError(f"request URI {uri!r} is not a sealed request folder "
                                              f"(no {storage.COMPLETION_MARKER})")
    return parse_request(storage.get_text(storage.join(uri, REQUEST_NAME)))


@dataclass(frozen=True)
class RemoteStage:
    """A stage as it runs remotely: the request it runs, where it is sealed, launch settings, job name."""

    request: Request
    request_uri: str
    settings: LaunchSettings
    name: str

    @property
    def argv(self) -> list[str]:
        return ["mini-o3", "stage", "run", self.request_uri]

    def run(self) -> StageResult:
        """Seal the request, run the entrypoint (``mini_o3.launch.run_remote``), read the sealed result."""
        from mini_o3.launch import run_remote

        seal_request(self.request, self.request_uri)
        run_remote(self.argv, self.settings, name=self.name)
        return read_result(self.request.stage, self.request.out_uri)


def remote_stage(request: Request, *, name: str = "", request_uri: str = "") -> RemoteStage:
    """The remote run of ``request`` (mode ray / rayjob). Defaults: the request sealed next to its
    output (``<out_uri>-request``), the job named after the output's parent folder."""
    if request.launch.mode == "inprocess":
        raise StageError(f"{request.stage}: launch mode inprocess runs in this process, not remotely")
    out = request.out_uri.rstrip("/")
    parent = out[: -len(basename(out))].rstrip("/") or out
    return RemoteStage(remote_form(request), request_uri or f"{out}-request", request.launch,
                       name or job_name(f"mo3-{request.stage}", basename(parent)))
