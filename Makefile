# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
SHARED ?= ../shared

.PHONY: venv demo test test-unit test-export test-ray test-ros lint clean

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

# The fast part of `make test`: no DDS, no node, command line or Ray processes, no linters
# (markers in setup.cfg; fresh interpreters that only import modules are allowed).
UNIT_MARKERS := not ros and not slow and not linter and not launch_test
test-unit: venv
	$(PY) -m pytest -q -ra -m '$(UNIT_MARKERS)' test

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

# The package the way ROS users build and test it: `colcon build` into a workspace
# (build/ros_ws), `colcon test` (the whole suite: launch_testing test, ros2 CLI tests, linters)
# and `colcon test-result --verbose`; fails on any failure or on zero tests. The launch stack
# and the ros2 CLI come from $(ROS_WHEELS) (not on PyPI), in a venv of their own (.venv-ros).
ROS_WHEELS ?= $(SHARED)/ros2-launch-wheels
ROS_VENV := .venv-ros
$(ROS_VENV)/.installed: requirements.txt requirements-dev.txt requirements-ros.txt
	@test -f $(ROS_WHEELS)/requirements.txt || { echo "error: $(ROS_WHEELS) not found: \
	make test-ros needs the ROS 2 launch/ros2 CLI wheels (set ROS_WHEELS=...)" >&2; exit 2; }
	$(PYTHON) -m venv $(ROS_VENV)
	$(ROS_VENV)/bin/python -m pip install -q --upgrade pip
	$(ROS_VENV)/bin/python -m pip install -q -r requirements-dev.txt \
	    -r $(ROS_WHEELS)/requirements-pypi.txt
	$(ROS_VENV)/bin/python -m pip install -q -r requirements-ros.txt
	$(ROS_VENV)/bin/python -m pip install -q --no-deps --no-index --find-links $(ROS_WHEELS) \
	    -r $(ROS_WHEELS)/requirements.txt
	touch $@

# ROS_MARKERS narrows the colcon run to a pytest -m expression, ROS_TESTS to a -k expression
# (empty: the whole suite); CI passes the markers of the tests that need the colcon install
# (ROS_MARKERS='ros_install or launch_test or linter'), since its `make test` has just run the rest.
ROS_MARKERS ?=
ROS_TESTS ?=
test-ros: $(ROS_VENV)/.installed
	ROS_MARKERS="$(ROS_MARKERS)" ROS_TESTS="$(ROS_TESTS)" \
	    scripts/colcon_test.sh $(ROS_VENV) build/ros_ws

# Style: flake8 with ament_flake8's conventions (setup.cfg: 99 columns; single quotes), the
# same check as test/test_flake8.py.
LINT_PATHS := pspnet_ros test scripts launch setup.py
lint: venv
	$(PY) -m flake8 --max-line-length 99 --inline-quotes "'" $(LINT_PATHS)

# Everything the commands in README/docs write by default, the venvs and colcon's folders.
OUTPUTS := demo_out segment_out bench_out eval_out eval_pred_out live_out exported out \
	camvid_val_bag train_out bench_*.json
clean:
	rm -rf $(VENV) $(EXPORT_VENV) $(ROS_VENV) $(OUTPUTS) build install log *.egg-info
