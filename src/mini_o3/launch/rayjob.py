"""KubeRay ``RayJob`` (ray.io/v1) manifests: :func:`build_rayjob` and :func:`validate_rayjob`.

The manifest: a CPU head (``dashboard-host: 0.0.0.0``, ``num-gpus: 0``) and one worker group
(``gpu-workers``, or ``cpu-workers`` when ``gpus_per_worker`` is 0; none when ``workers`` is 0) of
exactly ``workers`` pods (replicas = min = max), each requesting ``gpus_per_worker``
``gpu_resource`` (default ``nvidia.com/gpu``; requests = limits, = verl ``n_gpus_per_node``); CPU and
memory requests = limits on every pod (ResourceQuota namespaces refuse pods without them); every Ray
pod runs as ``service_account`` and carries ``pod_annotations`` (default: no Istio sidecar); the image on every container; a ``/dev/shm`` emptyDir (medium Memory) on every Ray pod;
``env`` and ``secret_env`` (``valueFrom.secretKeyRef``, so no secret value enters the manifest)
on the head, worker and submitter containers; with ``ca_bundle_config_map`` / ``ca_bundle_secret`` a
read-only CA bundle at ``/etc/mini-o3/ca/ca.crt`` and ``AWS_CA_BUNDLE`` on the head and workers;
``labels`` (e.g. the KFP run id) on the RayJob and every pod; non-root pods (``run_as_user``), no privilege
escalation, all capabilities dropped, RuntimeDefault seccomp. With ``work_volume_claim``, the head and
every worker mount that ReadWriteMany PVC at ``work_mount_path`` and get ``MINI_O3_WORK_DIR=<mount>/<job
name>`` (the stage's work folder, the same path on every pod); the submitter pod (it only runs ``ray job
submit``) gets neither; :func:`shared_work_problem` says why a multi-pod RayJob without it cannot run a stage. ``node_selector`` / ``tolerations``
go to the worker pods (the GPU pool), ``head_node_selector`` / ``head_tolerations`` to the head —
the head needs no GPU node. ``K8sJobMode`` with a sized submitter pod, ``shutdownAfterJobFinishes``
with ``ttlSecondsAfterFinished``, ``activeDeadlineSeconds``, ``backoffLimit``, labels
``app.kubernetes.io/*`` on the RayJob (``mini-o3/*`` only on its pods: KubeRay's head Service selects
pods by its own ``app.kubernetes.io/*`` labels) and an ownerReference to the launcher pod (env ``POD_NAME`` + ``POD_UID``
from the downward API, or ``KFP_POD_NAME`` + ``KFP_POD_UID``, which the KFP v2 backend sets on every task pod) so that deleting the pod deletes the job.

:func:`validate_rayjob` checks a manifest against the RayJob CRD schema of KubeRay v1.7.0 (strict:
unknown fields are errors; :mod:`.crd_schema`) and the controller's rules the schema cannot express
(``ValidateRayJobMetadata`` / ``ValidateRayJobSpec`` / ``ValidateRayClusterSpec`` and the CRD's CEL
rules) for the one shape the builder emits (K8sJobMode on its own ``rayClusterSpec``), and raises :class:`RayJobValidationError` listing every problem with its field path.
"""

from __future__ import annotations

import os
import re
import shlex
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .crd_schema import rayjob_schema
from .settings import DNS_1035, MAX_RAYJOB_NAME, WORK_DIR_ENV, LaunchSettings

