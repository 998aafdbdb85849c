"""Kubeflow Pipelines layer: thin components over the stage runners, the two pipelines, the
embedded local run and the cluster commands."""
