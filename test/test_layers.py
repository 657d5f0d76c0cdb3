"""The package's layers: no module imports from a layer above its own (docs/ARCHITECTURE.md)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / 'pspnet_ros'

# What each part of the package may import from the rest of it (besides itself and the
# top-level ``pspnet_ros`` module, which only holds the version).
ALLOWED = {
    'core': set(),
    'training': {'core'},
    'export': {'core'},
    'node': {'core'},
    'evaluation': {'core'},
    'bench': {'core'},
    'live': {'core', 'node', 'evaluation'},
    'cli': {'core', 'training', 'export', 'evaluation', 'live', 'bench'},
}


def part_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_parts(path: Path) -> set[str]:
    """The parts of ``pspnet_ros`` that ``path`` imports, absolute or relative, at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    here = path.relative_to(PACKAGE.parent).with_suffix('').parts
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[:len(here) - node.level])
                names.append('.'.join(base + ([node.module] if node.module else [])))
                if not node.module:
                    names += ['.'.join(base + [a.name]) for a in node.names]
            elif node.module:
                names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        for name in names:
            parts = name.split('.')
            if parts[0] == 'pspnet_ros' and len(parts) > 1 and not parts[1].startswith('__'):
                found.add(parts[1])
    return found


def test_every_part_of_the_package_has_a_layer():
    parts = {part_of(p) for p in PACKAGE.rglob('*.py')} - {'__init__'}
    assert parts == set(ALLOWED)


def test_no_module_imports_from_a_higher_layer():
    wrong = []
    for path in sorted(PACKAGE.rglob('*.py')):
        part = part_of(path)
        if part == '__init__':
            continue
        for other in imported_parts(path) - {part} - ALLOWED[part]:
            wrong.append(f'{path.relative_to(PACKAGE.parent)} imports pspnet_ros.{other}')
    assert not wrong, '\n'.join(wrong)


def test_the_layer_check_sees_relative_imports():
    sample = PACKAGE / 'cli' / 'segment.py'
    assert 'core' in imported_parts(sample)


def test_no_module_is_over_450_lines():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob('*.py')
            if (n := len(p.read_text().splitlines())) > 450}
    assert not long
