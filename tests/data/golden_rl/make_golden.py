"""Regenerate the golden RL fixtures: scripted policies → ``run_episode`` → masks, rewards, groups.

    .venv/bin/python tests/data/golden_rl/make_golden.py        # rewrites the JSON files here

Deterministic: a generated solid-colour image, ``ApproxTokenCounter``, the recipe's training
limits (``RLConfig().train_limits()``), the rule scorer standing in for the judge.
``tests/unit/test_golden_rl.py`` imports ``build()`` and compares it with the stored files.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from PIL import Image

from mini_o3.rl import RLConfig
from mini_o3.task import (
    MINI_O3_V1,
    ApproxTokenCounter,
    EpisodeSample,
    PolicyOutput,
    compose_reward,
    format_reward,
    group_advantages,
    run_episode,
    score_free_form,
    trainable_segments,
    valid_groups,
)
from mini_o3.task.trajectory import Trajectory
from mini_o3.task.turn_text import answer_turn, tool_turn

HERE = Path(__file__).parent
IMAGE_SIZE = (640, 480)
IMAGE_COLOR = "white"
PROBLEM = "<image>\nWhat is written on the sign?"
GROUND_TRUTH = "K7Q"
EOS_ID = 151645


def call(bbox: list[float], source: str = "original_image") -> str:
    return tool_turn("Zoom in.", bbox, source)


def answer(text: str) -> str:
    return answer_turn("I can read it.", text)


def _prompt_tokens(config: RLConfig) -> int:
    """Context after the initial prompt (prompt text + initial image tokens - 1)."""
    from mini_o3.task import resize_initial

    counter = ApproxTokenCounter()
    limits = config.train_limits()
    first = resize_initial(Image.new("RGB", IMAGE_SIZE, IMAGE_COLOR), limits.min_pixels, limits.max_pixels)
    return counter.text(MINI_O3_V1.initial_prompt(PROBLEM)) + counter.image(first.size) - 1


def scripts(config: RLConfig) -> dict[str, tuple[str, list[PolicyOutput]]]:
    """Name → (what it shows, the policy's outputs turn by turn)."""
    # A tool call whose own tokens fit under the cap but whose observation does not.
    near_cap = config.train_limits().context_cap - _prompt_tokens(config) - 10
    return {
        "tool_answer": (
            "two successful crops (the second on observation_1), then the right answer; token ids reported",
            [
                PolicyOutput(call([0.25, 0.25, 0.75, 0.75]), token_ids=(1001, 1002, 1003)),
                PolicyOutput(call([0.0, 0.0, 0.5, 0.5], "observation_1"), token_ids=(1004, 1005)),
                PolicyOutput(answer("K7Q"), token_ids=(1006, 1007, EOS_ID)),
            ],
        ),
        "error_turn": (
            "a malformed call (strict parser error observation), a crop, then a wrong answer",
            [
                PolicyOutput('<grounding>{"bbox_2d":[0.1,0.1,0.2,0.2],"source":"original_image"}</grounding>'),
                PolicyOutput(call([0.1, 0.1, 0.6, 0.6])),
                PolicyOutput(answer("K1Q")),
            ],
        ),
        "void_answer": (
            "a crop, then an answer turn with text after </answer>: void, yet strict extraction scores it",
            [
                PolicyOutput(call([0.2, 0.2, 0.4, 0.4])),
                PolicyOutput(answer("K7Q") + " Done."),
            ],
        ),
        "direct_answer": (
            "no tool, the right answer",
            [PolicyOutput(answer("K7Q"))],
        ),
        "exceed_turns": (
            "a tool call on every one of the 6 training turns: exceed (turns), no answer",
            [PolicyOutput(call([0.1, 0.1, 0.9, 0.9]))] * config.train_limits().max_turns,
        ),
        "exceed_context": (
            "a tool call that fits under the context cap whose observation would not: observation undone, exceed (context)",
            [PolicyOutput(call([0.3, 0.3, 0.6, 0.6]), num_tokens=near_cap)],
        ),
        "length_cut_answer": (
            "a crop, then an answer turn cut by the 8192-token limit (no <|im_end|>): void, that turn gets no loss",
            [
                PolicyOutput(call([0.25, 0.25, 0.75, 0.75])),
                PolicyOutput("<think>The sign is small, let me read each letter", "length", num_tokens=8192),
            ],
        ),
        "length_cut_after_answer": (
            "a crop, then <answer>K7Q</answer> and more text cut by the length limit: void, rewarded 1, that turn gets no loss",
            [
                PolicyOutput(call([0.25, 0.25, 0.75, 0.75])),
                PolicyOutput(answer("K7Q") + " And then", "length", num_tokens=8192),
            ],
        ),
        "length_cut_first_turn": (
            "the first turn cut by the length limit: no <|im_end|> in the response, nothing is trained",
            [PolicyOutput("<think>The sign", "length", num_tokens=8192)],
        ),
    }


#: Groups of one prompt: member trajectories (by name, repeats allowed) and which judge calls failed.
GROUPS: dict[str, dict[str, Any]] = {
    "mixed": {
        "about": "2 right, 1 wrong, 1 exceed: code lets the exceed 0 lower the mean, paper drops it",
        "members": ["tool_answer", "error_turn", "exceed_turns", "direct_answer"],
    },
    "one_right_two_exceed": {
        "about": "the void answer is right (trained, not masked); two exceed members",
        "members": ["void_answer", "exceed_context", "exceed_turns", "error_turn"],
    },
    "all_wrong": {
        "about": "zero variance: dropped in both modes",
        "members": ["error_turn", "error_turn", "exceed_turns", "exceed_context"],
    },
    "all_exceed": {
        "about": "every member exceeds: code drops it (std 0), paper drops it (no completed member)",
        "members": ["exceed_turns", "exceed_context"],
    },
    "one_completed": {
        "about": "paper mode keeps one completed member: size-1 stats (mean 0, std 1), std nan -> kept",
        "members": ["exceed_turns", "direct_answer"],
    },
    "completed_all_right": {
        "about": "code keeps it (exceed zeros give variance), paper drops it (completed members all right)",
        "members": ["exceed_turns", "exceed_context", "direct_answer", "tool_answer"],
    },
    "judge_failed": {
        "about": "a judge failure drops the whole group in both modes",
        "members": ["tool_answer", "error_turn"],
        "judge_failed": [False, True],
    },
    "length_cut": {
        "about": "a right answer cut by length keeps its reward 1 in the group statistics (no loss on its last turn)",
        "members": ["length_cut_after_answer", "length_cut_first_turn", "direct_answer", "error_turn"],
    },
    "singleton": {
        "about": "a group of one: mean 0, std 1 for the advantage; std undefined (nan) -> kept",
        "members": ["tool_answer"],
    },
}


def _replay(outputs: list[PolicyOutput]):
    """A policy that returns the scripted outputs in order."""
    script = iter(outputs)
    return lambda request: next(script)


def _segments(traj: Trajectory) -> list[dict[str, Any]]:
    settings = {
        "ignore_exceed=True": trainable_segments(traj, ignore_exceed=True),
        "ignore_exceed=False": trainable_segments(traj, ignore_exceed=False),
        "ignore_exceed=True,ignore_void=True": trainable_segments(traj, ignore_exceed=True, ignore_void=True),
    }
    rows = []
    for i, segment in enumerate(traj.segments):
        rows.append(
            {
                "producer": segment.producer,
                "text": segment.text,
                "image": segment.image,
                "token_ids": list(segment.token_ids) if segment.token_ids is not None else None,
                "trainable": {name: flags[i][1] for name, flags in settings.items()},
            }
        )
    return rows


def build() -> dict[str, Any]:
    """The fixture content, from scratch."""
    config = RLConfig()
    limits = config.train_limits()
    weights = config.reward_weights()
    trajectories: dict[str, Any] = {}
    for name, (about, outputs) in scripts(config).items():
        sample = EpisodeSample(PROBLEM, Image.new("RGB", IMAGE_SIZE, IMAGE_COLOR), name)
        policy = _replay(outputs)
        traj = run_episode(policy, sample, limits, prompt_set=config.prompt_set, parser=config.parser,
                           counter=ApproxTokenCounter())
        accuracy = score_free_form(traj.answer, GROUND_TRUTH)
        fmt = format_reward(traj.model_outputs)
        trajectories[name] = {
            "about": about,
            "policy": [
                {"text": o.text, "finish_reason": o.finish_reason, "num_tokens": o.num_tokens,
                 "token_ids": list(o.token_ids) if o.token_ids is not None else None}
                for o in outputs
            ],
            "termination": traj.termination,
            "exceed_reason": traj.exceed_reason,
            "num_turns": traj.num_turns,
            "context_tokens": traj.context_tokens,
            "answer": traj.answer,
            "image_sizes": [list(image.size) for image in traj.images],
            "segments": _segments(traj),
            "reward": {
                "accuracy": accuracy,
                "format": fmt,
                "used_tool": traj.used_tool,
                "score": compose_reward(accuracy, fmt, traj.used_tool, weights),
            },
        }
    groups: dict[str, Any] = {}
    for name, spec in GROUPS.items():
        members = spec["members"]
        rewards = [trajectories[m]["reward"]["score"] for m in members]
        exceed = [trajectories[m]["termination"] == "exceed" for m in members]
        failed = spec.get("judge_failed", [False] * len(members))
        key = [name] * len(members)
        groups[name] = {
            "about": spec["about"],
            "members": members,
            "rewards": rewards,
            "exceed": exceed,
            "judge_failed": failed,
            "advantages": {
                mode: group_advantages(rewards, key, exceed, mode=mode, eps=config.adv_eps) for mode in ("code", "paper")
            },
            "valid": {
                mode: valid_groups(rewards, key, failed, exceed, mode=mode, min_std=config.min_group_std)
                for mode in ("code", "paper")
            },
        }
    return {
        "sample": {
            "problem": PROBLEM,
            "ground_truth": GROUND_TRUTH,
            "image": {"size": list(IMAGE_SIZE), "color": IMAGE_COLOR, "mode": "RGB"},
            "limits": asdict(limits),
            "prompt_set": config.prompt_set,
            "parser": config.parser,
            "token_counter": "ApproxTokenCounter",
            "reward_weights": asdict(weights),
        },
        "trajectories": trajectories,
        "groups": groups,
    }


FILES = {"trajectories.json": ("sample", "trajectories"), "groups.json": ("groups",)}


def render(content: dict[str, Any]) -> dict[str, str]:
    """File name → text."""
    return {
        name: json.dumps({key: content[key] for key in keys}, indent=1, ensure_ascii=False) + "\n"
        for name, keys in FILES.items()
    }


def main() -> int:
    for name, text in render(build()).items():
        (HERE / name).write_text(text, encoding="utf-8")
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
