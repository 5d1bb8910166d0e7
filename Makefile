# dit-web: the commands a newcomer runs. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
PORT ?= 8080
# The address `make demo` listens on: 0.0.0.0 serves other machines of the network too.
HOST ?= 127.0.0.1
WASM_BINDGEN_VERSION := $(shell awk '/^name = "wasm-bindgen"$$/ { getline; gsub(/[^0-9.]/, "", $$0); print; exit }' Cargo.lock)
CHROMIUM ?= /usr/bin/chromium
BROWSER_DIR := tests/browser
WASM := pkg/dit_web_bg.wasm

.PHONY: fuzz-metadata setup-onnx bench-cpu-backends bench-webgpu-variants bench-gpu bench-first-image bench-cpu-profile
.PHONY: help test lint unit wgpu setup-lavapipe setup-mpi cuda cuda-builds browser demo site pkg setup setup-wasm setup-browser bench bench-browser fuzz fuzz-seeds sizes example-app

help:
	@echo "make demo        build the wasm module (pkg/) and serve www/ on http://$(HOST):$(PORT)/ (HOST=0.0.0.0: the network too)"
	@echo "make site        the self-contained folder a static host serves (site/): the page, pkg/, the shipped weights and the reference's CelebA weights"
	@echo "make test        rustfmt, clippy (native with the GPU features, wasm), all Rust tests with the own WebGPU kernels natively on lavapipe, browser tests in headless Chromium (what CI runs)"
	@echo "make cuda        build the trainer with CUDA and wgpu (release; not part of make test; docs/gpu.md)"
	@echo "make bench-gpu   on a GPU machine: the step checker, speed against PyTorch, a short CelebA run (bench/gpu.sh)"
	@echo "make pkg         wasm-pack build --target web, then wasm-opt: pkg/ is the npm package the page loads"
	@echo "make sizes       raw and gzip sizes of everything the page fetches"
	@echo "make bench       cargo bench: forward pass and sampler step on the CPU backend"
	@echo "make bench-browser  www/bench.html in headless Chromium: ms per step per backend and batch"
	@echo "make bench-cpu-backends  the browser's CPU fallback on burn-flex, -ndarray and -candle"
	@echo "make bench-webgpu-variants  the WebGPU backend with autotune / fusion, profiled, against ORT"
	@echo "make bench-first-image  cold cache to the first digit on screen, per backend and model"
	@echo "make bench-cpu-profile  V8's profile of the browser's CPU backend: where a step's time goes"
	@echo "make fuzz        fuzz the weight-file reader with cargo-fuzz (FUZZ_SECONDS=600)"
	@echo "make fuzz-metadata  fuzz weight files whose metadata holds absurd numbers, with an allocation limit"

# Each stage prints how long it took (CI's budget is tight on two cores). The browser stage builds
# pkg/ with the wasm-test profile (no LTO, no wasm-opt; see Cargo.toml) and takes the reference
# images from the trainer binary the unit stage built.
TEST_STAGES := lint unit browser
test:
	@for stage in $(TEST_STAGES); do \
		start=$$(date +%s); $(MAKE) --no-print-directory $$stage WASM_PROFILE=wasm-test || exit 1; \
		echo "make test: $$stage took $$(( $$(date +%s) - start )) s"; \
	done

# Lint while compiling: clippy-driver stands in for rustc on the workspace's own crates (what
# `cargo clippy` does under the hood), so the builds the tests need are also the clippy run, with
# warnings as errors, and nothing is type-checked twice. CLIPPY_ARGS is how cargo-clippy hands
# its arguments to the driver.
LINTED := RUSTC_WORKSPACE_WRAPPER=clippy-driver CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__

# One native build for every stage: the workspace with the trainer's GPU features (CUDA and wgpu;
# they build and link without a CUDA toolkit or a GPU), its MPI feature (several machines, tested
# as two ranks of `mpirun` on this one) and dit-web's own wgpu kernels. Cargo unifies
# features over the packages it builds, so a stage that named fewer would build burn a second time
# with another feature set; with the same set, the lint is the build (clippy-driver), the CUDA code
# is linted where it compiles, and the wgpu kernels' tests reuse the unit stage's binaries.
NATIVE_FEATURES := trainer/cuda,trainer/wgpu,trainer/mpi,dit-web/wgpu
lint:
	$(CARGO) fmt --all -- --check

