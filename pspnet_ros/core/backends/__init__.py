"""Inference backends behind one interface; ``create_backend`` picks one by name."""
from __future__ import annotations

from .base import (applicable_options, Backend, BackendError, BackendUnavailable,
                   create_backend, parse_option_value)

__all__ = ['Backend', 'BackendError', 'BackendUnavailable', 'applicable_options',
           'create_backend', 'parse_option_value']
