"""How a stage's heavy work runs remotely: ``LaunchSettings``, results, errors and job names."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LaunchMode = Literal["inprocess", "ray", "rayjob"]
#: Kubernetes resource quantity (``apimachinery`` ``resource.Quantity``), as in the CRD.
QUANTITY = re.compile(r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
#: A qualified resource name (``[prefix/]name``), as Kubernetes accepts for extended resources.
EXTENDED_RESOURCE = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
DNS_1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
#: KubeRay ``MaxRayJobNameLength`` (53 − 6: the RayCluster name gets a 6-character suffix).
MAX_RAYJOB_NAME = 47
#: Where a stage keeps its work folder (``mini_o3.stages.common.work_dir`` reads it).
WORK_DIR_ENV = "MINI_O3_WORK_DIR"


class SecretRef(BaseModel):
    """One key of a Kubernetes Secret, exposed to the Ray pods as an env variable (``secretKeyRef``)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., description="Secret name (DNS-1123 subdomain) in the RayJob's namespace")
    key: str = Field(..., description="key inside the Secret")
    optional: bool = Field(False, description="pods start even when the Secret or key is missing")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value or len(value) > 253 or not DNS_1123_SUBDOMAIN.match(value):
            raise ValueError(f"Secret name {value!r} is not a DNS-1123 subdomain")
        return value

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not value or len(value) > 253 or not re.match(r"^[-._a-zA-Z0-9]+$", value):
            raise ValueError(f"Secret key {value!r} must be non-empty and consist of alphanumerics, '-', '_' or '.'")
        return value


