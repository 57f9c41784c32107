"""Rules the code base keeps (issue #15): each shared value defined once, short config expressions,
no private attributes of Ignite or MONAI, scripts that import the bundle without sys.path edits."""

from __future__ import annotations

import json
import re
from typing import Iterator, Tuple

import pytest

from bundle_helpers import REPO_ROOT

SOURCES = sorted((REPO_ROOT / "bundle").rglob("*.py")) + sorted((REPO_ROOT / "scripts").glob("*.py"))
CONFIGS = sorted((REPO_ROOT / "configs").rglob("*.json"))
#: free-text keys of configs and metadata, which may be long
PROSE_KEYS = {"_desc_", "description", "changelog", "data_source", "data_type", "intended_use", "references"}


def _strings(node: object, path: str = "") -> Iterator[Tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in PROSE_KEYS:
                yield from _strings(value, f"{path}#{key}" if path else key)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{path}#{index}")
    elif isinstance(node, str):
        yield path, node


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_config_strings_are_at_most_120_characters(config):
    long = [(path, len(text)) for path, text in _strings(json.loads(config.read_text())) if len(text) > 120]
    assert not long, f"{config.name}: move these expressions into named functions or _target_ components: {long}"


@pytest.mark.parametrize("name, pattern", [
    ("MISSING_CLASS", r"^MISSING_CLASS\s*=", ),
    ("SIZE_MULTIPLE", r"^SIZE_MULTIPLE\s*=", ),
    ("US_REGION_KEY", r"[\"']us_region[\"']"),
    ("US_SPACING_KEY", r"[\"']us_spacing_mm[\"']"),
    ("rank helper", r"dist\.get_rank\(\)"),
    ("file sha256", r"hashlib\.sha256\(\)"),
])
def test_each_shared_value_is_defined_in_one_module(name, pattern):
    where = [str(p.relative_to(REPO_ROOT)) for p in SOURCES if re.search(pattern, p.read_text(), re.M)]
    assert len(where) == 1, f"{name} defined in {where}"


def test_no_private_attributes_of_ignite_or_monai():
    private = re.compile(r"\.(_iteration|_event_handlers|_log_params|_process_function|_dataloader_iter)\b")
    used = [f"{p.relative_to(REPO_ROOT)}: {m.group(0)}" for p in SOURCES for m in private.finditer(p.read_text())]
    assert not used


def test_scripts_import_the_bundle_without_editing_sys_path():
    edited = [str(p.relative_to(REPO_ROOT)) for p in sorted((REPO_ROOT / "scripts").glob("*.py")) if "sys.path" in p.read_text()]
    assert not edited


def test_workflows_do_not_import_the_data_making_tools():
    """bundle.data reads, checks and transforms; bundle.dataset_tools writes, and only scripts and tests use it."""
    importers = [str(p.relative_to(REPO_ROOT)) for p in sorted((REPO_ROOT / "bundle").rglob("*.py"))
                 if "datasets" not in p.parts and "sharing" not in p.parts and re.search(r"datasets\.|from \.+datasets", p.read_text())]
    configs = [p.name for p in CONFIGS if "bundle.dataset_tools" in p.read_text()]
    assert not importers and not configs