# The wgpu kernels' tests run here too (they need lavapipe, below); `make wgpu` runs them alone.
unit: setup-lavapipe setup-mpi
	$(LINTED) $(CARGO) test --workspace --all-targets --features $(NATIVE_FEATURES) --no-run
	$(LINTED) $(CARGO) test --workspace --features $(NATIVE_FEATURES)

# The model's own burn-wgpu kernels (src/model/kernels/wgpu.rs, what the page runs on WebGPU) against
# burn-ndarray, natively on Mesa's lavapipe: a Vulkan driver that runs on the CPU (Debian's
# mesa-vulkan-drivers; installed when run as root).
LAVAPIPE := /usr/share/vulkan/icd.d/lvp_icd.x86_64.json
wgpu: setup-lavapipe setup-mpi
	$(LINTED) $(CARGO) test --workspace --features $(NATIVE_FEATURES) --test wgpu_kernels

setup-lavapipe:
	@test -e $(LAVAPIPE) || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null; } || \
		{ echo "Vulkan on the CPU is missing: install Debian's 'mesa-vulkan-drivers' and 'libvulkan1'"; exit 1; }

# Open MPI (the launcher, and the headers the `mpi` crate binds to) and libclang (which its
# bindings are generated with): Debian's packages, installed when run as root.
setup-mpi:
	@{ command -v mpirun && command -v mpicc && ls /usr/lib/llvm-*/lib/libclang.so; } >/dev/null 2>&1 || \
		{ [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends openmpi-bin libopenmpi-dev libclang-dev >/dev/null; } || \
		{ echo "Open MPI or libclang is missing: install Debian's 'openmpi-bin', 'libopenmpi-dev' and 'libclang-dev'"; exit 1; }

# The GPU trainer (release): builds and links without a CUDA toolkit (the driver is loaded at
# run time). Copy target/release/trainer to the GPU machine; see docs/gpu.md.
cuda:
	$(CARGO) build --release -p trainer --features cuda,wgpu

# The builds `make bench-gpu` compares, into gpu-bin/: plain (what `make cuda` builds), with
# burn's fusion, and with autotune and fusion (docs/gpu.md).
cuda-builds:
	mkdir -p gpu-bin
	$(CARGO) build --release -p trainer --features cuda,wgpu && cp $(TARGET_DIR)/release/trainer gpu-bin/trainer
	$(CARGO) build --release -p trainer --features cuda,gpu-fusion && cp $(TARGET_DIR)/release/trainer gpu-bin/trainer-fusion
	$(CARGO) build --release -p trainer --features cuda,gpu-tuned && cp $(TARGET_DIR)/release/trainer gpu-bin/trainer-tuned

TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
# The site test (tests/browser/site.test.mjs) serves a reference-layout checkpoint written by the
# trainer's example, which is built beside the trainer.
browser: pkg setup-browser example-app
	$(LINTED) $(CARGO) build -q -p trainer --example reference_checkpoint
	cd $(BROWSER_DIR) && CHROMIUM=$(CHROMIUM) \
		TRAINER=$${TRAINER:-$$(test -x $(abspath $(TARGET_DIR))/debug/trainer && echo $(abspath $(TARGET_DIR))/debug/trainer)} npm test

demo: pkg
	node tools/serve.mjs www $(PORT) $(HOST)

# The site any static host serves, as the Pages workflow publishes it: www/ with pkg/ copied in
# place of its link (no symlinks), the shipped MNIST weights, and the reference's CelebA weights
# fetched and converted to int8 with their card (`trainer download celeba-reference`). When that
# download fails the site is built without them and the log says so. SITE= the folder,
# CELEBA_URL= another address for the checkpoint, SITE_TRAINER= a trainer binary to use (by
# default the release build, brought up to date first).
SITE ?= site
SITE_TRAINER ?= $(TARGET_DIR)/release/trainer
site: pkg
	rm -rf $(SITE) && mkdir -p $(SITE)
	cp -rL www/. $(SITE)/
	rm -rf $(SITE)/bench $(SITE)/vendor
	$(if $(filter $(TARGET_DIR)/release/trainer,$(SITE_TRAINER)),$(CARGO) build --release -p trainer)
	"$(SITE_TRAINER)" download celeba-reference --out $(SITE)/weights/celeba.safetensors \
		$(if $(CELEBA_URL),--url "$(CELEBA_URL)") || \
		echo "make site: the CelebA weights could not be fetched (above); the site has the MNIST models only"
	node tools/catalogue.mjs $(SITE)/weights $(SITE)/models.json
	@echo "make site: $(SITE)/ is ready; any static file server can serve it"

# wasm-pack writes pkg/ (www/pkg links to it). It would download binaryen and wasm-bindgen when
# missing, which an offline machine cannot: setup-wasm installs them from crates.io and npm instead.
# The wasm-test build (make test) is also the wasm lint. wasm-pack only drives cargo and
# wasm-bindgen, so an unoptimised build of it (minutes less to install) is as good.
WASM_PROFILE ?= wasm-release
pkg: setup-wasm
	$(if $(filter wasm-test,$(WASM_PROFILE)),$(LINTED)) wasm-pack build --target web --profile $(WASM_PROFILE) --no-opt --mode no-install
	@if [ "$(WASM_PROFILE)" = wasm-release ]; then \
		tools/node_modules/.bin/wasm-opt -Os --strip-debug --strip-producers \
		--enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
		--enable-mutable-globals --enable-reference-types --enable-multivalue \
		$(WASM) -o $(WASM).opt && mv $(WASM).opt $(WASM); fi
	@ls -l $(WASM)
	node tools/catalogue.mjs
	node tools/package.mjs

# The example app that imports pkg/ through a bundler (esbuild) and type-checks against its
# generated TypeScript definitions (tsc); the browser tests open what it builds.
EXAMPLE_APP := examples/web-app
example-app: pkg
	@test -d $(EXAMPLE_APP)/node_modules/esbuild || (cd $(EXAMPLE_APP) && npm ci --no-audit --no-fund)
	cd $(EXAMPLE_APP) && npm run build

setup-wasm:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@command -v wasm-pack >/dev/null || $(CARGO) install wasm-pack --locked --debug
	@wasm-bindgen --version 2>/dev/null | grep -qF "$(WASM_BINDGEN_VERSION)" || \
		$(CARGO) install wasm-bindgen-cli --force --version "$(WASM_BINDGEN_VERSION)"
	@test -x tools/node_modules/.bin/wasm-opt || (cd tools && npm ci --no-audit --no-fund)

setup-browser:
	@test -x $(CHROMIUM) || { [ "$$(id -u)" = 0 ] && apt-get install -y chromium >/dev/null; } || \
		{ echo "Chromium is missing: install Debian's 'chromium' package (or set CHROMIUM=/path/to/chrome)"; exit 1; }
	@test -d $(BROWSER_DIR)/node_modules/playwright-core || (cd $(BROWSER_DIR) && npm ci --no-audit --no-fund)

sizes: pkg
	@node tools/sizes.mjs

bench:
	$(CARGO) bench --bench model

ORT_VERSION ?= 1.30.0
# The ONNX side needs torch + onnx (pip) to export the same network; without them it is skipped.
bench-browser: pkg setup-browser setup-onnx
	cd $(BROWSER_DIR) && CHROMIUM=$(CHROMIUM) node bench.mjs

setup-onnx:
	@test -d $(BROWSER_DIR)/node_modules/onnxruntime-web || \
		(cd $(BROWSER_DIR) && npm install --no-save --no-audit --no-fund onnxruntime-web@$(ORT_VERSION))
	@mkdir -p www/bench && for m in $$(echo $${MODELS:-mnist-cpu} | tr , ' '); do \
		(test -f www/bench/$$m.onnx || python3 bench/torch/export_onnx.py www/weights/$$m.safetensors www/bench/$$m.onnx) || \
		echo "no ONNX model for $$m (bench/torch/export_onnx.py needs torch and onnx): onnxruntime-web will be skipped"; done

# Opening the page on a cold cache to the first finished digit, in headless Chromium, on both
# backends (MODELS=, BACKENDS=, RUNS= change the sweep; see tests/browser/first-image.mjs).
bench-cpu-profile: pkg setup-browser
	cd $(BROWSER_DIR) && CHROMIUM=$(CHROMIUM) node cpu-profile.mjs

bench-first-image: pkg setup-browser
	cd $(BROWSER_DIR) && CHROMIUM=$(CHROMIUM) node first-image.mjs

# A wasm module built with extra cargo features into www/bench/pkg-$(1) (release profile, wasm-opt),
# for the benchmarks that compare builds in one browser run.
define wasm_variant
	wasm-pack build --target web --profile wasm-release --no-opt --mode no-install \
		--out-dir www/bench/pkg-$(1) -- --features $(2) && \
	tools/node_modules/.bin/wasm-opt -Os --strip-debug --strip-producers \
		--enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
		--enable-mutable-globals --enable-reference-types --enable-multivalue \
		www/bench/pkg-$(1)/dit_web_bg.wasm -o www/bench/pkg-$(1)/dit_web_bg.wasm
endef

# The browser's CPU fallback built on each of burn's CPU backends (burn-flex ships in pkg/; ndarray
# and candle are built into www/bench/pkg-*), measured in one headless run with the same weights.
CPU_BACKEND_VARIANTS ?= ndarray candle
bench-cpu-backends: pkg setup-browser
	@for v in $(CPU_BACKEND_VARIANTS); do $(call wasm_variant,$$v,web-cpu-$$v) || exit 1; done
	cd $(BROWSER_DIR) && CHROMIUM=$(CHROMIUM) BACKENDS=cpu ONNX=0 \
		PKGS="pkg$$(for v in $(CPU_BACKEND_VARIANTS); do printf ',bench/pkg-%s' $$v; done)" node bench.mjs

# The WebGPU backend with burn's autotune and with fusion (www/bench/pkg-gpu-*) against pkg/, with
# onnxruntime-web and the per-step profile (PROFILE=1) in the same run; docs/browser.md, "Where a WebGPU
# step's time goes".
WEBGPU_VARIANTS ?= autotune fusion
bench-webgpu-variants: pkg setup-browser setup-onnx
	@for v in $(WEBGPU_VARIANTS); do $(call wasm_variant,gpu-$$v,web-gpu-$$v) || exit 1; done
	cd $(BROWSER_DIR) && CHROMIUM=$(CHROMIUM) BACKENDS=webgpu PROFILE=$${PROFILE:-1} \
		PKGS="pkg$$(for v in $(WEBGPU_VARIANTS); do printf ',bench/pkg-gpu-%s' $$v; done)" node bench.mjs

# On a GPU machine (docs/gpu.md): the step checker, training and sampling speed beside the
# PyTorch reference, and a short CelebA run on generated shapes -> $(GPU_OUT)/bench-gpu.json.
# Needs the binary from `make cuda` (TRAINER=..., FUSED=..., TUNED=...); STAGES picks stages
# (check train learn sample eval torch). BACKEND=cpu QUICK=1 checks the script on a CPU.
GPU_OUT ?= gpu-out
bench-gpu:
	bench/gpu.sh $(GPU_OUT) $(STAGES)
	python3 bench/gpu_table.py $(GPU_OUT)/bench-gpu.json

FUZZ_SECONDS ?= 600
# cargo-fuzz needs nightly-only flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	mkdir -p fuzz/corpus/weights && cp fuzz/seeds/*.safetensors fuzz/corpus/weights/
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -s none weights corpus/weights -- \
		-max_total_time=$(FUZZ_SECONDS) -max_len=65536

# The metadata fuzzer: valid JSON with absurd numbers over a real file's tensors. A process over
# 2 GB of memory counts as a crash; with FUZZ_SANITIZER=address (a slower build) so does any single
# allocation over FUZZ_MALLOC_MB, which libFuzzer sees only through a sanitizer's malloc hooks.
FUZZ_MALLOC_MB ?= 512
FUZZ_SANITIZER ?= none
fuzz-metadata:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	mkdir -p fuzz/corpus/metadata
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -s $(FUZZ_SANITIZER) metadata corpus/metadata -- \
		-max_total_time=$(FUZZ_SECONDS) -malloc_limit_mb=$(FUZZ_MALLOC_MB) -rss_limit_mb=2048

fuzz-seeds:
	$(CARGO) run -q --example tiny_weights -- fuzz/seeds/tiny-int8.safetensors int8
	$(CARGO) run -q --example tiny_weights -- fuzz/seeds/tiny-f16.safetensors f16
