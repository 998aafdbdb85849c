"""Names shared by the plug-ins and the config builder (no verl import)."""

from __future__ import annotations

#: Agent-loop entries: training rows (``max_turns``) and validation rows (``val_max_turns``).
TRAIN_AGENT = "minio3_train"
VAL_AGENT = "minio3_val"
#: The tool name every parsed call carries (the crop tool's schema name).
CROP_TOOL_NAME = "crop"
#: Registered tool-parser name → task-kit parser mode.
PARSER_NAMES = {"minio3_grounding": "strict", "minio3_grounding_lenient": "lenient"}
