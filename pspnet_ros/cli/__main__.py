"""``python -m pspnet_ros.cli``: the same as the ``pspnet-ros`` command."""
import sys

from . import main

sys.exit(main())