class LaunchSettings(BaseModel):
    """Where a stage's heavy work runs (``--set launch.KEY=VALUE``).

    * ``inprocess`` — the caller runs the work itself (KFP pod, laptop);
    * ``ray`` — submitted to an existing Ray cluster through the Ray Jobs API at ``ray_address``
      (``None``: ``RAY_API_SERVER_ADDRESS`` / ``RAY_ADDRESS``); env from ``env`` + ``runtime_env``;
    * ``rayjob`` — a KubeRay ``RayJob`` (own cluster: a CPU head and ``workers`` worker pods with
      ``gpus_per_worker`` GPUs each; ``workers=0`` is a head-only cluster, enough for the reference
      engine, whose driver does all the work on the head).
    """

    model_config = ConfigDict(extra="forbid")

    mode: LaunchMode = Field("inprocess", description="inprocess | ray (Ray Jobs API) | rayjob (KubeRay)")
    ray_address: str | None = Field(None, description="mode ray: Ray dashboard / Jobs API URL, e.g. http://raycluster-head-svc:8265")
    namespace: str | None = Field(None, description="mode rayjob: None → the pod's namespace, else 'default'")
    image: str | None = Field(None, description="mode rayjob: image of every Ray pod; None → images.image_ref('rl')")
    workers: int = Field(1, ge=0, description="worker pods (= verl trainer.nnodes); 0 → head only")
    gpus_per_worker: int = Field(8, ge=0, description="GPUs per worker pod (= verl n_gpus_per_node); 0 → CPU-only")
    cpus_per_worker: str = Field("16", description="CPU request = limit of a worker pod")
    memory_per_worker: str = Field("128Gi", description="memory request = limit of a worker pod")
    head_cpus: str = Field("4", description="CPU request = limit of the head pod")
    head_memory: str = Field("16Gi", description="memory request = limit of the head pod")
    shm_size: str = Field("64Gi", description="/dev/shm emptyDir (medium Memory) size on every Ray pod")
    node_selector: dict[str, str] = Field(default_factory=dict, description="worker pods' nodeSelector (GPU pool)")
    tolerations: list[dict[str, Any]] = Field(default_factory=list, description="worker pods' tolerations")
    head_node_selector: dict[str, str] = Field(default_factory=dict, description="head pod's nodeSelector (CPU head: usually empty)")
    head_tolerations: list[dict[str, Any]] = Field(default_factory=list, description="head pod's tolerations")
    env: dict[str, str] = Field(default_factory=dict, description="plain env on every Ray container (and Ray Jobs env_vars)")
    secret_env: dict[str, SecretRef] = Field(default_factory=dict, description="mode rayjob: ENV_NAME → Secret key on every container")
    service_account: str | None = Field(None, description="mode rayjob: serviceAccountName of the Ray pods "
                                                         "(None / '': the namespace's default account)")
    gpu_resource: str = Field("nvidia.com/gpu", description="mode rayjob: extended resource of the worker pods' GPUs "
                                                             "(the pipeline's p0_gpu_type, e.g. amd.com/gpu)")
    ca_bundle_config_map: str | None = Field(
        None, description="mode rayjob: ConfigMap with a CA bundle (key ca_bundle_key) mounted read-only on the head and "
                          "worker pods at /etc/mini-o3/ca/ca.crt, with AWS_CA_BUNDLE pointing there (private S3 / STS "
                          "endpoints)")
    ca_bundle_secret: str | None = Field(None, description="mode rayjob: the same from a Secret (one of the two)")
    ca_bundle_key: str = Field("ca.crt", description="mode rayjob: key of the CA bundle in that ConfigMap / Secret")
    labels: dict[str, str] = Field(
        default_factory=dict, description="mode rayjob: extra labels of the RayJob and every Ray pod (the KFP "
                                          "launchers set mini-o3/kfp-run-id, which the run's exit handler "
                                          "deletes by)")
    pod_annotations: dict[str, str] = Field(
        default_factory=lambda: {"sidecar.istio.io/inject": "false"},
        description="mode rayjob: annotations of every Ray pod; the default keeps Istio sidecars out (multi-user "
                    "Kubeflow profiles inject them, and a sidecar keeps a finished submitter pod running)")
    work_volume_claim: str | None = Field(
        None, description="mode rayjob: ReadWriteMany PVC mounted on the head and every worker pod at work_mount_path; "
                          "the stage's work folder ($MINI_O3_WORK_DIR = <mount>/<job name>) lives there, so worker "
                          "pods see the model, data and checkpoints the driver sees. Required when workers >= 1")
    work_mount_path: str = Field("/mnt/mini-o3-work", description="mode rayjob: mount path of work_volume_claim")
    run_as_user: int | None = Field(1000, ge=0, description="mode rayjob: pods run as this non-root uid/gid (None: the image's user)")
    ttl_seconds_after_finished: int = Field(600, ge=0, description="keep the finished Ray cluster this long (debugging)")
    active_deadline_seconds: int | None = Field(7 * 24 * 3600, gt=0, description="server-side deadline of the RayJob")
    pre_running_deadline_seconds: int | None = Field(None, gt=0, description="deadline to reach Running (also enforced client-side, e.g. Kueue)")
    backoff_limit: int = Field(0, ge=0, description="RayJob retries (each retry is a new cluster); prefer KFP retries")
    timeout_s: float | None = Field(None, gt=0, description="overall client-side deadline; on expiry the remote job is stopped/deleted")

    @field_validator("cpus_per_worker", "memory_per_worker", "head_cpus", "head_memory", "shm_size", mode="before")
    @classmethod
    def _quantity(cls, value: Any) -> str:
        # `--set launch.cpus_per_worker=32` and YAML give numbers: 32 / 32.0 → "32", 0.5 → "0.5".
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(int(value)) if float(value).is_integer() else repr(float(value))
        if not QUANTITY.match(str(value)):
            raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. '4', '500m', '16Gi')")
        return str(value)

    @field_validator("env", "secret_env")
    @classmethod
    def _env_names(cls, value: dict) -> dict:
        bad = [name for name in value if not ENV_NAME.match(name)]
        if bad:
            raise ValueError(f"invalid env variable name(s) {bad}: use letters, digits and '_', not starting with a digit")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            prefix, _, name = key.rpartition("/")
            if ((prefix and (len(prefix) > 253 or not DNS_1123_SUBDOMAIN.match(prefix))) or not name or len(name) > 63
                    or not re.match(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", name)):
                raise ValueError(f"label key {key!r} is not a Kubernetes label name ([prefix/]name, name <= 63 characters)")
            if len(text) > 63 or not re.match(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", text):
                raise ValueError(f"label {key}={text!r}: a value has <= 63 characters, alphanumeric ends, '-_.' inside")
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 63 or not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", value)):
            raise ValueError(f"namespace {value!r} is not a DNS-1123 label")
        return value

    @field_validator("work_volume_claim")
    @classmethod
    def _claim(cls, value: str | None) -> str | None:
        if not value:  # "" (an empty pipeline parameter) means none
            return None
        if len(value) > 253 or not DNS_1123_SUBDOMAIN.match(value):
            raise ValueError(f"work_volume_claim {value!r} is not a PersistentVolumeClaim name (DNS-1123 subdomain)")
        return value

    @field_validator("ca_bundle_config_map", "ca_bundle_secret")
    @classmethod
    def _ca_source(cls, value: str | None) -> str | None:
        if not value:
            return None
        if len(value) > 253 or not DNS_1123_SUBDOMAIN.match(value):
            raise ValueError(f"{value!r} is not a ConfigMap / Secret name (DNS-1123 subdomain)")
        return value

    @field_validator("service_account")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if not value:
            return None
        if len(value) > 253 or not DNS_1123_SUBDOMAIN.match(value):
            raise ValueError(f"service_account {value!r} is not a ServiceAccount name (DNS-1123 subdomain)")
        return value

    @field_validator("gpu_resource")
    @classmethod
    def _gpu_resource(cls, value: str) -> str:
        if not EXTENDED_RESOURCE.match(value) or value in ("cpu", "memory"):
            raise ValueError(f"gpu_resource {value!r} is not an extended resource name (e.g. nvidia.com/gpu)")
        return value

    @field_validator("work_mount_path")
    @classmethod
    def _mount(cls, value: str) -> str:
        if not value.startswith("/") or value.rstrip("/") in ("", "/dev", "/dev/shm", "/tmp") or ":" in value:
            raise ValueError(f"work_mount_path {value!r} must be an absolute path other than /, /tmp, /dev, /dev/shm")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> LaunchSettings:
        both = sorted(set(self.env) & set(self.secret_env))
        if both:
            raise ValueError(f"env and secret_env both set {both}; keep each variable in one of them")
        if self.ca_bundle_config_map and self.ca_bundle_secret:
            raise ValueError("set ca_bundle_config_map or ca_bundle_secret, not both")
        return self


class LaunchError(RuntimeError):
    """A remote job failed, was stopped, timed out or could not be started; the message says what failed,
    the reported reason/message and the last log lines."""

    def __init__(self, message: str, *, logs_tail: list[str] | None = None, status: str | None = None) -> None:
        self.logs_tail = list(logs_tail or [])
        self.status = status
        tail = "\n".join(f"  | {line}" for line in self.logs_tail)
        super().__init__(f"{message}\nlast log lines:\n{tail}" if tail else message)


@dataclass
class RemoteResult:
    """A finished remote job: ``status`` is the final remote status (``SUCCEEDED``)."""

    name: str
    mode: str
    status: str
    logs_tail: list[str] = field(default_factory=list)
    seconds: float = 0.0


def job_name(prefix: str, run_id: str) -> str:
    """A DNS-1035 name of at most 47 characters (the RayJob limit), stable for a ``(prefix, run_id)``.

    ``{prefix}-{readable part of run_id}-{8 hex of sha256(run_id)}``: distinct run ids stay distinct
    after truncation, and a retried launcher gets the same name (so it adopts its job)."""
    if not run_id:
        raise ValueError("job_name: run_id must be non-empty")
    clean_prefix = re.sub(r"[^a-z0-9-]+", "-", prefix.lower()).strip("-")
    if not clean_prefix or not clean_prefix[0].isalpha():
        clean_prefix = f"j-{clean_prefix}".rstrip("-")
    digest = hashlib.sha256(f"{prefix}\0{run_id}".encode()).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9]+", "-", run_id.lower()).strip("-")
    head = clean_prefix[: MAX_RAYJOB_NAME - 9 - 2]
    room = MAX_RAYJOB_NAME - len(head) - len(digest) - 2
    slug = slug[:room].strip("-")
    name = "-".join(part for part in (head, slug, digest) if part)
    assert len(name) <= MAX_RAYJOB_NAME and DNS_1035.match(name), name
    return name
