# Two entry points: `make demo` (the main job) and `make test` (the suite).
# Both run `setup` first, which is idempotent: it installs only what is missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Guest and VM runtime, then the toolchain that builds the kernel's example schedulers
# (and, with gcc and the kernel's UAPI headers, ktstr verifier's preload library).
RUNTIME_PKGS   := qemu-system-x86 busybox-static cpio python3-venv binutils e2fsprogs chromium \
                  stress-ng rt-tests fio sysbench linux-perf
TOOLCHAIN_PKGS := clang-19 llvm-19 lld-19 clang-22 llvm-22 lld-22 libelf-dev zlib1g-dev make pkg-config \
                  gcc linux-libc-dev
DEMO_TOPOLOGY  ?= 2n4l2c1t

.PHONY: setup system-packages venv kernel demo test test-unit test-vm lint bench clean

setup: system-packages venv kernel

system-packages:
	@missing=""; \
	for p in $(RUNTIME_PKGS) $(TOOLCHAIN_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,distributed]'
	touch $@

kernel: venv
	$(BIN)/ktstr kernel fetch --debug
	$(BIN)/ktstr qemu fetch
	$(BIN)/ktstr schedulers build

demo: setup
	$(BIN)/ktstr vm probe --topology $(DEMO_TOPOLOGY)
	$(BIN)/ktstr run steady --topology $(DEMO_TOPOLOGY) --scheduler scx_simple

test: setup
	$(BIN)/pytest

test-unit: system-packages venv
	$(BIN)/pytest -m "not vm"

test-vm: setup
	$(BIN)/pytest -m vm

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: setup
	$(BIN)/python bench/boot.py
	$(BIN)/python bench/verdict_stability.py
	$(BIN)/python bench/disk.py

clean:
	rm -rf $(VENV) runs build src/*.egg-info
