"""How long a remote stage may run: the RayJob deadline follows the launcher task's own deadline.

The KFP launcher task of a stage has a pod deadline (``kubernetes.set_timeout``, the pipelines'
``TIMEOUTS``; a test checks the compiled packages carry these numbers). Its RayJob gets
``activeDeadlineSeconds`` = that deadline minus :data:`MARGIN_S`: KubeRay v1.7.0 counts it from the
RayJob's start (rayjob_controller.go ``checkActiveDeadlineAndUpdateStatusIfNeeded``), which comes
after the pod's, so the RayJob ends (Failed / DeadlineExceeded, cluster shut down) before the pod
that watches it, and a launcher that died without deleting it never leaves it running for longer.
"""

from __future__ import annotations

#: activeDeadlineSeconds of the launcher task of each remote stage (= pipelines.TIMEOUTS).
TASK_TIMEOUTS = {"sft": 3 * 24 * 3600, "rl": 7 * 24 * 3600}
#: The launcher's own start-up before it creates the RayJob, and the last status read.
MARGIN_S = 600


def rayjob_deadline(stage: str) -> int:
    """``activeDeadlineSeconds`` of the RayJob of ``stage`` (sft | rl)."""
    return TASK_TIMEOUTS[stage] - MARGIN_S


def deadline_problem(stage: str, value: int | None) -> str | None:
    """Why ``launch.active_deadline_seconds=value`` cannot be used for ``stage``'s RayJob, or None."""
    bound = rayjob_deadline(stage)
    if value is None:
        return (f"{stage}: launch.active_deadline_seconds is unset: the RayJob would have no deadline and could "
                f"outlive its launcher task; give at most {bound}")
    if value > bound:
        return (f"{stage}: launch.active_deadline_seconds={value} exceeds {bound} (the launcher task's deadline "
                f"{TASK_TIMEOUTS[stage]} s minus {MARGIN_S} s): the RayJob could outlive the pod that watches it")
    return None
