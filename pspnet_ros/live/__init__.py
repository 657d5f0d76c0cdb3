"""Drive a running segmentation node over real DDS: publish bags or frames, score what returns."""
from .client import (LiveClient, NODE_NAME, node_failure, Received, default_params_file,
                     diag_values, spin_until, stamp_key, start_node, stop_node)

__all__ = ['LiveClient', 'NODE_NAME', 'Received', 'default_params_file', 'diag_values',
           'node_failure', 'spin_until', 'stamp_key', 'start_node', 'stop_node']
