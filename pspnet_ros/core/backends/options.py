"""The options each backend takes, declared as data: checking a value imports no backend."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

# The spellings a boolean option accepts (YAML 1.1's, which ROS parameter files use).
TRUE_WORDS = ('true', 'yes', 'on', '1')
FALSE_WORDS = ('false', 'no', 'off', '0')
# torch.compile's modes; ``compile`` also takes a boolean.
COMPILE_MODES = ('default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs')
MAX_THREADS = 1024


class OptionError(ValueError):
    """A backend option is unknown or has a value of the wrong type or range."""


@dataclass(frozen=True)
class Option:
    """One backend option: its name, kind (``bool``, ``int``, ``str``, ``bool|mode``,
    ``providers`` or ``object``), default, help and, for integers, the allowed range.

    ``object`` options (a ready ``nn.Module``) are for the Python API only: no text parses
    to one.
    """

    name: str
    kind: str
    default: Any
    help: str
    minimum: int | None = None
    maximum: int | None = None

    def describe(self) -> str:
        """``name (kind, default X): help``, for error messages and documentation."""
        span = (f', {self.minimum}..{self.maximum}' if self.minimum is not None else '')
        return f'{self.name} ({self.kind}{span}, default {self.default!r}): {self.help}'

    def coerce(self, value: Any) -> Any:
        """``value`` (text from a parameter file or a Python value) as this option's type;
        ``OptionError`` naming the option, the value and what it accepts otherwise."""
        text = value.strip() if isinstance(value, str) else None
        if self.kind in ('bool', 'bool|mode'):
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            if text is not None and text.lower() in TRUE_WORDS + FALSE_WORDS:
                return text.lower() in TRUE_WORDS
            if self.kind == 'bool|mode' and text in COMPILE_MODES:
                return text
            accepted = '/'.join(TRUE_WORDS) + ' or ' + '/'.join(FALSE_WORDS)
            if self.kind == 'bool|mode':
                accepted += ' or a mode: ' + ', '.join(COMPILE_MODES)
            raise OptionError(f'backend option {self.name}={value!r}: expected {accepted}')
        if self.kind == 'int':
            number = value
            if text is not None:
                try:
                    number = int(text)
                except ValueError:
                    number = None
            if isinstance(number, bool) or not isinstance(number, int):
                raise OptionError(f'backend option {self.name}={value!r}: expected a whole '
                                  f'number in {self.minimum}..{self.maximum}')
            if not self.minimum <= number <= self.maximum:
                raise OptionError(f'backend option {self.name}={number} is out of range '
                                  f'{self.minimum}..{self.maximum} ({self.help})')
            return number
        if self.kind == 'providers':
            # Text stays text (the backend splits it at commas); a list is checked item by item.
            items = value.split(',') if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)) or not items or not all(
                    isinstance(p, str) and p.strip() for p in items):
                raise OptionError(f'backend option {self.name}={value!r}: expected provider '
                                  'names, comma-separated (e.g. "cuda,cpu")')
            return text if text is not None else [p.strip() for p in items]
        if self.kind == 'str':
            if text is None or not text:
                raise OptionError(f'backend option {self.name}={value!r}: expected text')
            return text
        return value    # 'object'


_THREADS_HELP = 'CPU threads; 0 = one per usable CPU'

# name -> the options of that backend's constructor (less card and device), in its order.
# test_backends checks this table against the constructors' signatures.
BACKEND_OPTIONS: dict[str, tuple[Option, ...]] = {
    'torch': (
        Option('fp16', 'bool', False, 'half precision (CUDA only)'),
        Option('channels_last', 'bool', True, 'NHWC memory format for the convolutions'),
        Option('cuda_graphs', 'bool', False, 'capture and replay CUDA graphs (CUDA only)'),
        Option('compile', 'bool|mode', False, 'torch.compile the model: a boolean or a mode'),
        Option('threads', 'int', 0, 'intra-op CPU threads; 0 keeps the process setting', 0,
               MAX_THREADS),
        Option('fuse_bn', 'bool', True, 'fold BatchNorm into the preceding convolutions'),
        Option('model', 'object', None, 'a ready nn.Module instead of the card weights '
               '(Python API only)'),
    ),
    'onnxruntime': (
        Option('providers', 'providers', None, 'execution providers in order (tensorrt, cuda, '
               'openvino, coreml, cpu or full names)'),
        Option('num_threads', 'int', 0, _THREADS_HELP, 0, MAX_THREADS),
    ),
    'tflite': (
        Option('num_threads', 'int', 0, _THREADS_HELP, 0, MAX_THREADS),
        Option('xnnpack', 'bool', True, 'use the XNNPACK delegate'),
    ),
    'edgetpu': (
        Option('num_threads', 'int', 0, 'interpreter threads for ops left on the CPU; '
               '0 = one per usable CPU', 0, MAX_THREADS),
    ),
}
# ``auto`` takes a chain, per-backend mappings under each backend's name, and shared options
# that go to each member that declares them.
AUTO_CHAIN = Option('chain', 'str', None, 'backends to try in order, comma-separated, each '
                    '"name" or "name:card.yaml"')


def options_of(backend: str) -> dict[str, Option]:
    """The options ``backend`` declares, by name (empty for an unknown backend)."""
    return {o.name: o for o in BACKEND_OPTIONS.get(backend, ())}


def known_option(name: str) -> Option | None:
    """The declaration of option ``name`` in any backend (the first that declares it)."""
    for options in BACKEND_OPTIONS.values():
        for option in options:
            if option.name == name:
                return option
    return None


def parse_option_value(raw: str, name: str | None = None) -> Any:
    """A backend option given as text (``fp16=true``, ``threads=2``).

    A declared option (``name`` of any backend) gets its declared type and range, or
    ``OptionError`` naming it. Other text is typed by its look (int, float, true/false, else
    the text, stripped), so that the unknown name can be reported as such later.
    """
    option = known_option(name) if name else None
    if option is not None and option.kind != 'object':
        return option.coerce(raw)
    text = raw.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {'true': True, 'false': False}.get(text.lower(), text)


def _unknown(backend: str, keys) -> OptionError:
    own = [o.name for o in BACKEND_OPTIONS.get(backend, ()) if o.kind != 'object']
    if backend == 'auto':
        own = ['chain', *BACKEND_OPTIONS, *sorted({o.name for opts in BACKEND_OPTIONS.values()
                                                   for o in opts if o.kind != 'object'})]
    return OptionError(f'unknown backend option(s) {sorted(keys)} for backend {backend}; it '
                       f'takes {sorted(own) if backend != "auto" else own}')


def check_options(backend: str, options: Mapping[str, Any]) -> tuple[dict, list[str]]:
    """The ``options`` that ``backend`` takes, typed and range-checked, and the names that
    belong to other backends only (dropped).

    An option no backend declares (a typo) or a bad value raises ``OptionError``. For
    ``auto``: ``chain``, a mapping per backend name (checked against that backend) and shared
    options (checked against the backends that declare them) are kept.
    """
    if backend == 'auto':
        return _check_auto(options), []
    own = options_of(backend)
    unknown = [k for k in options if k not in own and known_option(k) is None]
    if unknown:
        raise _unknown(backend, unknown)
    kept = {k: own[k].coerce(v) for k, v in options.items() if k in own}
    dropped = sorted(k for k in options if k not in own)
    return kept, dropped


def _check_auto(options: Mapping[str, Any]) -> dict:
    out: dict[str, Any] = {}
    unknown = []
    for key, value in options.items():
        if key == 'chain':
            out[key] = value if isinstance(value, (list, tuple)) else AUTO_CHAIN.coerce(value)
        elif key in BACKEND_OPTIONS:
            if not isinstance(value, Mapping):
                raise OptionError(f'backend option {key} of backend auto must be a mapping of '
                                  f'{key} options, got {value!r}')
            out[key], dropped = check_options(key, value)
            if dropped:
                raise _unknown(key, dropped)
        elif known_option(key) is not None:
            out[key] = known_option(key).coerce(value)
        else:
            unknown.append(key)
    if unknown:
        raise _unknown('auto', unknown)
    return out


def member_options(backend: str, options: Mapping[str, Any]) -> dict:
    """Options for one member of an ``auto`` chain: the shared options it declares, then its
    own mapping ``options[backend]``."""
    own = options_of(backend)
    shared = {k: v for k, v in options.items() if k not in BACKEND_OPTIONS and k in own}
    shared.update(options.get(backend) or {})
    return shared
