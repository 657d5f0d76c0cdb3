"""The runtime does not depend on the offline tools: nothing in pspnet_ros/core imports
pspnet_ros.training or pspnet_ros.export, and their modules stay small."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / 'pspnet_ros'


def _imports(path: Path) -> list[str]:
    """Absolute names of the pspnet_ros modules ``path`` imports (relative ones resolved)."""
    parts = list(path.relative_to(PKG.parent).with_suffix('').parts)
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[:-node.level] if path.name != '__init__.py' else \
                    parts[:len(parts) - node.level]
                names.append('.'.join(base + ([node.module] if node.module else [])))
            elif node.module:
                names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


def test_core_imports_neither_training_nor_export():
    offenders = [f'{p.relative_to(PKG)}: {name}' for p in sorted((PKG / 'core').rglob('*.py'))
                 for name in _imports(p)
                 if name.startswith(('pspnet_ros.training', 'pspnet_ros.export'))]
    assert not offenders, offenders


@pytest.mark.parametrize('package', ['training', 'export'])
def test_offline_tool_modules_are_under_450_lines(package):
    sizes = {p.name: len(p.read_text().splitlines()) for p in (PKG / package).glob('*.py')}
    assert sizes and max(sizes.values()) <= 450, sizes
