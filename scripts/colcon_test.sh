#!/usr/bin/env bash
# Build and test the package as a ROS user does: colcon build into a workspace, colcon test,
# colcon test-result --verbose. Fails on any failing test and on zero tests.
# Usage: scripts/colcon_test.sh VENV WORKSPACE   (`make test-ros` passes .venv-ros build/ros_ws)
# ROS_MARKERS / ROS_TESTS: a pytest -m / -k expression that narrows colcon test (empty or
# unset: the whole suite).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=$(cd "$1" && pwd)
WS=$2
mkdir -p "$WS"
WS=$(cd "$WS" && pwd)

# shellcheck disable=SC1091
set +u; . "$VENV/bin/activate"; set -u
# The client wheels' ament index lives in the venv (a ROS install: /opt/ros/<distro>).
export AMENT_PREFIX_PATH=$VIRTUAL_ENV
# A private DDS domain per run keeps parallel CI jobs (and the ros2 daemon) apart.
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$((100 + $$ % 100))}

cd "$WS"
# The package is the repository itself (colcon does not look inside a package for more), so
# the workspace holds only build/, install/ and log/.
colcon --log-base log build --base-paths "$ROOT" --build-base build --install-base install \
    --packages-select pspnet_ros --event-handlers console_cohesion+
# shellcheck disable=SC1091
set +u; . install/setup.bash; set -u          # colcon's setup scripts read unset variables
rm -rf build/pspnet_ros/test_results build/pspnet_ros/pytest.xml
status=0
colcon --log-base log test --base-paths "$ROOT" --build-base build --install-base install \
    --packages-select pspnet_ros --event-handlers console_direct+ \
    --pytest-args -ra ${ROS_MARKERS:+-m "$ROS_MARKERS"} ${ROS_TESTS:+-k "$ROS_TESTS"} \
    --return-code-on-test-failure || status=$?
ros2 daemon stop > /dev/null 2>&1 || true
results=$(colcon test-result --test-result-base build/pspnet_ros --verbose) || status=1
echo "$results"
tests=$(echo "$results" | sed -n 's/^Summary: \([0-9]*\) tests\?[ ,].*/\1/p')
if [ "${tests:-0}" -eq 0 ]; then
    echo "error: colcon test ran no tests (is pytest declared in setup.py extras_require?)" >&2
    exit 1
fi
if [ "$status" -ne 0 ]; then
    echo "error: colcon test failed (see above)" >&2
    exit "$status"
fi
echo "make test-ros: $tests tests, no failures (workspace $WS)"
