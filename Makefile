# Two entry points, each working on a fresh machine:
#   make demo   prepare the MNIST sample, pack it, read it back (and, as the
#               project grows, train, export and predict)
#   make test   the whole test suite (what CI runs, through .ci/run)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# the C++ builds compile one object a core: three kernel sets of lookup_conv.cc at -O3 take most
# of a serial build's 3-4 minutes
JOBS := -j$(shell nproc 2>/dev/null || echo 2)

.PHONY: install demo test test-asan lint sshd clean

$(STAMP): setup.py operators/Makefile operators/*.cc operators/*.h
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23"
	$(PY) -m pip install --quiet -e ".[test,sample]"
	$(MAKE) -C operators $(JOBS) PYTHON=$(abspath $(PY))
	touch $(STAMP)

install: $(STAMP)

demo: install
	PYTHON=$(PY) bash tools/demo.sh

lint: install
	$(PY) -m ruff check .

# the ssh launcher test starts a real sshd on 127.0.0.1 (Debian's openssh-server)
sshd:
	@test -x /usr/sbin/sshd || command -v sshd >/dev/null || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server)

# One pytest-xdist worker a core: on 2 cores the suite took 11 minutes against 23 serially
# (one slow hour). Tests share nothing: files under their own tmp_path, free ports only.
TEST_WORKERS := -n auto
test: lint sshd
	$(PY) -m pytest -q $(TEST_WORKERS) tests
	$(MAKE) test-asan

# The tests that run the C++ operators and the predictor, again against their AddressSanitizer
# build (operators/build-asan): a stray read or write fails them. Why the preloads and
# --capture=sys: docs/platform.md, "AddressSanitizer".
ASAN_TESTS := tests/test_ops.py tests/test_op_parallel.py tests/test_export.py tests/test_inference_forms.py \
              tests/test_train_kernels.py tests/test_packed_format.py tests/test_chain.py tests/test_weight_versions.py \
              tests/test_scratch.py tests/test_core_caches.py
test-asan: install
	$(MAKE) -C operators asan $(JOBS) PYTHON=$(abspath $(PY))
	LD_PRELOAD="$$($(CXX) -print-file-name=libasan.so) $$($(CXX) -print-file-name=libstdc++.so.6)" \
	  ASAN_OPTIONS=detect_leaks=0 LCNN_OPS_DIR=$(abspath operators/build-asan) $(PY) -m pytest -q $(TEST_WORKERS) --capture=sys $(ASAN_TESTS)

clean:
	rm -rf demo-output data/mnist-sample data/packed
	$(MAKE) -C operators clean
