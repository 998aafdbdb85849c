"""The chart's nightly evaluation follows a registered model: ``registerPipelines.schedule.modelUri``
takes ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION`` and hands it to mini-o3-evaluate unchanged
(resolved by the run, not by the chart); malformed registry references are refused by the schema."""

from __future__ import annotations

import pytest
from fixtures.helm import (  # noqa: F401 (registers `helm`, `chart`)
    CHART,
    ROOT,
    by_kind,
    chart_fixture,
    helm_fixture,
    render,
    run_helm,
)

pytestmark = pytest.mark.slow  # renders the chart with helm


@pytest.mark.parametrize("model_uri", ["models:/mini-o3@candidate", "models:/mini-o3/7", "models:/team_model@champion"])
def test_schedule_follows_a_registry_reference(helm, chart, model_uri):
    from mini_o3.kfp.client import resolve_params

    manifests = render(helm, chart, CHART / "ci" / "schedule-values.yaml",
                       sets=(f"registerPipelines.schedule.modelUri={model_uri}",))
    (job,) = by_kind(manifests, "Job")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    raw = [args[i + 1] for i, a in enumerate(args) if a == "--param"]
    params = resolve_params(ROOT / "pipelines" / "evaluate.yaml", raw)
    assert params["model_uri"] == model_uri


@pytest.mark.parametrize("model_uri", ["models:/mini-o3", "models:/mini-o3@", "models:/mini-o3/v2", "mini-o3@candidate"])
def test_malformed_registry_references_are_refused(helm, chart, model_uri):
    done = run_helm(helm, "template", "rel", str(chart), "-f", str(CHART / "ci" / "schedule-values.yaml"),
                    "--set", f"registerPipelines.schedule.modelUri={model_uri}", check=False)
    assert done.returncode != 0 and "at '/registerPipelines/schedule/modelUri'" in done.stderr, done.stderr


def test_schedule_params_switch_on_promotion_typed(helm, chart):
    """``params: {promote_if_better: true, trend_runs: 14}`` reach mini-o3-evaluate as a boolean and an integer."""
    from mini_o3.kfp.client import resolve_params

    manifests = render(helm, chart, CHART / "ci" / "schedule-values.yaml",
                       sets=("registerPipelines.schedule.modelUri=models:/mini-o3@candidate",
                             "registerPipelines.schedule.params.promote_if_better=true",
                             "registerPipelines.schedule.params.trend_runs=14"))
    (job,) = by_kind(manifests, "Job")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    params = resolve_params(ROOT / "pipelines" / "evaluate.yaml", [args[i + 1] for i, a in enumerate(args) if a == "--param"])
    assert params["promote_if_better"] is True and params["trend_runs"] == 14
