"""Kubeflow Pipelines layer: thin components over the stage runners, the two pipelines, the
embedded local run and the cluster commands.

Modules: ``bodies`` (what component bodies call, plain Python: bookkeeping, and for SFT / RL /
evaluation the typed stage request, run by ``mini_o3.dispatch``), ``components`` (the lightweight
components, built against ``mini_o3.images``), ``pipelines`` (``mini-o3-train``,
``mini-o3-evaluate``), ``compile`` (committed YAML under ``pipelines/`` and ``components/``),
``local_run`` (``mini-o3 run`` under kfp.local), ``client`` (upload / submit / schedule through
``kfp.Client``), ``cron`` (5-field → KFP's 6-field cron, fire times), ``commands`` (the pipeline CLI; ``mini-o3 stage`` lives in ``mini_o3.dispatch``).
Importing this package imports neither kfp nor torch.
"""
