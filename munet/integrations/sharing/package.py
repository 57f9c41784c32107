"""Build a versioned, checksummed zip of a trained bundle, and unpack and verify one safely."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path, PurePosixPath
from typing import List, Optional

import yaml

from munet.engines.bundle_folder import bundle_argv
from munet.engines.weights_info import sidecar_path
from munet.utils.hashing import MANIFEST, IntegrityError, sha256_of, verify_manifest, write_manifest

__all__ = ["PACKAGED", "bundle_files", "bake_overrides", "export_torchscript", "write_large_files_yml", "build_package", "unpack_package"]

#: What a shared bundle holds (relative to the bundle root); run outputs, data and tests stay home.
PACKAGED = ("configs", "docs", "munet", "scripts", "LICENSE", "README.md", "requirements.txt",
            "requirements-monailabel.txt", "constraints.txt")
_SKIP_PARTS = {"__pycache__", ".pytest_cache"}
#: the repository (bundle root) this package belongs to
_REPO_ROOT = Path(__file__).resolve().parents[3]
#: what a running MONAI Label server writes into its app folder (logs, downloads), not shared
_APP_RUNTIME = tuple(Path("munet/integrations/monailabel_app") / d for d in ("logs", "bin", "lib", "model"))


def _shared(relative: Path) -> bool:
    return not _SKIP_PARTS & set(relative.parts) and relative.suffix != ".pyc" and not any(
        relative.is_relative_to(d) for d in _APP_RUNTIME)


def bundle_files(root: Path) -> List[Path]:
    """The files of ``PACKAGED`` under ``root`` (relative paths), without caches."""
    files: List[Path] = []
    for entry in PACKAGED:
        path = root / entry
        if path.is_file():
            files.append(Path(entry))
        elif path.is_dir():
            files += [p.relative_to(root) for p in sorted(path.rglob("*")) if p.is_file() and _shared(p.relative_to(root))]
    return files


def export_torchscript(root: Path, overrides: Optional[dict] = None) -> Path:
    """``models/model.ts`` from ``models/model.pt`` with the zoo's ``ckpt_export`` (config and metadata embedded)."""
    args = bundle_argv("ckpt_export", "network_def",
            "--filepath", "models/model.ts", "--ckpt_file", "models/model.pt",
            "--meta_file", "configs/metadata.json", "--config_file", "['configs/train.json','configs/inference.json']")
    for key, value in (overrides or {}).items():
        args += [f"--{key}", str(value)]
    result = subprocess.run(args, cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ckpt_export failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return root / "models" / "model.ts"


def bake_overrides(root: Path, overrides: dict) -> None:
    """Write config overrides used in training (``base_channels``, ``backbone``, ...) into the
    packaged train.json, so the receiver builds the network that was trained (inference.json and
    evaluate.json merge over train.json, so they see them too)."""
    path = root / "configs" / "train.json"
    content = json.loads(path.read_text())
    unknown = [k for k in overrides if k not in content]
    if unknown:
        raise KeyError(f"overrides {unknown} are not top-level values of train.json")
    content.update(overrides)
    path.write_text(json.dumps(content, indent=4) + "\n")


def write_large_files_yml(root: Path, url_base: str = "") -> Path:
    """``large_files.yml`` in the model zoo's format, naming the weights with their sha256."""
    entries = [{"path": name, "url": url_base.rstrip("/") + "/" + name if url_base else "",
                "hash_val": sha256_of(root / name), "hash_type": "sha256"} for name in ("models/model.pt", "models/model.ts")]
    path = root / "large_files.yml"
    path.write_text(yaml.safe_dump({"large_files": entries}, sort_keys=False))
    return path


def build_package(
    bundle_root: str,
    output_dir: str = "dist",
    name: str = "munet_ultrasound",
    overrides: Optional[dict] = None,
    url_base: str = "",
) -> Path:
    """Zip ``bundle_root`` as ``<output_dir>/<name>_v<version>.zip`` unpacking to ``<name>/``.

    Needs ``models/model.pt``; bakes ``overrides`` (the values training was run with) into the
    packaged configs; (re)exports ``models/model.ts`` so both match, writes
    ``large_files.yml`` and ``checksums.sha256`` (every file), and returns the zip path. The zip's
    own sha256 is printed by the script: send it by another channel so the receiver can check it.
    """
    root = Path(bundle_root).resolve()
    weights = root / "models" / "model.pt"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found: train the bundle first")
    version = json.loads((root / "configs" / "metadata.json").read_text())["version"]
    staging = Path(output_dir).resolve() / f".staging_{name}"
    if staging.exists():
        shutil.rmtree(staging)
    target = staging / name
    # a trained-model folder (configs + models, as munet train writes) takes
    # the code, docs and requirements it lacks from the repository this package belongs to
    for rel in bundle_files(root):
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target / rel)
    if root != _REPO_ROOT:
        for rel in bundle_files(_REPO_ROOT):
            if not (root / rel.parts[0]).exists():
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(_REPO_ROOT / rel, target / rel)
    (target / "models").mkdir(parents=True, exist_ok=True)
    shutil.copy2(weights, target / "models" / "model.pt")
    if sidecar_path(weights).is_file():  # what built the weights: the receiver's inference checks it
        shutil.copy2(sidecar_path(weights), target / "models" / sidecar_path(weights).name)
    bake_overrides(target, overrides or {})
    export_torchscript(target)
    write_large_files_yml(target, url_base)
    files = [p.relative_to(target) for p in target.rglob("*") if p.is_file() and not _SKIP_PARTS & set(p.parts)]
    write_manifest(target, files)
    archive = Path(output_dir).resolve() / f"{name}_v{version}.zip"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(p for p in target.rglob("*") if p.is_file() and not _SKIP_PARTS & set(p.parts)):
            zf.write(file, PurePosixPath(name, *file.relative_to(target).parts).as_posix())
    shutil.rmtree(staging)
    return archive


