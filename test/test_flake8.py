"""Style check with ament_flake8's main conventions (99 columns, single quotes)."""
from pathlib import Path
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.linter
def test_flake8_is_clean():
    pytest.importorskip('flake8', reason='flake8 is not installed (pip install flake8)')
    pytest.importorskip('flake8_quotes', reason='flake8-quotes is not installed')
    proc = subprocess.run(
        [sys.executable, '-m', 'flake8', '--max-line-length', '99', '--inline-quotes', "'",
         'pspnet_ros', 'test', 'scripts', 'launch', 'setup.py'],
        cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
