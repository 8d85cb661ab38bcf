# ganx: every target sets up .venv first if needed (torch/torchvision from the pinned local wheels, then ganx[dev]).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ganx-installed
ARGS ?=

.PHONY: install train test test-fast lint bench gpu-check clean

# The venv takes ~6.4 GB (torch 2.14.1 is a CUDA build: 5.6 GB with its libraries); CI once ran out of disk mid-install.
NEED_MB := 6600
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@free=$$(df -Pm $(VENV) | awk 'NR == 2 {print $$4}'); [ "$$free" -ge $(NEED_MB) ] || echo "warning: $$free MB free \
	where $(VENV) is; the install needs about $(NEED_MB) MB (torch's CUDA build alone 5.6 GB). If pip stops with \
	'No space left on device', free space there or install elsewhere: make VENV=/path/with/space/venv ..." >&2
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## make train ARGS="model=gan data=mnist": the default trains DCGAN on MNIST (offline: a 5,000-image subset)
train: $(STAMP)
	$(PY) -m ganx.train $(ARGS)

## make test: unit tests and end-to-end CLI runs on tiny generated data (no network, no ../shared needed)
# One test process per core (pytest-xdist; a file's tests stay on one worker), one thread each: two torch processes
# with two threads each on two cores slow each other down many times over. Measured on 2 idle cores: 265 s vs 459 s.
TEST_WORKERS ?= auto
PYTEST := OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test: $(STAMP)
	$(PYTEST) --durations=15 $(ARGS)

test-fast: $(STAMP)
	$(PYTEST) -m "not e2e" $(ARGS)

## make bench: ganx vs a plain PyTorch loop of the same nets, FLOP/s vs the matmul peak, switches, profile, data loading, FID timing (about 5 min;
## a line per measurement with the time left; ARGS="--budget-minutes 10" bounds it on a slow machine)
bench: $(STAMP)
	$(PY) -m benchmarks.bench $(ARGS)

## make gpu-check: each model a few steps in fp32 and mixed precision on the GPU (finite, resumes, img/s, % of peak)
gpu-check: $(STAMP)
	$(PY) -m benchmarks.gpu_check $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check ganx tests benchmarks

clean:
	rm -rf outputs multirun .pytest_cache
