# Two entry points: `make demo` and `make test` (which runs `make lint` first). Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_CPU_VERSION ?= 2.13.0
# Extra pip arguments for the CPU torch install, e.g. an --index-url of CPU wheels.
TORCH_PIP_ARGS ?=
PYTEST_ARGS ?=
STAMP := $(VENV)/.installed

.PHONY: venv demo lint test bench clean

venv: $(STAMP)

# Torch first: on a machine without CUDA install the CPU wheel, otherwise leave the
# CUDA build that pip resolves from the range in pyproject.toml (GPU users keep theirs).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@if $(PY) -c "import torch" 2>/dev/null; then \
		echo "torch already installed: $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		echo "CUDA found: installing the default torch build"; $(PIP) install -q "torch>=2.1"; \
	else \
		echo "no CUDA: installing the CPU torch wheel"; \
		$(PIP) install -q torch==$(TORCH_CPU_VERSION) $(TORCH_PIP_ARGS); \
	fi
	$(PIP) install -q -e ".[all]"
	# torch-fidelity's Inception (for FID/KID) is pure torch, but its metadata asks for torchvision.
	$(PIP) install -q --no-deps "torch-fidelity>=0.3"
	touch $(STAMP)

# Threads for the demo: the cores no other work is using (the cores minus the 1-minute load average, at
# least 1, at most 4: one frame's two UNet passes gain little beyond).  On an idle machine all cores are
# fastest; when other jobs keep the cores busy, torch's one thread per core waits on them and fewer threads are
# faster.
# Override with `make demo DEMO_THREADS=N`.
NPROC := $(shell nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
ifndef DEMO_THREADS
DEMO_THREADS := $(shell awk -v n=$(NPROC) '{ f = int(n - $$1 + 0.5); print (f < 1 ? 1 : (f > 4 ? 4 : f)) }' \
	/proc/loadavg 2>/dev/null || echo 1)
endif

demo: $(STAMP)
	OMP_NUM_THREADS=$(DEMO_THREADS) $(PY) -m spic_diffusers.cli demo --output_dir demo_output --overwrite \
		--threads $(DEMO_THREADS)  # demo_output is make's own folder

lint: $(STAMP)
	$(PY) -m ruff check .

# -rs lists every skipped test with its reason; PYTEST_ARGS narrows the run (e.g. PYTEST_ARGS="-k codec").
# pytest's exit status 5 (nothing collected) is a failure, with a line that says so. Lint runs first.
test: $(STAMP) lint
	@$(PY) -m pytest -q -rs tests $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests (PYTEST_ARGS='$(PYTEST_ARGS)')" >&2; fi; \
	exit $$status

bench: $(STAMP)
	$(PY) benchmarks/bench_decode.py --quick

clean:
	rm -rf $(VENV) demo_output
