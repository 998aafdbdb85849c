"""The Mini-o3 crop tool as a verl ``BaseTool`` (``class_name: mini_o3.rl.verl.tool.CropTool``).

It reads the trajectory's full-resolution images from the agent state (``agent_data.raw_images``:
index 0 the original, index k the raw crop of the k-th successful call) and the model-facing
sizes from ``agent_data.image_data``, runs ``mini_o3.task.crop`` and returns the model-facing
copy (NEAREST into [min_pixels, max_pixels]) as the tool image. The raw crop travels in the metrics
dict (``raw_crop``) so that the agent loop adds it to the state only when the observation fits the
context. A failed call returns the reference error text and no image.
"""

from __future__ import annotations

from typing import Any, Optional

from verl.tools.base_tool import BaseTool
from verl.tools.schemas import OpenAIFunctionToolSchema, ToolResponse

from mini_o3.task import TRAIN_LIMITS, Crop, resize_observation
from mini_o3.task.turn_loop import call_from_arguments, tool_result

from .names import CROP_TOOL_NAME

#: The schema shown to verl (the model itself is prompted by the Mini-o3 system prompt).
CROP_TOOL_SCHEMA = {
    "type": "function",
    "function": {
        "name": CROP_TOOL_NAME,
        "description": "Zoom in on a region of the original image or of an earlier observation.",
        "parameters": {
            "type": "object",
            "properties": {
                "bbox_2d": {"type": "array", "description": "[x0, y0, x1, y1], relative (0-1) to the source image"},
                "source": {"type": "string", "description": "'original_image' or 'observation_i'"},
            },
            "required": ["bbox_2d", "source"],
        },
    },
}


class CropTool(BaseTool):
    """``config``: ``min_pixels``, ``max_pixels`` (model-facing bounds), ``relative_coordinates``."""

    def __init__(self, config: dict, tool_schema: Optional[OpenAIFunctionToolSchema] = None):
        config = dict(config or {})
        self.min_pixels = int(config.get("min_pixels", TRAIN_LIMITS.min_pixels))
        self.max_pixels = int(config.get("max_pixels", TRAIN_LIMITS.max_pixels))
        self.relative = bool(config.get("relative_coordinates", TRAIN_LIMITS.relative_coordinates))
        if self.min_pixels < 1 or self.max_pixels < self.min_pixels:
            raise ValueError(f"CropTool config: need 1 <= min_pixels <= max_pixels, got {self.min_pixels}, {self.max_pixels}")
        super().__init__(config, tool_schema or OpenAIFunctionToolSchema.model_validate(CROP_TOOL_SCHEMA))

    def get_openai_tool_schema(self) -> OpenAIFunctionToolSchema:
        return self.tool_schema

    async def execute(self, instance_id: str, parameters: dict[str, Any], **kwargs: Any) -> tuple[ToolResponse, float, dict]:
        """Crop per ``parameters`` (``bbox_2d`` + ``source``, or the parser's ``error``)."""
        agent_data = kwargs.get("agent_data")
        raw_images = getattr(agent_data, "raw_images", None)
        if not raw_images:
            raise ValueError("CropTool needs agent_data.raw_images (the trajectory's full-resolution images)")
        shown = getattr(agent_data, "image_data", None) or []
        sizes = [image.size for image in shown] or [image.size for image in raw_images]
        result = tool_result(call_from_arguments(parameters), raw_images, sizes, relative=self.relative)
        if not isinstance(result, Crop):
            return ToolResponse(text=result.message), 0.0, {"error": result.message}
        image = resize_observation(result.image, self.min_pixels, self.max_pixels)
        return ToolResponse(image=[image]), 0.0, {"raw_crop": result, "source_index": result.source_index, "box": list(result.box)}