API_VERSION = "ray.io/v1"
KIND = "RayJob"
GROUP, VERSION, PLURAL = "ray.io", "v1", "rayjobs"
SHM_VOLUME = "dshm"
WORK_VOLUME = "mini-o3-work"
CA_VOLUME = "mini-o3-ca"
#: Where the CA bundle of ``ca_bundle_config_map`` / ``ca_bundle_secret`` lands on the Ray pods (AWS_CA_BUNDLE).
CA_BUNDLE_PATH = "/etc/mini-o3/ca/ca.crt"
SERVICEACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
SUBMISSION_MODE = "K8sJobMode"
#: RayJob fields of the other shapes (an existing cluster, suspension, custom deletion, another manager).
UNSUPPORTED_SPEC_FIELDS = ("clusterSelector", "suspend", "deletionStrategy", "managedBy", "submitterConfig")
SUBMITTER_RESOURCES = {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class RayJobValidationError(ValueError):
    """A RayJob manifest the API server or the KubeRay controller would reject."""

    def __init__(self, name: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"invalid RayJob {name!r}:\n" + "\n".join(f"  - {p}" for p in problems))


def ray_version() -> str:
    """The installed Ray version (``rayClusterSpec.rayVersion``; images carry the same)."""
    from importlib.metadata import version

    return version("ray")


def pod_namespace() -> str | None:
    """The namespace this process's pod runs in (``POD_NAMESPACE``, else the service-account file)."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return SERVICEACCOUNT_NAMESPACE.read_text().strip() or None
    except OSError:
        return None


def owner_from_env(namespace: str | None = None) -> dict[str, Any] | None:
    """An ownerReference to the launcher pod from ``POD_NAME`` + ``POD_UID`` (downward API), else from
    ``KFP_POD_NAME`` + ``KFP_POD_UID`` (what the KFP v2 backend sets on every task pod), else None.

    None as well when the pod runs in another namespace than ``namespace``: the garbage collector
    would treat a cross-namespace owner as missing and delete the RayJob at once."""
    name, uid = os.environ.get("POD_NAME"), os.environ.get("POD_UID")
    if not (name and uid):
        name, uid = os.environ.get("KFP_POD_NAME"), os.environ.get("KFP_POD_UID")
    if not (name and uid):
        return None
    home = pod_namespace()
    if namespace and home and home != namespace:
        return None
    # blockOwnerDeletion would need update on pods/finalizers; plain GC is enough.
    return {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}


def label_value(text: str) -> str:
    """``text`` as a valid label value (≤ 63 characters, alphanumeric ends)."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


def _env(settings: LaunchSettings) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(settings.env.items())]
    for name, ref in sorted(settings.secret_env.items()):
        key_ref: dict[str, Any] = {"name": ref.name, "key": ref.key}
        if ref.optional:
            key_ref["optional"] = True
        env.append({"name": name, "valueFrom": {"secretKeyRef": key_ref}})
    return env


def _container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _pod_security(settings: LaunchSettings) -> dict[str, Any]:
    security: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    if settings.run_as_user is not None:
        uid = settings.run_as_user
        if uid == 0:
            raise ValueError("launch.run_as_user=0 (root) contradicts runAsNonRoot; use a non-zero uid or None")
        security.update(runAsUser=uid, runAsGroup=uid, fsGroup=uid)
    return security


def work_dir_of(settings: LaunchSettings, name: str) -> str | None:
    """``$MINI_O3_WORK_DIR`` of the Ray pods of RayJob ``name``: ``<work_mount_path>/<name>`` on the
    shared claim (one folder per job; a retried launcher adopts the job and its folder), else None."""
    return f"{settings.work_mount_path}/{name}" if settings.work_volume_claim else None


def shared_work_problem(settings: LaunchSettings) -> str | None:
    """Why a RayJob of ``settings`` cannot run a stage, or None.

    A stage downloads its model and data into its work folder on the pod its driver runs on (the
    head), and Ray workers on the worker pods read them and write checkpoints at the same paths:
    with worker pods, those paths must be one shared ReadWriteMany volume."""
    if settings.mode != "rayjob" or settings.workers == 0 or settings.work_volume_claim:
        return None
    return (f"launch.work_volume_claim is not set, but this RayJob has {settings.workers} worker pod(s): the stage "
            "keeps its model, data and checkpoints in a work folder that its Ray workers on other pods read and "
            "write at the same paths, so every Ray pod must mount one shared ReadWriteMany PersistentVolumeClaim. "
            "Create one (the Helm chart's sharedVolume.create=true does) and pass its name: pipeline parameter "
            "p0_work_volume_claim, or --set launch.work_volume_claim=NAME; only a head-only RayJob (workers=0, the "
            "reference engine) runs without it")


def _ca_volume_source(settings: LaunchSettings) -> dict[str, Any] | None:
    """The volume source of the CA bundle (its key as ``ca.crt``), or None."""
    items = [{"key": settings.ca_bundle_key, "path": CA_BUNDLE_PATH.rsplit("/", 1)[1]}]
    if settings.ca_bundle_config_map:
        return {"configMap": {"name": settings.ca_bundle_config_map, "items": items}}
    if settings.ca_bundle_secret:
        return {"secret": {"secretName": settings.ca_bundle_secret, "items": items}}
    return None


