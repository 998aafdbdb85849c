"""Where a stage runs: ``run_stage(request)`` calls the stage in this process (launch mode
``inprocess``), or seals the request as ``request.json`` and runs the one generic entrypoint
``mini-o3 stage run <uri>`` on Ray / a KubeRay RayJob (``mini_o3.launch.run_remote``), then reads
the result the remote stage sealed. ``commands`` holds the ``mini-o3 stage`` commands.
"""

from .run import RemoteStage, read_request, remote_form, remote_stage, run_stage, seal_request, stage_function

__all__ = ["RemoteStage", "read_request", "remote_form", "remote_stage", "run_stage", "seal_request", "stage_function"]
