"""The Mini-o3 agent loop for verl 0.9.1 (``agent_loops.yaml`` entries ``minio3_train`` / ``minio3_val``).

One episode per call of ``run``, driving the task kit's turn-loop core
(``mini_o3.task.turn_loop.EpisodeState``, the one ``run_episode`` drives) with verl's server
manager, tool parser and crop tool:

* the prompt is the prompt set's raw token stream (``PromptSet.initial_prompt``) with the original
  resized LANCZOS into [min_pixels, max_pixels]; every turn is generated with ``stop=</grounding>``
  and ``max_tokens = state.budget()`` (``min(max_tokens_per_turn, max_context - context)``);
* ``state.model_turn`` ends the episode on a turn without ``<grounding>…</grounding>`` (answer /
  void) or on a tool call past the limits (exceed: images, last turn, context); otherwise the crop
  tool runs (``CropTool``; raw images from the state) and the state's observation / error
  injection is appended as environment tokens, unless ``state.observe`` finds it would reach the
  context cap (not added: exceed);
* ``response_mask`` is 1 on generated tokens and 0 on injected ones (image tokens included), and
  0 after the response's last ``<|im_end|>`` (``final_eos_mask``, the released code's attention
  mask: a last turn cut by the length limit gets no loss); an exceed trajectory
  (``ignore_exceed``) or a void one (``ignore_void``) gets an all-zero mask;
* ``extra_fields`` carry ``termination``, ``exceed``, ``exceed_reason``, ``void``, ``turns``,
  ``num_crops``, ``context_tokens``, ``turn_outputs`` (the assistant texts the reward reads) and
  ``split``; the reward function and the metrics receive them.

Which entry runs a row is its ``agent_name`` column: the data converter writes ``minio3_train`` on
training rows (6 turns) and ``minio3_val`` on validation rows (12 turns), because verl 0.9.1 has
one ``multi_turn.max_assistant_turns`` for both.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Optional
from uuid import uuid4

from PIL import Image
from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput, ToolListWrap
from verl.experimental.agent_loop.tool_parser import ToolParser
from verl.utils.tokenizer import build_multimodal_processor_inputs

from mini_o3.rollout.settings import LimitsConfig
from mini_o3.task import DEFAULT_PROMPT_SET, GroundingError, get_prompt_set, resize_initial
from mini_o3.task.grpo import final_eos_mask
from mini_o3.task.turn_loop import EpisodeState, Observation, cut_at_tool_stop
from mini_o3.task.prompts import IM_END, TOOL_STOP

from . import parser as _parser  # noqa: F401  (registers the minio3_grounding parsers in this process)
from .names import CROP_TOOL_NAME, TRAIN_AGENT, VAL_AGENT  # noqa: F401


@dataclass
class CropToolState:
    """What the crop tool reads (``agent_data``): the episode's full-resolution images (original,
    then raw crops) and its model-facing images (``image_data``, the verl name)."""

    raw_images: list[Image.Image]
    image_data: list[Image.Image]


class MiniO3AgentLoop(AgentLoopBase):
    """Multi-turn crop-tool episodes with Mini-o3's limits, masks and exceed rules."""

    def __init__(
        self,
        *args: Any,
        tools: Optional[ToolListWrap] = None,
        split: str = "train",
        prompt_set: str = DEFAULT_PROMPT_SET,
        ignore_exceed: bool = True,
        ignore_void: bool = False,
        mask_cut_final_turn: bool = True,
        **kwargs: Any,
    ):
        # The entry's limit keys (agent_loops.yaml: ``LimitsConfig`` fields; unset: training defaults).
        limits = {name: kwargs.pop(name) for name in LimitsConfig.model_fields if name in kwargs}
        super().__init__(*args, **kwargs)
        self.split = split
        self.limits = LimitsConfig(**limits).limits()
        self.prompts = get_prompt_set(prompt_set)
        self.ignore_exceed, self.ignore_void = ignore_exceed, ignore_void
        self.mask_cut_final_turn = mask_cut_final_turn
        by_name = {tool.name: tool for tool in (tools.tools if tools else [])}
        if CROP_TOOL_NAME not in by_name:
            raise ValueError(
                f"MiniO3AgentLoop needs the {CROP_TOOL_NAME!r} tool (multi_turn.tool_config_path with "
                f"mini_o3.rl.verl.tool.CropTool); got tools {sorted(by_name)}"
            )
        self.crop_tool = by_name[CROP_TOOL_NAME]
        self.tool_parser = ToolParser.get_tool_parser(self.rollout_config.multi_turn.format, self.tokenizer)
        self.response_length = int(self.rollout_config.response_length)
        # Ids past the tokenizer's vocabulary (Qwen2.5's padded embedding rows) are dropped, as the reference does.
        self.vocab_size = len(self.tokenizer)
        self.im_end_id = self.tokenizer.convert_tokens_to_ids(IM_END)
        self.eos_ids = {i for i in (self.tokenizer.eos_token_id, self.im_end_id) if i is not None}

    # -- tokenisation ---------------------------------------------------------------------------
    def encode(self, text: str, images: Optional[list[Image.Image]] = None) -> list[int]:
        """Token ids of a raw token-stream string; each image pad is expanded to its image's
        token count by the processor (the ids verl trains on and hands to vLLM)."""
        if not images:
            return list(self.tokenizer.encode(text, add_special_tokens=False))
        out = build_multimodal_processor_inputs(self.processor, text=[text], images=images,
                                                mm_processor_kwargs=self._get_mm_processor_kwargs() or None)
        ids = out["input_ids"]
        ids = ids[0] if hasattr(ids, "__len__") and len(ids) and hasattr(ids[0], "__len__") else ids
        return [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]

    # -- the episode ----------------------------------------------------------------------------
    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        extra_info = dict(kwargs.get("extra_info") or {})
        record = extra_info.get("record") or {}
        problem = record.get("problem")
        if not problem:
            raise ValueError(f"row {kwargs.get('index')!r}: extra_info.record.problem is missing (convert data with mini_o3.rl.verl.data)")
        raw = _original_image(kwargs.get("raw_prompt") or [], kwargs.get("index"))
        limits = self.limits
        first = resize_initial(raw, limits.min_pixels, limits.max_pixels)
        prompt_ids = await asyncio.get_running_loop().run_in_executor(None, self.encode, self.prompts.initial_prompt(problem), [first])
        state = EpisodeState(limits, self.prompts, [raw], [first], len(prompt_ids))
        response_ids: list[int] = []
        mask: list[int] = []
        logprobs: Optional[list[float]] = []
        request_id = uuid4().hex
        metrics = {"generate_sequences": 0.0, "tool_calls": 0.0}
        params = {**sampling_params, "stop": [TOOL_STOP], "include_stop_str_in_output": True}

        while True:
            budget = state.budget()
            start = time.perf_counter()
            out = await self.server_manager.generate(
                request_id=request_id, prompt_ids=prompt_ids + response_ids,
                sampling_params={**params, "max_tokens": budget}, image_data=list(state.images),
            )
            metrics["generate_sequences"] += time.perf_counter() - start
            ids, text, finish, turn_logprobs = self._turn(list(out.token_ids), out.log_probs, budget)
            response_ids += ids
            mask += [1] * len(ids)
            logprobs = logprobs + turn_logprobs if logprobs is not None and turn_logprobs is not None else None
            _, calls = await self.tool_parser.extract_tool_calls(ids)
            if state.model_turn(text, finish, len(ids), tool_call=bool(calls)) is not None:
                break
            start = time.perf_counter()
            observation = await self._tool_observation(calls[0], state)
            metrics["tool_calls"] += time.perf_counter() - start
            images = [observation.image] if observation.image is not None else None
            inj_ids = await asyncio.get_running_loop().run_in_executor(None, self.encode, observation.text, images)
            if state.observe(observation, len(inj_ids)) is not None:
                break  # the observation is not added
            response_ids += inj_ids
            mask += [0] * len(inj_ids)
            if logprobs is not None:
                logprobs += [0.0] * len(inj_ids)

        if not state.trains(ignore_exceed=self.ignore_exceed, ignore_void=self.ignore_void):
            mask = [0] * len(mask)
        extra_fields = {
            "termination": state.termination,
            "exceed": state.termination == "exceed",
            "exceed_reason": state.exceed_reason,
            "void": state.termination == "void",
            "turns": len(state.outputs),
            "num_crops": len(state.images) - 1,
            "context_tokens": state.context_tokens,
            "turn_outputs": state.outputs,
            "split": self.split,
        }
        n = self.response_length
        response_ids, mask = response_ids[:n], mask[:n]
        if self.mask_cut_final_turn:  # after the cut, as upstream
            mask = [m * e for m, e in zip(mask, final_eos_mask(response_ids, self.im_end_id))]
        return AgentLoopOutput(
            prompt_ids=prompt_ids,
            response_ids=response_ids,
            response_mask=mask,
            response_logprobs=logprobs[:n] if logprobs else None,
            multi_modal_data={"images": list(state.images)},
            mm_processor_kwargs=self._get_mm_processor_kwargs(),
            num_turns=len(state.outputs) + state.turn + 1,  # verl's convention: user + assistant turns (+ observations) + 1
            metrics=metrics,
            extra_fields=extra_fields,
        )

    def _turn(self, ids: list[int], logprobs: Optional[list[float]], budget: int):
        """Filter padded-vocabulary ids, decode, cut anything after ``</grounding>`` (then the ids
        are re-tokenised) and tell a length cut from a stop."""
        keep = [i < self.vocab_size for i in ids]
        ids = [i for i, k in zip(ids, keep) if k]
        if logprobs is not None:
            logprobs = [p for p, k in zip(logprobs, keep) if k] if len(logprobs) == len(keep) else None
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        text, cut = cut_at_tool_stop(text)
        if cut:
            ids, logprobs = self.encode(text), None
        stopped = (ids and ids[-1] in self.eos_ids) or text.endswith(TOOL_STOP)
        finish = "length" if len(ids) >= budget and not stopped else "stop"
        return ids, text, finish, logprobs

    async def _tool_observation(self, call: Any, state: EpisodeState) -> Observation:
        """Run the crop tool on the parsed ``call``; the core's observation (or error) of its result."""
        import json

        try:
            arguments = json.loads(call.arguments)
        except (TypeError, ValueError) as exc:
            arguments = {"error": str(exc)}
        instance_id, _ = await self.crop_tool.create()
        try:
            response, _, info = await self.crop_tool.execute(
                instance_id, arguments, agent_data=CropToolState(state.raw_images, state.images))
        finally:
            await self.crop_tool.release(instance_id)
        if response.image:
            (shown,) = response.image
            return state.observation(info["raw_crop"], shown)
        return state.observation(GroundingError(response.text or ""))


def _original_image(raw_prompt: list[dict[str, Any]], index: Any) -> Image.Image:
    """The row's one original image, at full resolution, from the verl ``raw_prompt`` messages."""
    found = [block.get("image") for message in raw_prompt if isinstance(message.get("content"), list)
             for block in message["content"] if isinstance(block, dict) and block.get("type") == "image"]
    if len(found) != 1 or not isinstance(found[0], Image.Image):
        raise ValueError(f"row {index!r}: expected exactly one image in the prompt, got {len(found)} "
                         "(convert data with mini_o3.rl.verl.data: images column with the original bytes)")
    image = found[0]
    image.load()
    return image.copy()
