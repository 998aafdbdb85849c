"""What the remote stages' Ray pods need beyond ``LaunchSettings``: the Secret env (S3 credentials and
the judge keys by Secret reference) and the CPUs of a worker pod per GPU:

* LLaMA-Factory SFT in its Ray mode: each training worker takes one ``{GPU: 1, CPU: 10}`` bundle;
* verl 0.9.1 reserves one ``{CPU: max_colocate_count = 3, GPU: 1}`` bundle per GPU, STRICT_PACK per
  node, and checks only GPUs before it waits on the placement group; KubeRay gives Ray the
  container's CPU limit as ``--num-cpus``, so the CPU limit must cover the bundles and more.
"""

from __future__ import annotations

from .settings import SecretRef

S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
#: Azure OpenAI (END_POINT, API_KEY, API_VERSION) or OpenAI-compatible (OPENAI_BASE_URL, OPENAI_API_KEY).
JUDGE_SECRET_KEYS = ("END_POINT", "API_KEY", "API_VERSION", "OPENAI_BASE_URL", "OPENAI_API_KEY")
#: LLaMA-Factory 0.9.5 places each Ray training worker on {GPU: 1, CPU: 10}.
SFT_CPUS_PER_GPU = 10


def s3_secret_env(secret_name: str) -> dict[str, SecretRef]:
    """``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` from the S3 Secret (keys of the same names)."""
    return {key: SecretRef(name=secret_name, key=key) for key in S3_SECRET_KEYS}


def judge_secret_env(secret_name: str) -> dict[str, SecretRef]:
    """The judge keys from the judge Secret; each optional (a Secret holds the Azure or the OpenAI set)."""
    return {key: SecretRef(name=secret_name, key=key, optional=True) for key in JUDGE_SECRET_KEYS}


#: verl 0.9.1 ``ResourcePoolManager.max_colocate_count`` (single_controller/ray/base.py): the CPUs of
#: each GPU's placement-group bundle.
VERL_BUNDLE_CPUS = 3
#: CPUs per GPU beyond the bundle: the GPU's vLLM server actor (hard node affinity, outside the
#: placement group: Ray needs a free CPU to schedule it) and the busy vLLM engine process it starts.
VERL_SERVER_CPUS = 1
#: Per worker pod: the Ray node's own processes, agent-loop / reward-loop workers (spread over all
#: nodes: crop tool, reward) and data-loading threads.
VERL_POD_CPUS = 4


def verl_cpus_per_worker(gpus: int) -> str:
    """CPUs (request = limit = Ray ``--num-cpus``) of a verl worker pod with ``gpus`` GPUs: verl's
    ``{CPU: 3, GPU: 1}`` bundle and a vLLM server per GPU, plus the pod's share of the rest."""
    return str((VERL_BUNDLE_CPUS + VERL_SERVER_CPUS) * gpus + VERL_POD_CPUS)


def sft_cpus_per_worker(gpus: int) -> str:
    """CPUs of a worker pod with ``gpus`` GPUs for LLaMA-Factory's Ray mode: its placement group
    reserves {GPU: 1, CPU: 10} per GPU of the cluster, plus 2 for the Ray processes themselves."""
    return str(SFT_CPUS_PER_GPU * gpus + 2)
