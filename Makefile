# Two entry points, each working on a fresh machine:
#   make demo   prepare the MNIST sample, pack it, read it back (and, as the
#               project grows, train, export and predict)
#   make test   the whole test suite (what CI runs, through .ci/run)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint sshd clean

$(STAMP): setup.py operators/Makefile operators/*.cc operators/*.h
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23"
	$(PY) -m pip install --quiet -e ".[test,sample]"
	$(MAKE) -C operators PYTHON=$(abspath $(PY))
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

test: lint sshd
	$(PY) -m pytest -q tests

clean:
	rm -rf demo-output data/mnist-sample data/packed
	$(MAKE) -C operators clean
