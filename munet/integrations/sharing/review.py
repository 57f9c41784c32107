"""List what a bundle's configs would execute, for review before anything runs.

MONAI configs run Python: ``imports`` entries, ``$`` expressions and ``_target_`` components are
imported or evaluated when a workflow is parsed. A receiver should read them first; this lists
every one with the file and config id it sits at, and flags the ones that reach outside the
bundle's own ``bundle`` package, MONAI, torch and the standard modules they use.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List

__all__ = ["ConfigEntry", "review_configs", "format_review", "FAMILIAR_PREFIXES"]

#: Modules whose use in configs is expected for this bundle; anything else is flagged.
FAMILIAR_PREFIXES = ("munet.", "monai", "torch", "os.path", "time.", "numpy", "ignite")
_NAMES = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


@dataclass
class ConfigEntry:
    """One executable item of a config file."""

    file: str
    config_id: str
    kind: str  # "import", "expression" or "target"
    text: str
    flagged: bool


def _walk(node: Any, path: str) -> Iterator[tuple]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}#{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}#{index}")
    else:
        yield path, node


_REFERENCE = re.compile(r"@[A-Za-z0-9_#:]+")
_STRING = re.compile(r"'[^']*'|\"[^\"]*\"")
_SUSPICIOUS = ("__import__", "exec(", "eval(", "compile(", "subprocess", "os.system", "os.popen", "open(", "socket", "urllib", "requests",
               "shutil", "pickle")


def _flagged(text: str, aliases: tuple = ()) -> bool:
    """True when an expression calls something outside the familiar modules, or looks dangerous."""
    if any(word in text for word in _SUSPICIOUS):
        return True
    code = _REFERENCE.sub("REF", _STRING.sub("''", text))
    known = FAMILIAR_PREFIXES + aliases + ("REF", "os.environ", "logging.")
    return any(not name.startswith(known) for name in _NAMES.findall(code))


_ALIAS = re.compile(r"^\$?import\s+([\w.]+)\s+as\s+(\w+)\s*$")


def _aliases(files: List[Path]) -> tuple:
    """``import x.y as z`` lines of the configs' imports: the aliases of familiar modules."""
    familiar = []
    for file in files:
        content = json.loads(file.read_text())
        for line in content.get("imports", []) + content.get("+imports", []):
            match = _ALIAS.match(str(line).strip())
            if match and match.group(1).startswith(FAMILIAR_PREFIXES + ("logging",)):
                familiar.append(match.group(2) + ".")
    return tuple(familiar)


def review_configs(bundle_root: str | Path) -> List[ConfigEntry]:
    """Every import, ``$`` expression and ``_target_`` in ``configs/*.json`` of ``bundle_root``."""
    entries: List[ConfigEntry] = []
    files = [f for f in sorted(Path(bundle_root, "configs").glob("*.json")) if f.name != "metadata.json"]
    aliases = _aliases(files)
    for file in files:
        content = json.loads(file.read_text())
        for config_id, value in _walk(content, ""):
            if not isinstance(value, str):
                continue
            leaf = config_id.split("#")[-1]
            if config_id.startswith(("imports#", "+imports#")):
                kind = "import"
            elif leaf == "_target_":
                kind = "target"
            elif value.startswith("$"):
                kind = "expression"
            else:
                continue
            text = value[1:] if value.startswith("$") else value
            module = text.replace("import ", "").replace("from ", "").strip() if kind == "import" else text
            flagged = _flagged(text, aliases) if kind == "expression" else not (
                module.startswith(FAMILIAR_PREFIXES + ("logging",)) or module in ("os", "time", "torch", "monai", "munet", "glob")
                or (kind == "target" and "." not in module)  # MONAI's own names, e.g. "Compose"
            )
            entries.append(ConfigEntry(file.name, config_id, kind, value, flagged))
    return entries


def format_review(entries: List[ConfigEntry]) -> str:
    """A readable listing, flagged entries marked with ``!``."""
    lines = []
    for entry in entries:
        mark = "!" if entry.flagged else " "
        lines.append(f"{mark} {entry.file}:{entry.config_id} [{entry.kind}] {entry.text}")
    flagged = sum(e.flagged for e in entries)
    lines.append(
        f"{len(entries)} executable entries ({sum(e.kind == 'import' for e in entries)} imports, "
        f"{sum(e.kind == 'expression' for e in entries)} $ expressions, {sum(e.kind == 'target' for e in entries)} "
        f"_target_ components); {flagged} flagged for a closer look"
    )
    return "\n".join(lines)