def _ray_pod(settings: LaunchSettings, image: str, container: str, resources: dict[str, Any],
             node_selector: dict[str, str], tolerations: list[dict[str, Any]], labels: dict[str, str],
             work_dir: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{
            "name": container,
            "image": image,
            "resources": resources,
            "env": _env(settings),
            "volumeMounts": [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}],
            "securityContext": _container_security(),
        }],
        "volumes": [{"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": settings.shm_size}}],
        "securityContext": _pod_security(settings),
    }
    if work_dir:
        main = spec["containers"][0]
        main["volumeMounts"].append({"name": WORK_VOLUME, "mountPath": settings.work_mount_path})
        spec["volumes"].append({"name": WORK_VOLUME, "persistentVolumeClaim": {"claimName": settings.work_volume_claim}})
        if WORK_DIR_ENV not in settings.env and WORK_DIR_ENV not in settings.secret_env:  # explicit env wins
            main["env"].append({"name": WORK_DIR_ENV, "value": work_dir})
    ca_source = _ca_volume_source(settings)
    if ca_source and container != "ray-job-submitter":  # the submitter only talks to the head's dashboard
        main = spec["containers"][0]
        main["volumeMounts"].append({"name": CA_VOLUME, "mountPath": CA_BUNDLE_PATH.rsplit("/", 1)[0], "readOnly": True})
        spec["volumes"].append({"name": CA_VOLUME, **ca_source})
        if "AWS_CA_BUNDLE" not in settings.env and "AWS_CA_BUNDLE" not in settings.secret_env:  # explicit env wins
            main["env"].append({"name": "AWS_CA_BUNDLE", "value": CA_BUNDLE_PATH})
    if not spec["containers"][0]["env"]:
        del spec["containers"][0]["env"]
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        spec["tolerations"] = [dict(t) for t in tolerations]
    if settings.service_account:
        spec["serviceAccountName"] = settings.service_account
    metadata: dict[str, Any] = {"labels": dict(labels)}
    if settings.pod_annotations:
        metadata["annotations"] = dict(settings.pod_annotations)
    return {"metadata": metadata, "spec": spec}


