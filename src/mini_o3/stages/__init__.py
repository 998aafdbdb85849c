"""Stage runners: each takes URIs of sealed artifacts plus overrides, runs one library stage in a
work folder, seals its output tree in object storage (completion marker last), logs an MLflow
child run and returns a ``StageResult``. The KFP components call them in their pods; the
``mini-o3 stage ...`` commands (Ray / RayJob entrypoints) call the same functions. SFT, RL and
evaluation take one typed request each (``requests``); ``mini_o3.dispatch`` runs a request here or remotely.

Modules: ``common`` (result, work folder, fetch / seal, model references, tracking), ``requests``
(``SFTRequest``, ``RLRequest``, ``EvalRequest``), ``prepare``
(cold-start data, benchmark collections, synthetic set), ``sft``, ``rl``, ``evaluate``, ``report``.
"""

from .common import StageError, StageResult, Tracking, read_result, result_uri
from .evaluate import eval_stage
from .prepare import (
    SyntheticSpec,
    parse_benchmarks,
    prepare_bench_stage,
    prepare_coldstart_stage,
)
from .report import report_stage
from .requests import EvalRequest, RLRequest, SFTRequest, parse_request
from .rl import rl_stage
from .sft import sft_stage

__all__ = [
    "EvalRequest",
    "RLRequest",
    "SFTRequest",
    "StageError",
    "StageResult",
    "SyntheticSpec",
    "Tracking",
    "eval_stage",
    "parse_benchmarks",
    "parse_request",
    "prepare_bench_stage",
    "prepare_coldstart_stage",
    "read_result",
    "report_stage",
    "result_uri",
    "rl_stage",
    "sft_stage",
]
