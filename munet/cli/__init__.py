"""The ``munet`` command: what users do, each a thin call to the runtime or to ``python -m monai.bundle run``.

    munet demo                                   # demo data, train, evaluate, infer (a few minutes on 2 CPU cores)
    munet train --dataset_dir DATA --output_dir runs/model [--recipe paper] [--max_epochs 10 ...]
    munet fit --bundle runs/model --folds runs/cv/fold0,...,runs/cv/fold4   # served values from cross-validation
    munet evaluate --bundle runs/model --dataset_dir DATA
    munet infer IMAGE_OR_FOLDER_OR_DICOMWEB_URL --bundle runs/model
    munet serve STUDIES --bundle runs/model      # MONAI Label server
    munet rollback --bundle runs/model           # serve the model before the last server-side publication again
    munet package | verify | receive | data | benchmark

``munet <command> --help`` is the reference of each. A bundle folder (``--bundle``) is what
``munet train`` writes: ``configs/`` and ``models/``; the repository root is one too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

__all__ = ["main"]


def _bundle(bundle: str) -> Path:
    root = Path(bundle).resolve()
    if not (root / "configs" / "train.json").is_file():
        raise SystemExit(f"error: {root} is not a bundle folder (no configs/train.json): give --bundle the folder munet train wrote")
    return root


def data(kind: str = "demo", output_dir: str = "demo_data", busi_dir: str = "", **options: Any) -> None:
    """Make a dataset: ``demo`` (synthetic ultrasound; options --image_format png|dicom, --n_train,
    --n_val, --n_test, --seed, ...) or ``busi`` (the prepared BUSI folder given by --busi_dir to a
    datalist; options --to_dicom, --include_normal, --drop_flags, --limit_per_split)."""
    if kind == "demo":
        from munet.dataset_tools.demo_dataset import generate_demo_dataset

        generate_demo_dataset(output_dir, **options)
    elif kind == "busi":
        from munet.dataset_tools.busi import BusiError, convert_busi

        if not busi_dir:
            raise SystemExit("error: munet data busi needs --busi_dir (the prepared BUSI folder with manifest.csv)")
        try:
            convert_busi(busi_dir, output_dir, **options)
        except BusiError as err:
            raise SystemExit(f"error: {err}") from err
    else:
        raise SystemExit(f"error: unknown dataset kind {kind!r}: choose demo or busi")
    print(f"datalist: {Path(output_dir).resolve() / 'datalist.json'}")


def train(output_dir: str = "runs/model", dataset_dir: str = "", datalist: str = "", busi_dir: str = "",
          recipe: str = "recommended", seed: int = 0, tracking: str = "mlflow", tracking_uri: str = "",
          resume: bool = False, interactive: bool = False, folds: Optional[int] = None, fold: Optional[int] = None,
          **overrides: Any) -> None:
    """Train ``--recipe`` (recommended: ImageNet EfficientNet-Lite0 with a presence head; paper: the
    paper's configuration; gpu; demo) on ``--dataset_dir`` (its datalist.json, or ``--datalist``)
    or on BUSI (``--busi_dir``) into the bundle folder ``--output_dir``. Any other ``--name value``
    sets that value of configs/train.json (``--max_epochs 5``). ``--tracking mlflow`` (default)
    logs to ``<output_dir>/eval/mlruns.db`` or to ``--tracking_uri``; ``none`` switches it off.
    ``--interactive True`` trains the click-guided model of MONAI Label's ``munet_interactive``
    (``models/model_interactive.pt``) with the same recipe. ``--folds 5 --fold 0``: cross-validation,
    training on the other folds of training + validation pooled, fitted on fold 0 (test untouched)."""
    from munet.cli.train import train_bundle

    train_bundle(output_dir, dataset_dir or None, datalist or None, busi_dir or None, recipe, seed, tracking,
                 tracking_uri or None, resume, interactive=interactive, folds=folds, fold=fold, **overrides)


def fit(bundle: str = ".", folds: Any = "") -> None:
    """Fit ``--bundle``'s served values (class and presence temperatures, three-way presence
    thresholds, review rule) on the held-out predictions of cross-validation bundles instead of its
    own validation split, and write them into its configs/train.json. ``--folds``: the fold bundles,
    comma-separated, each trained by ``munet train --folds k --fold i`` on the same data (all k
    folds: every training and validation image predicted once, unseen). The record is
    ``<bundle>/eval/fold_fit.json``."""
    from munet.cli.validation_fit import fit_bundle_on_folds

    roots = [Path(p.strip()) for p in (folds.split(",") if isinstance(folds, str) else folds) if str(p).strip()]
    if not roots:
        raise SystemExit("error: give --folds, the cross-validation bundles (comma-separated), e.g. runs/cv/fold0,runs/cv/fold1")
    fit_bundle_on_folds(_bundle(bundle), [_bundle(str(r)) for r in roots])


def evaluate(bundle: str = ".", dataset_dir: str = "", datalist: str = "", split: str = "test",
             output_dir: str = "", **overrides: Any) -> None:
    """Dice, Sen, Spec, Acc, AUC of the bundle folder's model on ``--split`` of the datalist:
    ``<output_dir>/metrics.json`` (default ``<bundle>/eval``), per_case.csv and predictions/."""
    from munet.engines.bundle_folder import run_bundle_command, workflow_argv

    root = _bundle(bundle)
    values = {"eval_split": split, **overrides}
    values.update({k: str(Path(v).resolve()) for k, v in (("dataset_dir", dataset_dir), ("datalist", datalist),
                                                             ("output_dir", output_dir)) if v})
    run_bundle_command(workflow_argv("evaluating", root, **values))


def infer(inputs: str, bundle: str = ".", output_dir: str = "", interactive: bool = False, study_uid: str = "",
          series_uid: str = "", query: Any = (), no_store: bool = False, **overrides: Any) -> None:
    """Masks, overlays, class probabilities (predictions.csv) and, for DICOM inputs, DICOM SEG + SR.

    ``inputs``: an image file, a folder of images, a datalist .json (its ``test`` list), or a
    DICOMweb root (``http(s)://...``) with ``--study_uid``/``--series_uid``/``--query KEY=VALUE``:
    the images are fetched, and the SEG and SR stored back unless ``--no_store``.
    """
    from munet.engines.bundle_folder import override_args, run_bundle_command, workflow_argv

    root = _bundle(bundle)
    out = str(Path(output_dir).resolve()) if output_dir else ""
    if str(inputs).startswith(("http://", "https://")):
        from munet.integrations.pacs import main as pacs_main

        argv = ["--dicomweb_url", inputs, "--bundle_root", str(root), "--study_uid", study_uid, "--series_uid", series_uid]
        argv += [a for q in ([query] if isinstance(query, str) else query) for a in ("--query", q)]
        argv += (["--output_dir", out] if out else []) + (["--no_store"] if no_store else [])
        sys.exit(pacs_main(argv + ["--", *override_args(overrides)]))
    source = Path(inputs).resolve()
    values = {"datalist": str(source), "dataset_dir": str(source if source.is_dir() else source.parent), **overrides}
    if out:
        values["output_dir"] = out
    run_bundle_command(workflow_argv("inferring", root, ("inference_interactive.json",) if interactive else (), **values))


def serve(studies: str, bundle: str = ".", host: str = "127.0.0.1", port: int = 8000, min_validation_images: int = 10,
          token_file: str = "") -> None:
    """Start the MONAI Label server on ``studies`` (a folder of images, or a DICOMweb root: labels
    are then stored in the PACS as DICOM SEG) serving the bundle folder (needs ``bash
    scripts/setup_env.sh --with-monailabel``); annotate at ``http://<host>:<port>/annotate/``. A server-side training
    publishes new weights only when validated on at least ``--min_validation_images`` labelled images.
    With ``--token_file`` every request must send ``Authorization: Bearer <token>``; a ``--host``
    other than 127.0.0.1 needs one."""
    from munet.engines.bundle_folder import REPO_ROOT

    script = REPO_ROOT / "scripts" / "start_monailabel.sh"
    token = ["--token_file", token_file] if token_file else []
    os.execvp("bash", ["bash", str(script), studies, "--bundle_path", str(_bundle(bundle)), "--host", host, "--port", str(port),
                       "--min_validation_images", str(int(min_validation_images)), *token])


def rollback(bundle: str = ".", entry: int = 0, weights: str = "model.pt", list_only: bool = False) -> None:
    """Serve an earlier published model again: ``--entry N`` of ``models/history`` (default: the one
    before the latest publication); ``--list_only True`` lists the kept publications with their scores.
    A running MONAI Label server picks the weights up at its next request."""
    from munet.engines.model_history import entries
    from munet.engines.model_history import rollback as roll_back

    root = _bundle(bundle)
    if list_only:
        for record in entries(root, weights):
            validation = record.get("validation") or {}
            after = (validation.get("after") or {}).get("val_score")
            note = f" (rollback to {record['rolled_back_to']})" if "rolled_back_to" in record else ""
            print(f"{record['entry']}: {record['published']} {record.get('published_by', '')} val_score {after} "
                  f"on {len(validation.get('images') or [])} images{note}")
        return
    record = roll_back(root, entry or None, weights)
    print(f"serving entry {record['rolled_back_to']} again as models/{weights} (recorded as entry {record['entry']})")


def package(bundle: str = ".", output_dir: str = "dist", name: str = "munet_ultrasound", url_base: str = "") -> None:
    """The shareable zip of a trained bundle folder (configs, docs, code, weights, TorchScript,
    checksums); prints its sha256, to send to the receiver by another channel."""
    from munet.integrations.sharing.package import build_package
    from munet.utils.hashing import sha256_of

    archive = build_package(str(_bundle(bundle)), output_dir, name, {}, url_base)
    print(f"wrote {archive}\nsha256 {sha256_of(archive)}")


def verify(bundle: str = ".", ckpt_file: str = "") -> None:
    """The MONAI model zoo's checks on a bundle folder, offline (exit status 1 when one fails)."""
    from munet.integrations.sharing.zoo_checks import run_zoo_checks

    results = run_zoo_checks(str(_bundle(bundle)), ckpt_file or None)
    failed = [r.name for r in results if not r.passed]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        sys.exit(1)


class Receive:
    """The receiving side of a shared bundle: ``unpack`` (verify every checksum), ``review`` (every
    import, _target_ and $ expression of its configs: read it before running), ``verify`` (again)."""

    def unpack(self, archive: str, destination: str, expected_sha256: str = "") -> None:
        """Unpack into an empty folder, refusing any zip whose files do not match checksums.sha256."""
        from munet.integrations.sharing.package import unpack_package
        from munet.integrations.sharing.review import format_review, review_configs
        from munet.utils.hashing import IntegrityError

        try:
            root = unpack_package(archive, destination, expected_sha256 or None)
        except IntegrityError as err:
            print(f"refused: {err}", file=sys.stderr)
            sys.exit(2)
        entries = review_configs(root)
        flagged = [e for e in entries if e.flagged]
        print(f"verified {root}: every file matches checksums.sha256")
        if flagged:
            print(format_review(flagged))
        print(f"{len(entries)} executable config entries, {len(flagged)} flagged; all: munet receive review --bundle {root}")

    def verify(self, bundle: str) -> None:
        """Verify an unpacked bundle against its checksums again (e.g. before each use)."""
        from munet.utils.hashing import IntegrityError, verify_manifest

        try:
            files = verify_manifest(Path(bundle))
        except IntegrityError as err:
            print(f"refused: {err}", file=sys.stderr)
            sys.exit(2)
        print(f"{bundle}: {len(files)} files match checksums.sha256")

    def review(self, bundle: str) -> None:
        """List every import, _target_ and $ expression of the bundle's configs ('!' = look closer)."""
        from munet.integrations.sharing.review import format_review, review_configs

        print(format_review(review_configs(bundle)))


def benchmark(**options: Any) -> None:
    """Speed and memory of MUNet beside MONAI's FlexibleUNet-ResNet50 and BasicUNet in one run, as
    ratios (``--size``, ``--batch``, ``--iters``, ``--output``); see munet/cli/benchmark.py."""
    from munet.cli.benchmark import main as benchmark_main

    benchmark_main(**options)


def demo(output_dir: str = "runs/demo", recipe: str = "demo", image_format: str = "dicom", tracking: str = "none",
         **overrides: Any) -> None:
    """The main job on synthetic demo data: make it (``<output_dir>/demo_data``, scanner-like
    ultrasound DICOM), train ``--recipe`` into ``<output_dir>``, evaluate on the test split, and
    infer (masks, overlays, predictions.csv, DICOM SEG + SR)."""
    root = Path(output_dir).resolve()
    demo_data = root / "demo_data"
    print("== 1/4 demo data ==", flush=True)
    data("demo", str(demo_data), image_format=image_format)
    print(f"== 2/4 training ({recipe} recipe) ==", flush=True)
    train(str(root), str(demo_data), recipe=recipe, tracking=tracking, **overrides)
    print("== 3/4 evaluation on the test split ==", flush=True)
    evaluate(str(root), str(demo_data))
    print("== 4/4 inference ==", flush=True)
    infer(str(demo_data / "datalist.json"), str(root))
    print(f"done: metrics in {root / 'eval' / 'metrics.json'}, predictions in {root / 'eval' / 'inference'}")


COMMANDS = {"demo": demo, "data": data, "train": train, "fit": fit, "evaluate": evaluate, "infer": infer, "serve": serve,
            "rollback": rollback, "package": package, "verify": verify, "receive": Receive, "benchmark": benchmark}


def main(argv: Optional[list] = None) -> None:
    """Entry point of the ``munet`` console script."""
    import fire

    from munet.errors import TRACEBACK_ENV, install_excepthook

    install_excepthook()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = list(sys.argv[1:] if argv is None else argv)
    cut = args.index("--") if "--" in args else len(args)
    if {"--help", "-h"} & set(args[:cut]):  # fire hands flags to **overrides; its own help needs "-- --help"
        args = [a for a in args[:cut] if a not in ("--help", "-h")] + ["--", "--help"]
    try:
        fire.Fire(COMMANDS, command=args, name="munet")
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)