def build_rayjob(name: str, entrypoint: list[str], settings: LaunchSettings, *, runtime_env: dict | None = None,
                 labels: dict[str, str] | None = None, owner: dict[str, Any] | None = None,
                 namespace: str | None = None, component: str = "remote") -> dict[str, Any]:
    """The RayJob manifest running ``entrypoint`` (argv) on a fresh Ray cluster sized by ``settings``.

    ``owner`` is an ownerReference (default: the launcher pod from ``POD_NAME``/``POD_UID``);
    ``labels`` are added to the RayJob and every Ray pod; ``component`` is ``app.kubernetes.io/component``.
    The result is validated (:func:`validate_rayjob`)."""
    from ..images import image_ref

    if not entrypoint:
        raise ValueError("entrypoint must be a non-empty argv list")
    image = settings.image or image_ref("rl")
    work_dir = work_dir_of(settings, name)
    all_labels = {
        "app.kubernetes.io/name": "mini-o3",
        "app.kubernetes.io/part-of": "mini-o3",
        "app.kubernetes.io/component": label_value(component) or "remote",
        "app.kubernetes.io/managed-by": "mini-o3-launcher",
        "mini-o3/job": name,
        **settings.labels,
        **(labels or {}),
    }
    # Pods get no app.kubernetes.io/* labels: KubeRay keeps a template's labels over its own, and its
    # head Service selects pods by app.kubernetes.io/name=kuberay and app.kubernetes.io/created-by.
    pod_labels = {k: v for k, v in all_labels.items() if not k.startswith("app.kubernetes.io/")}
    head_resources = {"requests": {"cpu": settings.head_cpus, "memory": settings.head_memory},
                      "limits": {"cpu": settings.head_cpus, "memory": settings.head_memory}}
    cluster: dict[str, Any] = {
        "rayVersion": ray_version(),
        "headGroupSpec": {
            "rayStartParams": {"dashboard-host": "0.0.0.0", "num-gpus": "0"},
            "template": _ray_pod(settings, image, "ray-head", head_resources, settings.head_node_selector,
                                 settings.head_tolerations, pod_labels, work_dir),
        },
    }
    if settings.workers > 0:
        worker_resources: dict[str, Any] = {
            "requests": {"cpu": settings.cpus_per_worker, "memory": settings.memory_per_worker},
            "limits": {"cpu": settings.cpus_per_worker, "memory": settings.memory_per_worker},
        }
        if settings.gpus_per_worker > 0:
            for part in ("requests", "limits"):
                worker_resources[part][settings.gpu_resource] = str(settings.gpus_per_worker)
        cluster["workerGroupSpecs"] = [{
            "groupName": "gpu-workers" if settings.gpus_per_worker > 0 else "cpu-workers",
            "replicas": settings.workers,
            "minReplicas": settings.workers,
            "maxReplicas": settings.workers,
            "rayStartParams": {"num-gpus": str(settings.gpus_per_worker)},
            "template": _ray_pod(settings, image, "ray-worker", worker_resources, settings.node_selector,
                                 settings.tolerations, pod_labels, work_dir),
        }]
    # The submitter only runs `ray job submit`; the entrypoint runs on the head (Ray driver): no work volume.
    submitter = _ray_pod(settings, image, "ray-job-submitter", SUBMITTER_RESOURCES, settings.head_node_selector,
                         settings.head_tolerations, pod_labels)
    submitter["spec"]["restartPolicy"] = "Never"
    submitter["spec"]["containers"][0].pop("volumeMounts")
    submitter["spec"].pop("volumes")
    spec: dict[str, Any] = {
        "entrypoint": shlex.join(entrypoint),
        "submissionMode": SUBMISSION_MODE,
        "submitterPodTemplate": submitter,
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
        "backoffLimit": settings.backoff_limit,
        "rayClusterSpec": cluster,
    }
    if runtime_env:
        spec["runtimeEnvYAML"] = yaml.safe_dump(runtime_env, sort_keys=True)
    if settings.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = settings.active_deadline_seconds
    if settings.pre_running_deadline_seconds is not None:
        spec["preRunningDeadlineSeconds"] = settings.pre_running_deadline_seconds
    metadata: dict[str, Any] = {"name": name, "labels": all_labels}
    if namespace:
        metadata["namespace"] = namespace
    owner = owner if owner is not None else owner_from_env(namespace)
    if owner:
        metadata["ownerReferences"] = [owner]
    manifest = {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}
    validate_rayjob(manifest)
    return manifest


@lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    schema = rayjob_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


def schema_problems(manifest: dict[str, Any]) -> list[str]:
    """The CRD-schema errors of ``manifest`` (field path: message), sorted."""
    problems = []
    for error in _validator().iter_errors(manifest):
        if error.validator == "additionalProperties" and error.validator_value is False:
            known = set(error.schema.get("properties", {}))
            unknown = sorted(set(error.instance) - known) if isinstance(error.instance, dict) else []
            for field in unknown:
                problems.append(f"{_path([*error.absolute_path, field])}: unknown field")
            continue
        problems.append(f"{_path(error.absolute_path)}: {error.message}")
    return sorted(problems)


def _labels_problems(where: str, labels: Any) -> list[str]:
    problems = []
    for key, value in (labels or {}).items():
        prefix, _, name = key.rpartition("/")
        if (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix))) or len(name) > 63 or not _LABEL_NAME.match(name):
            problems.append(f"{where}: invalid label key {key!r}")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            problems.append(f"{where}.{key}: invalid label value {value!r} (≤ 63 characters, alphanumeric ends, '-_.')")
    return problems