def _safe_members(zf: zipfile.ZipFile) -> List[zipfile.ZipInfo]:
    members = zf.infolist()
    for info in members:
        path = PurePosixPath(info.filename)
        if path.is_absolute() or ".." in path.parts or info.filename.startswith("\\\\"):
            raise IntegrityError(f"zip entry {info.filename!r} would escape the target directory, refusing the bundle")
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise IntegrityError(f"zip entry {info.filename!r} is a symbolic link, refusing the bundle")
    return members


def unpack_package(archive: str, destination: str, expected_sha256: Optional[str] = None) -> Path:
    """Unpack a bundle zip into an empty ``destination`` and verify every checksum; returns the bundle root.

    Refuses: a zip whose sha256 differs from ``expected_sha256``, entries escaping the folder or
    symbolic links, a non-empty destination, and any file missing, altered or added relative to
    ``checksums.sha256``. Nothing from the bundle is imported or executed here.
    """
    archive_path = Path(archive)
    if expected_sha256 and sha256_of(archive_path) != expected_sha256.lower():
        raise IntegrityError(f"{archive_path}: sha256 {sha256_of(archive_path)} differs from the expected {expected_sha256}")
    dest = Path(destination)
    if dest.exists() and any(dest.iterdir()):
        raise IntegrityError(f"{dest} is not empty: unpack a received bundle into an empty directory")
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive_path) as zf:
        members = _safe_members(zf)
        tops = {PurePosixPath(m.filename).parts[0] for m in members}
        if len(tops) != 1:
            raise IntegrityError(f"{archive_path}: expected one top-level folder, found {sorted(tops)}")
        zf.extractall(dest, members)
    root = dest / tops.pop()
    if not (root / MANIFEST).is_file():
        raise IntegrityError(f"{archive_path}: no {MANIFEST} in the bundle, refusing it")
    verify_manifest(root)
    return root
