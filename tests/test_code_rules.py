"""Rules the code base keeps (issues #15, #28): each shared value defined once, short config expressions,
no private attributes of Ignite or MONAI, no sys.path edits, layers that import only downwards,
nothing done at import, at most six scripts, and ruff's lint."""

from __future__ import annotations

import json
import re
from typing import Iterator, Tuple

import pytest
from bundle_helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "munet"
SOURCES = sorted(PACKAGE.rglob("*.py")) + sorted((REPO_ROOT / "research").glob("*.py"))
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


def test_research_tools_import_the_package_without_editing_sys_path():
    edited = [str(p.relative_to(REPO_ROOT)) for p in sorted((REPO_ROOT / "research").glob("*.py")) if "sys.path" in p.read_text()]
    assert not edited


def test_scripts_folder_holds_at_most_six_files():
    """The user's entry point is the ``munet`` command; scripts/ keeps set-up and service start-up only."""
    files = sorted(p.name for p in (REPO_ROOT / "scripts").iterdir() if p.is_file())
    assert len(files) <= 6, files


#: package layers, bottom first: each may import only its own and the layers below it
LAYERS = [("utils",), ("constants", "errors"), ("data", "networks"), ("losses",), ("engines",),
          ("integrations", "dataset_tools"), ("cli",)]


def _layer(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else ""
    return next(i for i, names in enumerate(LAYERS) if top in names)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_layers_import_only_downwards(path):
    """utils at the bottom, then constants/errors, the runtime (data, networks, losses, engines), the
    integrations and data-making tools, and the command on top; research/ is never imported by the package."""
    rel = path.relative_to(REPO_ROOT).with_suffix("")
    own = ".".join(rel.parts if rel.name != "__init__" else rel.parts[:-1])
    if own == "munet":
        return
    imported = re.findall(r"^\s*(?:from|import) (munet\.[\w.]+|research)", path.read_text(), re.M)
    assert "research" not in imported
    upward = [m for m in imported if _layer(m) > _layer(own) and not own.startswith(m)]
    assert not upward, f"{own} imports from a higher layer: {upward}"


def test_importing_the_package_changes_nothing_in_the_process():
    import subprocess
    import sys

    code = "import sys; hook = sys.excepthook; import munet, munet.cli; assert sys.excepthook is hook; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


def test_network_keys_are_listed_in_one_place_at_most():
    """The network's settings are build_network's arguments, recorded from the network it built
    (munet.engines.weights_info): no list of their names to keep in step in the package."""
    listing = [str(p.relative_to(REPO_ROOT)) for p in sorted(PACKAGE.rglob("*.py"))
               if re.search(r"[\"']head_kernel_size[\"']", p.read_text())]
    assert len(listing) <= 1, listing


def test_ruff_lint_passes():
    import shutil
    import subprocess

    ruff = shutil.which("ruff") or str(REPO_ROOT / ".venv" / "bin" / "ruff")
    result = subprocess.run([ruff, "check", "munet", "research", "tests"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout[-3000:]


def test_workflows_do_not_import_the_data_making_tools():
    """munet.data reads, checks and transforms; munet.dataset_tools writes, and only the command, research and tests use it."""
    runtime = [p for d in ("data", "networks", "engines") for p in sorted((PACKAGE / d).rglob("*.py"))] + [PACKAGE / "losses.py"]
    importers = [str(p.relative_to(REPO_ROOT)) for p in runtime if re.search(r"^\s*(from|import) munet\.dataset_tools", p.read_text(), re.M)]
    configs = [p.name for p in CONFIGS if "munet.dataset_tools" in p.read_text()]
    assert not importers and not configs


def test_the_test_command_fails_when_an_extra_it_needs_cannot_be_installed():
    """CI runs scripts/run_tests.sh: a failed MONAI Label or PACS install must fail it, not turn the
    server tests into skips."""
    script = (REPO_ROOT / "scripts" / "run_tests.sh").read_text()
    assert "set -euo pipefail" in script
    for extra in ("--with-monailabel", "--with-pacs"):
        lines = [line for line in script.splitlines() if extra in line and not line.lstrip().startswith("#")]
        assert lines and all("||" not in line for line in lines), lines