def _group_problems(where: str, group: dict[str, Any]) -> list[str]:
    problems = []
    if not (group.get("template", {}).get("spec", {}).get("containers")):
        problems.append(f"{where}.template.spec.containers: at least one container is required")
    params = group.get("rayStartParams") or {}
    if any(params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")) and group.get("resources"):
        problems.append(f"{where}: resources set both in rayStartParams and resources; use only one")
    if "labels" in params:
        problems.append(f"{where}.rayStartParams.labels: not supported; use the group's labels field")
    problems += _labels_problems(f"{where}.labels", group.get("labels"))
    return problems


def controller_problems(manifest: dict[str, Any]) -> list[str]:
    """What the KubeRay v1.7.0 controller / CEL rules reject that the schema lets through, for the one
    shape :func:`build_rayjob` emits (other submission modes and fields are refused outright)."""
    problems: list[str] = []
    if manifest.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion: must be {API_VERSION!r}, got {manifest.get('apiVersion')!r}")
    if manifest.get("kind") != KIND:
        problems.append(f"kind: must be {KIND!r}, got {manifest.get('kind')!r}")
    meta = manifest.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        problems.append("metadata.name: required")
    else:
        if len(name) > MAX_RAYJOB_NAME:
            problems.append(f"metadata.name: {name!r} has {len(name)} characters; a RayJob name has at most {MAX_RAYJOB_NAME}")
        if not DNS_1035.match(name):
            problems.append(f"metadata.name: {name!r} is not a DNS-1035 label (lower-case letters, digits, '-', starting with a letter)")
    problems += _labels_problems("metadata.labels", meta.get("labels"))
    spec = manifest.get("spec")
    if not isinstance(spec, dict):
        return [*problems, "spec: required"]
    shutdown = bool(spec.get("shutdownAfterJobFinishes"))
    mode = spec.get("submissionMode", SUBMISSION_MODE)
    cluster = spec.get("rayClusterSpec")
    # build_rayjob emits one shape: a K8sJobMode job on its own rayClusterSpec, deleted when it finishes.
    if mode != SUBMISSION_MODE:
        problems.append(f"spec.submissionMode: {mode!r}; the launcher runs {SUBMISSION_MODE} jobs only")
    for field in UNSUPPORTED_SPEC_FIELDS:
        if field in spec:
            problems.append(f"spec.{field}: not supported (each job gets its own cluster, deleted when it finishes)")
    ttl = spec.get("ttlSecondsAfterFinished")
    if isinstance(ttl, int) and ttl < 0:
        problems.append("spec.ttlSecondsAfterFinished: must be non-negative")
    if isinstance(ttl, int) and ttl > 0 and not shutdown:
        problems.append("spec.ttlSecondsAfterFinished: needs shutdownAfterJobFinishes: true")
    if cluster is None:
        problems.append("spec.rayClusterSpec: required")
    if isinstance(cluster, dict):
        head = cluster.get("headGroupSpec") or {}
        problems += _group_problems("spec.rayClusterSpec.headGroupSpec", head)
        seen: set[str] = set()
        for i, group in enumerate(cluster.get("workerGroupSpecs") or []):
            where = f"spec.rayClusterSpec.workerGroupSpecs[{i}]"
            problems += _group_problems(where, group)
            gname = group.get("groupName")
            if gname in seen:
                problems.append(f"{where}.groupName: duplicate group name {gname!r}")
            seen.add(gname)
            lo, n, hi = group.get("minReplicas", 0), group.get("replicas"), group.get("maxReplicas")
            if isinstance(hi, int) and isinstance(lo, int) and lo > hi:
                problems.append(f"{where}: minReplicas {lo} > maxReplicas {hi}")
            if isinstance(n, int) and isinstance(hi, int) and isinstance(lo, int) and not lo <= n <= hi:
                problems.append(f"{where}.replicas: {n} outside [minReplicas {lo}, maxReplicas {hi}]")
    runtime_env = spec.get("runtimeEnvYAML")
    if isinstance(runtime_env, str) and runtime_env.strip():
        try:
            parsed = yaml.safe_load(runtime_env)
        except yaml.YAMLError as exc:
            problems.append(f"spec.runtimeEnvYAML: not valid YAML ({exc.__class__.__name__}: {exc})")
        else:
            if not isinstance(parsed, dict):
                problems.append(f"spec.runtimeEnvYAML: must be a YAML mapping, got {type(parsed).__name__}")
    for field, low in (("activeDeadlineSeconds", 1), ("preRunningDeadlineSeconds", 1), ("backoffLimit", 0)):
        value = spec.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value < low:
            problems.append(f"spec.{field}: must be {'positive' if low else 'non-negative'}, got {value}")
    return problems


def validate_rayjob(manifest: dict[str, Any]) -> None:
    """Raise :class:`RayJobValidationError` (a ValueError naming each bad field) unless ``manifest``
    passes the strict CRD schema and the controller rules."""
    if not isinstance(manifest, dict):
        raise RayJobValidationError("?", [f"<root>: a RayJob manifest is a mapping, got {type(manifest).__name__}"])
    problems = schema_problems(manifest) + controller_problems(manifest)
    if problems:
        name = (manifest.get("metadata") or {}).get("name") or "?"
        raise RayJobValidationError(str(name), list(dict.fromkeys(problems)))
