# textrnn: the only commands a newcomer needs.
#   make demo   set up .venv, train the bundled recipes, export them, show their output
#   make test   set up .venv with the dev extras and run the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: install demo test test-all test-slow lint format bench clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,plot,serving,edge]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m textrnn.demo

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: $(STAMP) browser
	$(BIN)/python -m pytest -m slow -q

test-all: $(STAMP) browser
	$(BIN)/python -m pytest -q

# Chromium for the playground's browser tests (slow): Debian's chromium and chromium-driver,
# installed once when missing if we are root with apt (as CI is); otherwise those tests skip.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; } \
		|| echo "could not install chromium: the browser tests will skip"; \
	else echo "chromium is not installed and this is not root with apt: the browser tests will skip"; fi

lint: $(STAMP)
	$(BIN)/ruff check textrnn tests bench
	$(BIN)/ruff format --check textrnn tests bench

format: $(STAMP)
	$(BIN)/ruff format textrnn tests bench
	$(BIN)/ruff check --fix textrnn tests bench

bench: $(STAMP)
	$(BIN)/python bench/train_throughput.py

clean:
	rm -rf runs saved_models/*/ .pytest_cache
