# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
SHARED ?= ../shared

.PHONY: venv demo test test-export test-ray lint clean

$(VENV)/.installed: requirements.txt requirements-dev.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) scripts/demo.py --shared $(SHARED) --out demo_out

test: venv
	$(PY) -m pytest -q -ra test

# Export (ONNX, TFLite, int8 / Edge TPU) and the parity suite against every exported file,
# in their own venv (litert-torch's dependencies stay out of the main one).
EXPORT_VENV := .venv-export
$(EXPORT_VENV)/.installed: requirements-export-venv.txt requirements-export.txt setup.py
	$(PYTHON) -m venv $(EXPORT_VENV)
	$(EXPORT_VENV)/bin/python -m pip install -q --upgrade pip
	$(EXPORT_VENV)/bin/python -m pip install -q -r requirements-export-venv.txt
	$(EXPORT_VENV)/bin/python -m pip install -q --no-deps -e .
	touch $@

test-export: $(EXPORT_VENV)/.installed
	$(EXPORT_VENV)/bin/python -m pytest -q -ra test/test_export.py test/test_parity.py

# Bag evaluation on Ray (eval --workers N, --ray-address): Ray installs beside the main
# requirements, so into the main venv; tests start a local Ray instance and a two-node cluster
# on loopback.
$(VENV)/.ray-installed: $(VENV)/.installed requirements-ray.txt
	$(PY) -m pip install -q -r requirements-ray.txt
	touch $@

test-ray: $(VENV)/.ray-installed
	$(PY) -m pytest -q -ra test/test_eval_ray.py test/test_eval_ray_cluster.py

clean:
	rm -rf $(VENV) $(EXPORT_VENV) demo_out segment_out build install log *.egg-info
