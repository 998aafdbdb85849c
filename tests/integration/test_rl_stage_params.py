"""The RL stage logs the config the engine ran with (``rl_config.json``: model and data actually
read, ``RLConfig.with_inputs``) as its MLflow params, as the SFT stage logs ``result.config``;
not the pre-run config, whose model_path / train_files still are the seed's."""

from __future__ import annotations

import json

import pytest

from mini_o3 import storage, tracking
from mini_o3.data.synthetic import SynthConfig, generate
from mini_o3.kfp.local_run import TINY_RL
from mini_o3.stages import RLRequest, rl_stage
from mini_o3.stages.common import Tracking

pytestmark = pytest.mark.slow


def test_rl_stage_params_are_the_recorded_rl_config(tiny_dir, tmp_path):
    data = tmp_path / "sealed" / "synth"
    generate(SynthConfig(width_range=(512, 640), height_range=(512, 640)), data, 2, 1, seed=0, progress=False)
    storage.mark_complete(data)
    model_uri = str(tmp_path / "sealed" / "model")
    storage.put_dir(tiny_dir, model_uri)
    uri = tracking.default_tracking_uri(tmp_path)
    parent = tracking.start_pipeline_run(experiment="rl", kfp_run_id="run-1", pipeline="train", params={},
                                         tracking_uri=uri)
    out_uri = str(tmp_path / "rl")
    rl_stage(RLRequest(engine="local", model_uri=model_uri, train_uris=[str(data)], out_uri=out_uri,
                       overrides=[*TINY_RL, "test_freq=-1"], tracking=Tracking(parent, uri)),
             work=str(tmp_path / "work"), progress=False)
    recorded = json.loads((tmp_path / "rl" / "run" / "rl_config.json").read_text())
    assert recorded["model_path"] == model_uri and recorded["train_files"] == [str(data)]  # local URIs: read in place
    client = tracking.client(uri)
    runs = client.search_runs([client.get_run(parent).info.experiment_id])
    params = next(r for r in runs if r.data.tags.get("mini_o3.stage") == "rl").data.params
    assert json.loads(params["rl_config"]) == recorded
    assert "Mini-o3-7B-SFT" not in params["rl_config"] and "VisualProbe" not in params["rl_config"]
