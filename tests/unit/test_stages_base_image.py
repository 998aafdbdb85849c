"""The components that run on the light ``mini-o3-base`` image (no torch, transformers, LLaMA-Factory,
vLLM or verl: contracts) work without those packages: data preparation, the skip check, the
MLflow bracket and the report."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent('''
    import importlib.abc, json, sys
    from pathlib import Path

    HEAVY = ("torch", "transformers", "llamafactory", "vllm", "verl", "accelerate", "datasets")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HEAVY:
                raise ImportError(f"{name} is not in the base image")

    sys.meta_path.insert(0, Block())
    out = Path(sys.argv[1])
    from mini_o3.kfp import bodies

    synth = ["n_train=2", "n_test=2", "config.width_range=[512,640]", "config.height_range=[512,640]"]
    import os

    os.environ["MLFLOW_TRACKING_URI"] = (out / "mlruns").as_uri()  # the platform ConfigMap's, as env
    parent, root = bodies.init_run(storage_root=str(out / "artifacts"), kfp_run_id="run-base-1", pipeline="mini-o3-train",
                                   experiment="base", params={"k": "1"})
    cold = bodies.prepare_coldstart(source="synthetic", run_root=root, overrides=["workers=1"], synthetic=synth,
                                    parent_run_id=parent)
    bench = bodies.prepare_bench(benchmarks="synthetic", name="eval_data", run_root=root, overrides=[], synthetic=synth,
                                 parent_run_id=parent)
    assert bodies.use_artifact(uri=bench.out_uri, kind="benchmark data") == bench.to_dict()  # its sealed record
    cold, bench = cold.out_uri, bench.out_uri
    status = bodies.finish_run(storage_root=str(out / "artifacts"), kfp_run_id="run-base-1", pipeline="mini-o3-train",
                               experiment="base", state="SUCCEEDED")
    print(json.dumps({"cold": cold, "bench": bench, "status": status, "parent": parent}))
''')


@pytest.mark.slow
def test_base_image_components_need_no_model_stack(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=120,
                          check=False, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = __import__("json").loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == "FINISHED" and result["parent"]
    assert (tmp_path / "artifacts" / "run-base-1" / "data" / "coldstart" / "Mini-o3-Coldstart.json").is_file()
    assert (tmp_path / "artifacts" / "run-base-1" / "data" / "eval_data" / "synthetic" / "val.parquet").is_file()
