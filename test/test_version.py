"""One version: package.xml, setup.py, pspnet_ros.__version__ and CHANGELOG.rst's newest entry."""
from pathlib import Path
import re
import xml.etree.ElementTree as ET

import pspnet_ros

ROOT = Path(__file__).resolve().parents[1]


def package_xml_version() -> str:
    return ET.parse(ROOT / 'package.xml').getroot().findtext('version')


def setup_py_version() -> str:
    found = re.findall(r"^\s*version='([^']+)',", (ROOT / 'setup.py').read_text(), re.M)
    assert len(found) == 1, f"setup.py: expected one version='...' line, found {found}"
    return found[0]


def newest_changelog_version() -> str:
    # ROS changelogs: "X.Y.Z (YYYY-MM-DD)" headings underlined with dashes, newest first.
    lines = (ROOT / 'CHANGELOG.rst').read_text().splitlines()
    for line, under in zip(lines, lines[1:]):
        m = re.fullmatch(r'(\d+\.\d+\.\d+) \(\d{4}-\d{2}-\d{2}\)', line)
        if m and under == '-' * len(line):
            return m.group(1)
    raise AssertionError('CHANGELOG.rst has no "X.Y.Z (YYYY-MM-DD)" heading')


def test_package_xml_setup_py_and_module_agree():
    assert setup_py_version() == package_xml_version()
    assert pspnet_ros.__version__ == package_xml_version()


def test_changelogs_newest_entry_is_the_version():
    assert newest_changelog_version() == package_xml_version()


def test_changelog_headings_are_newest_first():
    text = (ROOT / 'CHANGELOG.rst').read_text()
    versions = [tuple(map(int, v.split('.')))
                for v in re.findall(r'^(\d+\.\d+\.\d+) \(\d{4}-\d{2}-\d{2}\)$', text, re.M)]
    assert len(versions) >= 2
    assert versions == sorted(versions, reverse=True)
