# The two commands: `make demo` (main job on the built-in data) and `make test` (the test suite).
# Both create or reuse .venv, install what is missing, and (re)build the extension when csrc/ changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.stamp-deps
BUILD_STAMP := $(VENV)/.stamp-build
NATIVE_SOURCES := $(shell find csrc -type f 2>/dev/null) CMakeLists.txt pyproject.toml

.PHONY: demo test build bench clean emoji-packages hanzi-packages

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(DEPS_STAMP): requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(BUILD_STAMP): $(DEPS_STAMP) $(NATIVE_SOURCES)
	$(PY) -m pip install --quiet --no-build-isolation --no-deps -e .
	touch $@

build: $(BUILD_STAMP)

# The Debian packages emoji-lt is built from (installed with apt-get when missing; says what it does).
emoji-packages:
	scripts/ensure_emoji_packages.sh

# The Debian packages hanzi-lt is built from (unicode-data and four CJK fonts; same rules).
hanzi-packages:
	scripts/ensure_hanzi_packages.sh

test: $(BUILD_STAMP)
	@scripts/ensure_emoji_packages.sh || echo "warning: emoji-lt packages unavailable; the emoji-lt tests will be skipped"
	@scripts/ensure_hanzi_packages.sh || echo "warning: hanzi-lt packages unavailable; the hanzi-lt tests will be skipped"
	$(PY) -m pytest tests -q

demo: $(BUILD_STAMP) emoji-packages
	@scripts/ensure_hanzi_packages.sh || echo "warning: hanzi-lt packages unavailable; hanzi-lt cannot be built"
	$(PY) -m pycmlt demo

# Every benchmark suite on the CPU (full shapes; minutes), then REPORT.md, the plots and the README tables.
bench: $(BUILD_STAMP)
	$(PY) -m benchmarks all --device cpu --quiet
	$(PY) -m benchmarks report

clean:
	rm -rf build $(VENV)
