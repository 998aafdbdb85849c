"""Container images: one per runtime, one tag scheme shared by the compiled pipelines, the RayJob
manifests, the Helm chart and ``make images``.

A reference is ``{registry}/mini-o3-{runtime}:{tag}``:

* ``registry`` — ``MINI_O3_IMAGE_REGISTRY`` (default ``ghcr.io/mini-o3``);
* ``runtime`` — one of ``RUNTIMES``: ``base`` (kfp, kubernetes, minio, mlflow, openai + our
  package: data prep, reports, launchers), ``sft`` (LLaMA-Factory), ``rl`` (verl + vLLM + Ray),
  ``eval`` (vLLM);
* ``tag`` — ``MINI_O3_IMAGE_TAG`` (default: the package version, ``v0.1.0``).

The compiled pipelines committed in ``pipelines/`` use the defaults; users who mirror the images
recompile with the two variables set (``mini-o3 compile``) or override per task in the KFP UI.
"""

from __future__ import annotations

import os
import re

from . import __version__

RUNTIMES: tuple[str, ...] = ("base", "sft", "rl", "eval")
DEFAULT_REGISTRY = "ghcr.io/mini-o3"
REGISTRY_ENV = "MINI_O3_IMAGE_REGISTRY"
TAG_ENV = "MINI_O3_IMAGE_TAG"

#: Any reference of the scheme: registry path, runtime, tag (no digest).
IMAGE_PATTERN = re.compile(
    r"^(?P<registry>[a-z0-9.\-:]+(?:/[a-z0-9._\-]+)*)/mini-o3-(?P<runtime>base|sft|rl|eval):(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127})$"
)


def default_tag() -> str:
    """``v`` + the package version: the tag the committed pipelines reference."""
    return f"v{__version__}"


def image_ref(runtime: str, *, registry: str | None = None, tag: str | None = None) -> str:
    """The image reference of ``runtime`` (arguments, else the env variables, else the defaults)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown image runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
    registry = (registry or os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY).rstrip("/")
    tag = tag or os.environ.get(TAG_ENV) or default_tag()
    ref = f"{registry}/mini-o3-{runtime}:{tag}"
    if not IMAGE_PATTERN.match(ref):
        raise ValueError(f"image reference {ref!r} (registry {registry!r}, tag {tag!r}) is not a valid reference")
    return ref


def parse_image_ref(ref: str) -> dict[str, str]:
    """``{registry, runtime, tag}`` of a reference of our scheme; ValueError otherwise."""
    match = IMAGE_PATTERN.match(ref)
    if not match:
        raise ValueError(f"{ref!r} is not a mini-o3 image reference ({{registry}}/mini-o3-{{runtime}}:{{tag}})")
    return match.groupdict()
