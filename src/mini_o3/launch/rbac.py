"""The Kubernetes permissions the launchers need (the Helm chart renders exactly these into a Role)."""

from __future__ import annotations

#: Every API call of :class:`~mini_o3.launch.kuberay.RayJobLauncher`: RayJob create / get / list /
#: watch / delete (adopt, watch, cleanup), rayjobs/status get, pods list / get (find the submitter
#: or head pod) and pods/log get (the job's output). No secrets: pods get them by secretKeyRef.
RBAC_RULES: list[dict[str, list[str]]] = [
    {"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["create", "delete", "get", "list", "watch"]},
    {"apiGroups": ["ray.io"], "resources": ["rayjobs/status"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
]


def allows(api_group: str, resource: str, verb: str) -> bool:
    """Whether :data:`RBAC_RULES` grant ``verb`` on ``resource`` of ``api_group``."""
    return any(api_group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in RBAC_RULES)
