# make demo   set everything up, then run the demo on the embedded virtual HSM
# make test   set everything up, then run the tests
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
LIB := fxpkcs11/lib/libfxpkcs11.so
WIRE := build/.wirecodec

.PHONY: demo test build bytecode bench stress apt clean

demo: build
	bash examples/demo.sh

test: build
	$(VPY) -m pytest -q tests

build: apt $(LIB) $(WIRE) bytecode

# Imports read bytecode where it exists, also when PYTHONDONTWRITEBYTECODE keeps Python from
# writing it: compiled once here, C_Initialize does not compile the provider on every start.
bytecode: $(VENV)/.stamp
	@$(VPY) -m compileall -q -j 0 fxpkcs11 vhsm

apt:
	@bash scripts/apt-deps.sh

$(VENV)/.stamp: setup.py pyproject.toml requirements-dev.txt
	@$(PY) -c 'import sysconfig,sys; sys.exit(0 if sysconfig.get_config_var("Py_ENABLE_SHARED") else "libfxpkcs11.so embeds Python: $(PY) must be built with --enable-shared")'
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip setuptools wheel
	$(VPY) -m pip install -q -r requirements-dev.txt
	$(VPY) -m pip install -q --no-build-isolation -e .
	touch $@

$(LIB): $(VENV)/.stamp native/shim.c native/pkcs11.h native/functions.h native/build.py
	$(VPY) native/build.py fxpkcs11/lib >/dev/null
	@echo "built $(LIB)"

# vhsm/_wirecodec*.so, the C fast path of the wire codec, built in place
$(WIRE): $(VENV)/.stamp native/wirecodec.c
	$(VPY) setup.py -q build_ext --inplace >/dev/null
	@mkdir -p build && touch $@

bench: build
	bash benchmarks/run.sh

stress: build
	bash tests/stress/run.sh $(PARTS)

clean:
	rm -rf $(VENV) fxpkcs11/lib build *.egg-info .demo
