"""Inference backends behind one interface; ``create_backend`` picks one by name."""
from __future__ import annotations

from .base import applicable_options, Backend, BackendError, BackendUnavailable, create_backend
from .options import BACKEND_OPTIONS, OptionError, parse_option_value

__all__ = ['BACKEND_OPTIONS', 'Backend', 'BackendError', 'BackendUnavailable', 'OptionError',
           'applicable_options', 'create_backend', 'parse_option_value']
