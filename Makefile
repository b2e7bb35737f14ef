# myshim: containerd shim v2 with an in-process OCI runtime.
#
#   make run          install what is missing, build, install the shim, run a demo container
#                     in a private containerd (nothing is left running)
#   make test         unit + integration tests (as root)
#   make build        the release binary (static, non-PIE: scripts/build-release.sh)
#   make install      install the release binary to $(PREFIX)/bin, with the link `myshim` to it
#                     (the same binary answers as a runc-compatible command line by that name)
#   make unit         cargo test --workspace --lib --bins
#   make integration  tests/*.rs (integration, task_service) against a private containerd
#                     (MYSHIM_TEST_RUNTIME=io.containerd.runc.v2 runs them on runc)
#   make soak         1,000 sequential `ctr run --rm` against a private containerd: no shim
#                     daemon may be orphaned (CI runs it after `make test`)
#   make lint         rustfmt --check and clippy -D warnings
#   make clean        cargo clean, and the demo's containerd dir if one is left
#   make vm-test      the integration suites inside cgroup v2 Debian guests under qemu
#                     (vm-test-trixie: containerd 1.7, vm-test-forky: containerd 2.1;
#                     tests/vm/README.md); make vm-deps installs debootstrap and qemu
#
# Everything containerd-related runs in a private containerd (scripts/containerd.sh): its own
# root, state and socket under a temp dir, never /run/containerd or /var/lib/containerd.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

CARGO ?= cargo
PREFIX ?= /usr/local
BIN := containerd-shim-myshim-v2
CLI := myshim
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
RUNTIME := io.containerd.myshim.v2
RUN_DIR ?= /tmp/myshim-run
NAMESPACE ?= myshim-demo
IMAGE_REPO ?= local/busybox
IMAGE := $(IMAGE_REPO):latest

# libseccomp is linked statically from Debian's multiarch directory (.cargo/config.toml names
# the x86_64 one for a plain `cargo build`; this covers the other architectures).
export LIBSECCOMP_LIB_PATH ?= /usr/lib/$(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)

.PHONY: all deps build install run unit integration test soak lint bench clean

all: build

# Install what the build and the tests need from Debian when it is missing (CI starts clean):
# libseccomp-dev for the static libseccomp.a the shim links, gcc-multilib for the 32-bit
# program tests/seccomp.rs builds.
deps:
	@missing=""; \
	command -v containerd >/dev/null 2>&1 || missing="$$missing containerd"; \
	command -v ctr >/dev/null 2>&1 || missing="$$missing containerd"; \
	if ! command -v busybox >/dev/null 2>&1 || \
	   ! dpkg-query -W -f='$${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then \
		missing="$$missing busybox-static"; \
	fi; \
	for pkg in libseccomp-dev gcc-multilib; do \
		dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q 'ok installed' || \
			missing="$$missing $$pkg"; \
	done; \
	missing=$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' '); \
	if [ -n "$${missing// /}" ]; then \
		echo "deps: installing$$missing"; \
		[ "$$(id -u)" = 0 ] || { echo "deps: need root to apt-get install$$missing" >&2; exit 1; }; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q; \
		apt-get install -y -q --no-install-recommends $$missing; \
	fi

# The shipped binary: static and non-PIE (scripts/build-release.sh says why).
build: deps
	CARGO=$(CARGO) scripts/build-release.sh

install: build
	install -D -m 0755 "$$(CARGO=$(CARGO) scripts/build-release.sh)/$(BIN)" $(DESTDIR)$(PREFIX)/bin/$(BIN)
	ln -sfn $(BIN) $(DESTDIR)$(PREFIX)/bin/$(CLI)
	@echo "installed $(DESTDIR)$(PREFIX)/bin/$(BIN) and $(DESTDIR)$(PREFIX)/bin/$(CLI)"

# A demo container in a private containerd; the trap stops that containerd whatever happens.
run: deps install
	@dir=$(RUN_DIR); \
	scripts/containerd.sh stop "$$dir" 2>/dev/null || true; \
	trap 'scripts/containerd.sh stop "$$dir"' EXIT; \
	MYSHIM_BIN_DIR=$(PREFIX)/bin scripts/containerd.sh start "$$dir"; \
	scripts/build-image.sh "$$dir/busybox.tar" $(IMAGE); \
	ctr="timeout -k 5 60 ctr --address $$dir/containerd.sock --namespace $(NAMESPACE)"; \
	$$ctr images import --base-name $(IMAGE_REPO) "$$dir/busybox.tar"; \
	echo "+ ctr run --rm --runtime $(RUNTIME) $(IMAGE) demo sh -c 'echo hello from myshim; uname -a; id'"; \
	rc=0; \
	$$ctr run --rm --runtime $(RUNTIME) --fifo-dir "$$dir/fifo" $(IMAGE) demo \
		sh -c 'echo hello from myshim; uname -a; id' </dev/null || rc=$$?; \
	if [ $$rc != 0 ]; then \
		echo "make run: the demo container failed (exit $$rc); containerd log:" >&2; \
		grep -a -E 'demo|level=(error|warning)' "$$dir/containerd.log" | tail -n 40 >&2 || true; \
	fi; \
	exit $$rc

unit: deps
	$(CARGO) test --workspace --lib --bins

integration: deps
	CARGO=$(CARGO) scripts/integration.sh

test: unit integration

soak: deps
	MYSHIM_SOAK_RUNS=$${MYSHIM_SOAK_RUNS:-1000} CARGO=$(CARGO) scripts/integration.sh -- sequential_runs_orphan_no_daemon

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench:
	bench/run.sh

clean:
	-scripts/containerd.sh stop $(RUN_DIR)
	$(CARGO) clean

# Guest suites (tests/vm/): the integration tests in qemu guests with cgroup v2 only.
# VM_TEST_ARGS is passed to every test binary (a test name filter, for instance).
VM_GUESTS := trixie forky
VM_TEST_ARGS ?=

.PHONY: vm-deps vm-test $(VM_GUESTS:%=vm-test-%) $(VM_GUESTS:%=vm-image-%)

vm-deps:
	tests/vm/deps.sh

$(VM_GUESTS:%=vm-image-%): vm-image-%:
	tests/vm/image.sh $*

$(VM_GUESTS:%=vm-test-%): vm-test-%: deps
	CARGO=$(CARGO) tests/vm/run.sh $* $(VM_TEST_ARGS)

# every guest, one after the other; each runs even when one before it failed
vm-test:
	@rc=0; \
	for g in $(VM_GUESTS); do \
		$(MAKE) --no-print-directory vm-test-$$g || rc=1; \
	done; \
	exit $$rc
