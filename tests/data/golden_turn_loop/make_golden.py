"""Record the turn-loop goldens: scripted model outputs → what each engine's loop makes of them.

    .venv/bin/python tests/data/golden_turn_loop/make_golden.py        # rewrites the JSON files here

- ``episode.json``: the synchronous loop (``mini_o3.task.run_episode``, used by the evaluator and
  the local RL engine): per case the policy script, every ``PolicyRequest`` the policy received
  (turn, max_tokens, images, token-stream length), the trajectory summary, its segments and an
  MD5 of every model-facing image.
- ``batched.json``: the batched rollout (``mini_o3.rollout.batched_rollout.rollout``, the local
  engine's and the ``local:`` policy's) over those cases at once: every batch handed to the
  backend and every trajectory; then a run with a sample whose image is missing (the error).
- ``agent_loop.json``: verl's async agent loop (``mini_o3.rl.verl.agent_loop.MiniO3AgentLoop``)
  with the real tiny tokenizer / processor and a scripted server manager: per case the scripted
  turns (text + EOS, or raw ids + log-probs), every generate call (prompt length, images, sampling
  params), and the whole ``AgentLoopOutput`` (ids and masks run-length encoded).

Recorded from the code before the turn loop became one step-driven core (issue 18); the tests
``tests/unit/test_turn_loop_golden.py`` and ``tests/integration/test_verl_agent_loop_golden.py``
rebuild both and compare them exactly. Deterministic: a Mandelbrot image, ``ApproxTokenCounter``
for the synchronous loop, the tiny model's tokenizer (``mini_o3.tiny``) for verl.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Union

from PIL import Image

from mini_o3.task import TRAIN_LIMITS, ApproxTokenCounter, EpisodeSample, PolicyOutput, RolloutLimits, run_episode
from mini_o3.task.turn_text import answer_turn, tool_turn

HERE = Path(__file__).parent
PROBLEM = "<image>\nWhat is written on the sign?"
IMAGE_SIZE = (640, 480)
EOS_ID = 151645
FILES = ("episode.json", "batched.json", "agent_loop.json")


def image() -> Image.Image:
    """The one original: a deterministic, non-uniform picture (crops differ pixel by pixel)."""
    return Image.effect_mandelbrot(IMAGE_SIZE, (-2.0, -1.2, 1.0, 1.2), 64).convert("RGB")


def call(bbox: list[Any], source: str = "original_image") -> str:
    return tool_turn("Zoom in.", bbox, source)


def answer(text: str) -> str:
    return answer_turn("I can read it.", text)


MALFORMED = '<grounding>{"bbox_2d":[0.1,0.1,0.2,0.2],"source":"original_image"}</grounding>'
WIDE = call([0.1, 0.1, 0.9, 0.9])


def _md5(im: Image.Image) -> str:
    return hashlib.md5(im.tobytes()).hexdigest()


def _rle(values: list[Any]) -> list[list[Any]]:
    runs: list[list[Any]] = []
    for value in values:
        if runs and runs[-1][0] == value:
            runs[-1][1] += 1
        else:
            runs.append([value, 1])
    return runs


# -- the synchronous loop -----------------------------------------------------------------------
def _prompt_tokens(limits: RolloutLimits) -> int:
    from mini_o3.task import MINI_O3_V1, resize_initial

    counter = ApproxTokenCounter()
    first = resize_initial(image(), limits.min_pixels, limits.max_pixels)
    return counter.text(MINI_O3_V1.initial_prompt(PROBLEM)) + counter.image(first.size) - 1


def episode_cases() -> dict[str, dict[str, Any]]:
    """Name → ``outputs`` (the policy's returns turn by turn), ``limits`` changes, ``parser``."""
    prompt = _prompt_tokens(TRAIN_LIMITS)
    cap = TRAIN_LIMITS.context_cap
    return {
        "tool_twice_then_answer": {"outputs": [
            PolicyOutput(call([0.25, 0.25, 0.75, 0.75]), token_ids=(1001, 1002, 1003)),
            PolicyOutput(call([0.0, 0.0, 0.5, 0.5], "observation_1"), token_ids=(1004, 1005)),
            PolicyOutput(answer("K7Q"), token_ids=(1006, 1007, EOS_ID))]},
        "answers_without_ids": {"outputs": [
            PolicyOutput(call([0.2, 0.2, 0.6, 0.6])), answer("K7Q")]},
        "malformed_then_crop_then_answer": {"outputs": [MALFORMED, call([0.1, 0.1, 0.6, 0.6]), answer("K1Q")]},
        "lenient_parser": {"parser": "lenient", "outputs": [MALFORMED, answer("K7Q")]},
        "crop_errors": {"outputs": [call([0.1, 0.1, 0.5, 0.5], "observation_5"), call([0.5, 0.1, 0.5, 0.9]),
                                    call([0.0, 0.0, 1.0, 0.001]), answer("K7Q")]},
        "absolute_coordinates": {"limits": {"relative_coordinates": False},
                                 "outputs": [call([64, 48, 320, 240]), answer("K7Q")]},
        "invalid_utf8": {"outputs": [b"<think>\xff\xfe</think>\n<answer>K7Q</answer>",
                                     PolicyOutput("\ud800 lone", token_ids=(7,)), answer("K7Q")]},
        "text_after_grounding": {"outputs": [
            PolicyOutput(call([0.25, 0.25, 0.75, 0.75]) + " and more text", token_ids=(1, 2, 3, 4)),
            PolicyOutput(answer("K7Q"), token_ids=(5, EOS_ID))]},
        "length_cut_call": {"outputs": [PolicyOutput(call([0.25, 0.25, 0.75, 0.75]), "length", num_tokens=8192),
                                        answer("K7Q")]},
        "length_cut_answer": {"outputs": [PolicyOutput(call([0.25, 0.25, 0.75, 0.75])),
                                          PolicyOutput("<think>The sign is small", "length", num_tokens=8192)]},
        "length_cut_after_answer": {"outputs": [PolicyOutput(answer("K7Q") + " And", "length", num_tokens=8192)]},
        "void_answer": {"outputs": [call([0.2, 0.2, 0.4, 0.4]), answer("K7Q") + " Done."]},
        "no_answer_tag": {"outputs": ["<think>hmm</think> K7Q"]},
        "direct_answer": {"outputs": [answer("K7Q")]},
        "exceed_turns": {"outputs": [WIDE] * TRAIN_LIMITS.max_turns},
        "exceed_turns_val": {"limits": {"max_turns": 3}, "outputs": [WIDE] * 3},
        "exceed_images": {"limits": {"max_images": 2}, "outputs": [WIDE, WIDE]},
        "exceed_context_by_the_call": {"outputs": [PolicyOutput(WIDE, num_tokens=cap - prompt)]},
        "exceed_context_by_the_observation": {"outputs": [PolicyOutput(WIDE, num_tokens=cap - prompt - 10)]},
        "exceed_context_by_an_error": {"outputs": [PolicyOutput(MALFORMED, num_tokens=cap - prompt - 10)]},
        "small_context_budget": {"limits": {"max_context": prompt + 2000 + 1200},
                                 "outputs": [PolicyOutput(WIDE, num_tokens=40), PolicyOutput(WIDE, num_tokens=30),
                                             answer("K7Q")]},
        "small_turn_budget": {"limits": {"max_tokens_per_turn": 16, "min_pixels": 10_000, "max_pixels": 60_000},
                              "outputs": [WIDE, call([0.0, 0.0, 0.5, 0.5], "observation_1"), answer("K7Q")]},
    }


def _script(outputs: list[Union[str, bytes, PolicyOutput]]) -> list[Any]:
    rows = []
    for o in outputs:
        if isinstance(o, PolicyOutput):
            rows.append({"text": o.text.hex() if isinstance(o.text, bytes) else o.text.encode("utf-8", "surrogatepass").decode("utf-8", "backslashreplace"),
                         "finish_reason": o.finish_reason, "num_tokens": o.num_tokens,
                         "token_ids": list(o.token_ids) if o.token_ids is not None else None})
        else:
            rows.append(o.hex() if isinstance(o, bytes) else o)
    return rows


def build_episode() -> dict[str, Any]:
    cases = {}
    for name, case in episode_cases().items():
        limits = TRAIN_LIMITS.with_(**case.get("limits", {}))
        script, requests = iter(case["outputs"]), []

        def policy(request, script=script, requests=requests):
            requests.append({"turn": request.turn, "max_tokens": request.max_tokens, "stop": list(request.stop),
                             "images": len(request.trajectory.images),
                             "stream_chars": len(request.trajectory.token_stream())})
            return next(script)

        traj = run_episode(policy, EpisodeSample(PROBLEM, image(), name), limits, parser=case.get("parser", "strict"),
                           counter=ApproxTokenCounter())
        cases[name] = {
            "limits": case.get("limits", {}),
            "parser": case.get("parser", "strict"),
            "script": _script(case["outputs"]),
            "requests": requests,
            "summary": traj.summary(),
            "segments": [{"producer": s.producer, "text": s.text, "image": s.image,
                          "token_ids": list(s.token_ids) if s.token_ids is not None else None} for s in traj.segments],
            "tool_calls": [[list(t.tool_call.bbox), t.tool_call.source] if t.tool_call else None for t in traj.turns],
            "images_md5": [_md5(im) for im in traj.images],
            "raw_images_md5": [_md5(im) for im in traj.raw_images],
            "used_tool": traj.used_tool,
        }
    return {"problem": PROBLEM, "image_size": list(IMAGE_SIZE), "counter": "ApproxTokenCounter", "cases": cases}


# -- the batched rollout (many synchronous episodes, one generate call per round) ---------------
class _ScriptedBackend:
    """Answers each request with the next scripted output of its sample (named in the prompt);
    records every batch: (sample, max_tokens, images, stream length) per request."""

    def __init__(self, scripts: dict[str, list[Any]]):
        self.scripts = {name: iter(outputs) for name, outputs in scripts.items()}
        self.batches: list[list[list[Any]]] = []

    def generate(self, requests, sampling):
        names = [r.prompt.split("Case ")[1].split("?")[0] for r in requests]
        self.batches.append([[n, r.max_tokens, len(r.images), len(r.prompt)] for n, r in zip(names, requests)])
        outputs = [next(self.scripts[n]) for n in names]
        return [o if isinstance(o, PolicyOutput) else PolicyOutput(o) for o in outputs]


def build_batched() -> dict[str, Any]:
    """The cases of ``episode.json`` that use the training limits and the strict parser, as one
    batched rollout (at most 5 live episodes), then the same with a sample whose image is missing."""
    from mini_o3.rollout.batched_rollout import RolloutError, rollout
    from mini_o3.rollout.settings import SamplingConfig

    cases = {n: c["outputs"] for n, c in episode_cases().items() if not c.get("limits") and not c.get("parser")}
    samples = [EpisodeSample(f"<image>\nCase {name}?", image(), name) for name in cases]
    backend = _ScriptedBackend(cases)
    trajectories = rollout(backend, samples, TRAIN_LIMITS, SamplingConfig(), counter=ApproxTokenCounter(), max_live=5)
    runs = {"all": {"batches": backend.batches, "trajectories": {
        t.sample_id: {"summary": t.summary(), "stream": t.token_stream(), "images_md5": [_md5(im) for im in t.images]}
        for t in trajectories}}}
    broken = samples[:3] + [EpisodeSample("<image>\nCase missing?", HERE / "missing.png", "missing")] + samples[3:6]
    backend = _ScriptedBackend(cases | {"missing": []})
    try:
        rollout(backend, broken, TRAIN_LIMITS, SamplingConfig(), counter=ApproxTokenCounter(), max_live=2)
        error = None
    except RolloutError as exc:
        error = str(exc).replace(str(HERE), "<golden>")
    runs["missing_image"] = {"batches": backend.batches, "error": error}
    return {"image_size": list(IMAGE_SIZE), "counter": "ApproxTokenCounter", "max_live": 5, "runs": runs}


# -- verl's agent loop --------------------------------------------------------------------------
def agent_loop_cases(processor: Any) -> dict[str, dict[str, Any]]:
    """Name → ``turns`` (``[text, ends with EOS]``) or ``ids`` (+ ``logprobs``), loop ``settings``."""
    tok = processor.tokenizer

    def ids(text: str, eos: bool = False) -> list[int]:
        return list(tok.encode(text, add_special_tokens=False)) + ([EOS_ID] if eos else [])

    from fixtures.verl_loop import make_loop

    probe = make_loop(processor, None)
    prompt = len(probe.encode(probe.prompts.initial_prompt(PROBLEM), [probe_image(probe)]))
    wide = len(ids(WIDE))
    return {
        "tool_twice_then_answer": {"turns": [[call([0.25, 0.25, 0.75, 0.75]), False],
                                             [call([0.0, 0.0, 0.5, 0.5], "observation_1"), False], [answer("K7Q"), True]]},
        "logprobs_kept": {"ids": [ids(call([0.25, 0.25, 0.75, 0.75])), ids(answer("K7Q"), True)],
                          "logprobs": [[-0.5] * len(ids(call([0.25, 0.25, 0.75, 0.75]))), [-0.25] * len(ids(answer("K7Q"), True))]},
        "logprobs_dropped_after_a_cut": {"ids": [ids(call([0.25, 0.25, 0.75, 0.75]) + " and more"), ids(answer("K7Q"), True)],
                                         "logprobs": [[-0.5] * len(ids(call([0.25, 0.25, 0.75, 0.75]) + " and more")),
                                                      [-0.25] * len(ids(answer("K7Q"), True))]},
        "padded_vocab_ids": {"ids": [ids(call([0.25, 0.25, 0.75, 0.75]))[:3] + [151700] + ids(call([0.25, 0.25, 0.75, 0.75]))[3:],
                                     ids(answer("K7Q"), True) + [151999]],
                             "logprobs": [[-1.0] * (len(ids(call([0.25, 0.25, 0.75, 0.75]))) + 1),
                                          [-2.0] * (len(ids(answer("K7Q"), True)) + 1)]},
        "malformed_then_crop_then_answer": {"turns": [[MALFORMED, False], [call([0.1, 0.1, 0.6, 0.6]), False], [answer("K1Q"), True]]},
        "lenient_parser": {"format": "minio3_grounding_lenient", "turns": [[MALFORMED, False], [answer("K7Q"), True]]},
        "crop_errors": {"turns": [[call([0.1, 0.1, 0.5, 0.5], "observation_5"), False], [call([0.5, 0.1, 0.5, 0.9]), False],
                                  [call([0.0, 0.0, 1.0, 0.001]), False], [answer("K7Q"), True]]},
        "absolute_coordinates": {"settings": {"relative_coordinates": False}, "tool": {"relative_coordinates": False},
                                 "turns": [[call([64, 48, 320, 240]), False], [answer("K7Q"), True]]},
        "void_answer": {"turns": [[call([0.2, 0.2, 0.4, 0.4]), False], [answer("K7Q") + " Done.", True]]},
        "void_answer_ignored": {"settings": {"ignore_void": True},
                                "turns": [[call([0.2, 0.2, 0.4, 0.4]), False], [answer("K7Q") + " Done.", True]]},
        "no_eos_answer": {"turns": [[answer("K7Q"), False]]},
        "direct_answer": {"turns": [[answer("K7Q"), True]]},
        "length_cut_answer": {"settings": {"max_tokens_per_turn": 12},
                              "turns": [[call([0.25, 0.25, 0.75, 0.75]), False], ["<think>The sign is small, let me read each letter", False]]},
        "length_cut_first_turn": {"settings": {"max_tokens_per_turn": 8}, "turns": [["<think>The sign is small, let me read each letter", False]]},
        "exceed_turns": {"turns": [[WIDE, False]] * 6},
        "exceed_turns_trained": {"settings": {"ignore_exceed": False}, "turns": [[WIDE, False]] * 6},
        "exceed_images": {"settings": {"max_images": 2}, "turns": [[WIDE, False]] * 2},
        "exceed_context_by_the_call": {"settings": {"max_context": prompt + wide + 2000 - 1}, "turns": [[WIDE, False]]},
        "exceed_context_by_the_observation": {"settings": {"max_context": prompt + wide + 2000 + 30}, "turns": [[WIDE, False]]},
        "exceed_context_by_an_error": {"settings": {"max_context": prompt + len(ids(MALFORMED)) + 2000 + 20},
                                       "turns": [[MALFORMED, False]]},
        "small_context_budget": {"settings": {"max_context": prompt + 2000 + 1200},
                                 "turns": [[WIDE, False], [answer("K7Q"), True]]},
        "validation_twelve_turns": {"settings": {"max_turns": 12, "split": "val"},
                                    "turns": [[WIDE, False]] * 8 + [[answer("K7Q"), True]]},
    }


def probe_image(loop: Any) -> Image.Image:
    from mini_o3.task import resize_initial

    return resize_initial(image(), loop.limits.min_pixels, loop.limits.max_pixels)


def build_agent_loop(processor: Any) -> dict[str, Any]:
    from fixtures.verl_loop import IdServer, ScriptedServer, make_loop, run

    from mini_o3.rl.verl.tool import CropTool

    cases = {}
    for name, case in agent_loop_cases(processor).items():
        if "turns" in case:
            server: Any = ScriptedServer(processor.tokenizer, [tuple(t) for t in case["turns"]])
        else:
            server = IdServer(case["ids"], case.get("logprobs"))
        loop = make_loop(processor, server, format=case.get("format", "minio3_grounding"),
                         tool=CropTool(case.get("tool", {})), **case.get("settings", {}))
        out = run(loop, PROBLEM, image())
        cases[name] = {
            "input": {k: case[k] for k in ("turns", "ids", "logprobs", "settings", "format", "tool") if k in case},
            "calls": server.calls,
            "prompt_ids": _rle(list(out.prompt_ids)),
            "response_ids": _rle(list(out.response_ids)),
            "response_mask": _rle(list(out.response_mask)),
            "response_logprobs": _rle(list(out.response_logprobs)) if out.response_logprobs is not None else None,
            "images": [[list(im.size), _md5(im)] for im in out.multi_modal_data["images"]],
            "num_turns": out.num_turns,
            "metrics": sorted(dict(out.metrics)),  # the timings vary: only their names
            "extra_fields": out.extra_fields,
        }
    return {"problem": PROBLEM, "image_size": list(IMAGE_SIZE), "tokenizer": "mini_o3.tiny (seed 0)", "cases": cases}


def render(content: dict[str, Any]) -> str:
    return json.dumps(content, indent=1, ensure_ascii=False) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    sys.path.insert(0, str(HERE.parents[1]))  # tests/: the shared fixtures
    from transformers import AutoProcessor

    from mini_o3.tiny import build_tiny_model

    (HERE / "episode.json").write_text(render(build_episode()), encoding="utf-8")
    (HERE / "batched.json").write_text(render(build_batched()), encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        processor = AutoProcessor.from_pretrained(str(build_tiny_model(Path(tmp) / "model", seed=0)))
        (HERE / "agent_loop.json").write_text(render(build_agent_loop(processor)), encoding="utf-8")
    print(f"wrote {', '.join(str(HERE / name) for name in FILES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
