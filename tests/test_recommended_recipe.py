"""The recommended recipe (``munet train`` inside research/train_recommended) runs end to end on a
10-case BUSI subset and leaves a servable bundle folder (skipped without the BUSI folder)."""

from __future__ import annotations

import csv
import importlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from bundle_helpers import REPO_ROOT
from monai.bundle import ConfigParser

from munet.engines.bundle_folder import read_bundle_config

BUSI = REPO_ROOT.parent / "shared" / "data" / "busi"


def _script_module(name: str):
    """A module of research/ (a package of the checkout, imported as ``research.<name>``)."""
    return importlib.import_module(f"research.{name}")


def served_values(bundle_root, *keys):
    """The values the bundle folder's inference resolves (inference.json merged over its train.json)."""
    parser = read_bundle_config(bundle_root)
    return [parser.get_parsed_content(key) for key in keys]


@pytest.mark.skipif(not (BUSI / "manifest.csv").is_file(), reason=f"BUSI data not found at {BUSI} (../shared/data/busi)")
def test_recipe_trains_a_bundle_with_a_presence_threshold_and_reports_it(tmp_path):
    out = tmp_path / "recommended"
    command = [sys.executable, "-m", "research.train_recommended", "--busi_dir", str(BUSI), "--output_dir", str(out),
               "--limit_per_split", "10", "--overrides", '{"image_size": 64, "max_epochs": 1}']
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1200,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "precision auto ->" in result.stdout and "[presence] threshold" in result.stdout
    # a bundle folder: configs with the recipe baked in, the best model, the threshold chosen on validation
    record = json.loads((out / "result.json").read_text())
    backbone, presence_head, image_size, threshold = served_values(out, "backbone", "presence_head", "image_size",
                                                                   "presence_threshold")
    train = json.loads((out / "configs" / "train.json").read_text())
    assert (out / "models" / "model.pt").is_file() and (out / "configs" / "metadata.json").is_file()
    assert backbone == train["backbone"] == "efficientnet_lite0"
    assert presence_head is True and image_size == 64 == train["image_size"]
    assert threshold == pytest.approx(record["presence_threshold"]) == train["presence_threshold"]
    assert train["require_lesion"] is False
    # served as the recipe says: masks averaged over 3 sizes and 2 flips, class and presence at the trained size
    scales, flips, scale_heads = served_values(out, "inference_scales", "inference_flips", "inference_scale_image_heads")
    assert (scales, flips, scale_heads) == (record["recipe"]["inference_scales"], True, False) and len(scales) == 3
    # the recipe trains each normal image twice (train.json's normal_repeats); validation keeps each once
    from munet.data.validation import checked_datalist

    datalist_path = out / record["data"]
    datalist = json.loads(datalist_path.read_text())
    assert record["recipe"]["normal_repeats"] == 2 == train["normal_repeats"]
    trained = checked_datalist(str(datalist_path), "training", str(out / "data"), require_lesion=False, normal_repeats=2)
    normal_ids = [item["id"] for item in trained if "class" not in item]
    assert normal_ids and all(normal_ids.count(i) == 2 for i in normal_ids)
    assert len({item["id"] for item in datalist["validation"]}) == len(datalist["validation"])
    # the CPU recipe serves the last epoch's weights; the best-validation-score ones stay beside them
    served = torch.load(out / "models" / "model.pt", weights_only=True)
    last = torch.load(out / "models" / "checkpoint_last.pt", weights_only=True)["model"]
    assert record["recipe"]["model_selection"] == "last_epoch" and (out / "models" / "model_best_val.pt").is_file()
    assert served.keys() == last.keys() and all(torch.equal(served[k], last[k]) for k in served)
    # run records: paths relative to the data, the commit that trained it, the test figures
    assert len(record["cases"]) == 10 and not any(case["image"].startswith("/") for case in record["cases"])
    assert record["commit"] and record["commit"] != "unknown (not a git checkout)"
    assert {"dice", "auc", "normal_fpr", "normal_area", "train_seconds", "epochs"} <= set(record)
    assert record["validation_presence"]["lesion_images"] == 10 and record["validation_presence"]["normal_images"] > 0
    # normal test images got a finding, and an emptied mask exactly when "no lesion" was said
    rows = list(csv.DictReader(open(out / "eval" / "predictions_normal_test" / "predictions.csv")))
    assert rows
    for row in rows:
        assert row["finding"] == ("lesion" if int(row["lesion_pixels"]) > 0 else "no lesion")
        if float(row["lesion_prob"]) < record["presence_threshold"]:
            assert int(row["lesion_pixels"]) == 0
    # every threshold rule and no gate measured on the same ungated test masks; the served one among them
    rules = record["threshold_rules"]
    assert set(rules) == {"no gate", "youden", "lesion_recall"} and record["presence_threshold_rule"]["rule"] == "youden"
    assert rules["youden"]["threshold"] == pytest.approx(record["presence_threshold"])
    assert rules["no gate"]["lesion_images_gated"] == 0 and rules["no gate"]["normal_fpr"] >= rules["youden"]["normal_fpr"]
    # a finished run re-evaluated with the other rule: models and training figures kept, threshold re-chosen
    weights = (out / "models" / "model.pt").read_bytes()
    again = subprocess.run(command + ["--evaluate_only", "True", "--threshold_rule", "lesion_recall"], cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=1200, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "[train] skipped (evaluate_only)" in again.stdout and (out / "models" / "model.pt").read_bytes() == weights
    second = json.loads((out / "result.json").read_text())
    assert second["train_seconds"] == record["train_seconds"] and second["commit"] == record["commit"]
    assert second["presence_threshold"] == pytest.approx(rules["lesion_recall"]["threshold"])
    assert served_values(out, "presence_threshold")[0] == pytest.approx(second["presence_threshold"])
    # the study script turns finished runs into the "Recommended model" section of results.md
    docs = tmp_path / "docs"
    target = tmp_path / "study" / "recommended" / "recommended_seed0"
    target.parent.mkdir(parents=True)
    out.rename(target)
    study = [sys.executable, "-m", "research.recommended_study", "--busi_dir", str(BUSI), "--output_dir", str(tmp_path / "study"),
             "--docs_dir", str(docs), "--seeds", "[0]", "--report_only", "True"]
    result = subprocess.run(study, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (docs / "results.md").read_text()
    assert "## Recommended model" in report and "**recommended**" in report and "not run yet" in report
    assert (docs / "results" / "runs" / "recommended" / "recommended_seed0.json").is_file()
    # an ensemble chooses its own presence threshold on the validation split, from its averaged presence:
    # the model ensembled with a copy of itself averages to its own probabilities, so it chooses the model's threshold
    shutil.copytree(target, target.parent / "recommended_seed1")
    study_module = _script_module("recommended_study")
    ensembles = study_module.RecommendedStudy(str(BUSI), str(tmp_path / "study"), str(docs), limit_per_split=10)
    [ensemble] = ensembles.seed_ensembles("recommended", [{"seed": 0}, {"seed": 1}], members=2)
    assert ensemble["bundles"] == ["recommended_seed0", "recommended_seed1"]
    assert ensemble["presence_threshold"] == pytest.approx(rules["youden"]["threshold"], abs=1e-6)
    normal_rows = list(csv.DictReader(open(tmp_path / "study" / "recommended" / "derived" / ensemble["name"] / "normal_test" / "predictions.csv")))
    assert normal_rows and all((float(r["lesion_prob"]) < ensemble["presence_threshold"]) <= (int(r["lesion_pixels"]) == 0)
                               for r in normal_rows)
    # the same choice from the command users run, which prints how to serve the ensemble with it
    data = tmp_path / "study" / "recommended" / "data"
    members = [str(target), str(target.parent / "recommended_seed1")]
    chosen = subprocess.run([sys.executable, "-m", "research.ensemble_threshold", "--bundles", json.dumps(members),
                             "--dataset_dir", str(data), "--datalist", str(data / "datalist_with_normals.json"),
                             "--output_dir", str(tmp_path / "ensemble")], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert chosen.returncode == 0, chosen.stdout[-3000:] + chosen.stderr[-3000:]
    written = json.loads((tmp_path / "ensemble" / "ensemble_threshold.json").read_text())
    assert written["presence_threshold"] == pytest.approx(ensemble["presence_threshold"], abs=1e-6)
    assert f"--presence_threshold {written['presence_threshold']:.6f}" in chosen.stdout and "munet infer" in chosen.stdout
    lonely = subprocess.run([sys.executable, "-m", "research.ensemble_threshold", "--bundles", json.dumps(members[:1]),
                             "--dataset_dir", str(data), "--datalist", str(data / "datalist_with_normals.json")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert lonely.returncode != 0 and "at least two bundles" in lonely.stderr


def test_ensemble_threshold_refuses_members_without_presence_head_and_validation_without_normals(tmp_path):
    module = _script_module("ensemble_threshold")
    train = json.loads((REPO_ROOT / "configs" / "train.json").read_text())
    members = []
    for name, presence in (("a", True), ("b", False)):
        (tmp_path / name / "configs").mkdir(parents=True)
        (tmp_path / name / "models").mkdir()
        (tmp_path / name / "configs" / "train.json").write_text(json.dumps({**train, "presence_head": presence}))
        shutil.copy(REPO_ROOT / "configs" / "inference.json", tmp_path / name / "configs" / "inference.json")
        (tmp_path / name / "models" / "model.pt").write_bytes(b"not read before the checks")
        members.append(str(tmp_path / name))
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"validation": [{"image": "a.png", "label": "a_mask.png", "class": 0},
                                                   {"image": "n.png", "label": "n_mask.png"}]}))
    with pytest.raises(ValueError, match=f"{tmp_path / 'b'} has no lesion-presence head"):
        module.ensemble_threshold(members, str(tmp_path), str(datalist))
    lesions_only = tmp_path / "lesions_only.json"
    lesions_only.write_text(json.dumps({"validation": [{"image": "a.png", "label": "a_mask.png", "class": 0}]}))
    with pytest.raises(ValueError, match="needs lesion images and normal images.*1 lesion and 0 normal"):
        module.ensemble_threshold([members[0], members[0]], str(tmp_path), str(lesions_only))
    with pytest.raises(ValueError, match="2 bundles but 3 weights"):
        module.ensemble_threshold([members[0], members[0]], str(tmp_path), str(datalist), weights=[1, 1, 1])
    with pytest.raises(ValueError, match="at least two bundles"):
        module.ensemble_threshold(members[0], str(tmp_path), str(datalist))  # one path, not its characters


def test_research_run_from_another_checkout_uses_that_checkouts_package(tmp_path):
    """A git worktree snapshot runs ``python -m research.<name>`` from its root: it must import its own
    ``munet``, not the editable install's (which would train with other code and record another commit)."""
    snapshot = tmp_path / "snapshot"
    for part in ("munet", "research", "configs"):
        shutil.copytree(REPO_ROOT / part, snapshot / part, ignore=shutil.ignore_patterns("__pycache__"))
    code = "import munet, research.study_common as s; print(munet.__file__); print(s.REPO)"
    ran = subprocess.run([sys.executable, "-c", code], cwd=snapshot, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr[-2000:]
    package, repo = ran.stdout.split()
    assert package == str(snapshot / "munet" / "__init__.py") and repo == str(snapshot)


def test_a_none_override_reaches_the_config_through_the_bundle_cli():
    """The study scripts switch the presence gate off with ``presence_threshold=None``; MONAI's bundle
    CLI drops None-valued overrides, so the scripts must write it as the expression ``$None``."""

    from monai.bundle.scripts import update_kwargs

    from munet.engines.bundle_folder import override_args

    assert update_kwargs(presence_threshold=None) == {}  # why None cannot be passed as it is
    args = override_args({"presence_threshold": None, "inference_scales": [1.0, 1.5], "seed": 3})
    assert args == ["--presence_threshold", "$None", "--inference_scales", "[1.0, 1.5]", "--seed", "3"]
    parser = ConfigParser({"presence_threshold": 0.5})
    parser.update(update_kwargs(presence_threshold=args[1]))
    assert parser.get_parsed_content("presence_threshold") is None


def _load_study():
    """research/recommended_study.py as a module."""
    return _script_module("recommended_study")


def test_training_minutes_name_their_threads_and_are_not_averaged_across_thread_counts():
    """A run on one core while another run held the other is not comparable with a run alone on two:
    the study's table gives each run's minutes with its threads instead of one mean."""
    study = _load_study()
    one_core = [{"seed": 0, "train_seconds": 5730.0, "epochs": 25, "threads": 1}, {"seed": 1, "train_seconds": 5892.0, "epochs": 25, "threads": 1}]
    alone = {"seed": 2, "train_seconds": 3720.0, "epochs": 25, "threads": 2}
    same = study.table({"same threads": one_core})[2].split(" | ")
    assert same[-2] == "96.8 ± 1.9 (1 thr.)" and same[-1].rstrip(" |") == "3.87 ± 0.08 (1 thr.)"
    mixed = study.table({"mixed": one_core + [alone]})[2].split(" | ")
    assert mixed[-2] == "95.5 (1 thr.), 98.2 (1 thr.), 62.0 (2 thr.)"
    assert study.table({"evaluation": [{"seed": "-"}]})[2].split(" | ")[-2] == "(evaluation only)"


def test_training_minutes_name_the_cpu_and_precision_and_older_records_resolve_auto():
    """An fp32 run on an AVX2 CPU and a bf16 run on a CPU with native bf16 are listed apart; a record from
    before the precision was recorded gets it from its recipe's ``auto`` and its CPU, as training resolved it."""
    study = _load_study()
    avx2 = {"seed": 0, "train_seconds": 4296.0, "epochs": 25, "threads": 2,
            "cpu": {"capability": "AVX2", "native_bf16": False}, "recipe": {"precision": "auto"}}
    avx512 = {"seed": 0, "train_seconds": 2250.0, "epochs": 25, "threads": 2, "precision": "bf16",
              "cpu": {"capability": "AVX512", "native_bf16": True}, "recipe": {"precision": "auto"}}
    assert study.training_precision(avx2) == "fp32" and study.training_precision(avx512) == "bf16"
    assert study.training_precision({**avx2, "cpu": {"capability": "AVX512", "native_bf16": True}}) == "bf16"
    assert study.training_precision({"recipe": {"precision": "fp32"}}) is None  # no CPU recorded: unknown
    row = study.table({"mixed": [avx2, avx512]})[2].split(" | ")
    assert row[-2] == "71.6 (2 thr., AVX2 fp32), 37.5 (2 thr., AVX512 bf16)"
    same = study.table({"same": [avx2, {**avx2, "seed": 1, "train_seconds": 4356.0}]})[2].split(" | ")
    assert same[-2] == "72.1 ± 0.7 (2 thr., AVX2 fp32)"
    # a run trained on a GPU names the GPU, not the host CPU's threads and kernel level
    gpu = {**avx512, "gpu": "NVIDIA H200", "threads": 16}
    assert study.run_conditions(gpu) == "NVIDIA H200 bf16"


def test_recipe_refuses_unknown_tracking_and_names_the_machine_it_trains_on(tmp_path):
    module = _script_module("train_recommended")
    with pytest.raises(ValueError, match="unknown tracking 'wandb'"):
        module.train_recommended(str(BUSI), str(tmp_path / "run"), tracking="wandb")
    assert not (tmp_path / "run").exists()  # refused before any work
    machine = module.training_machine("auto")
    assert machine["precision"] == module.resolve_precision("auto", "cuda" if torch.cuda.is_available() else "cpu")
    assert ("gpu" in machine) == torch.cuda.is_available() and set(machine) >= {"cpu", "precision", "threads"}


def test_inference_choice_measures_the_presence_decision_it_would_serve():
    """The presence figures a test-time setting is chosen by: AUC of lesion against normal validation images,
    and the Youden threshold's recall, specificity and lesion Dice once the gated lesion images score 0."""
    from research.inference_choice import presence_figures
    lesion_probs = [0.9] * 19 + [0.05]  # one lesion image the presence head misses: 95 % recall allows gating it
    normal_probs = [0.1, 0.4, 0.2]
    figures = presence_figures(lesion_probs, normal_probs, [0.8] * 20, [True, True, False])
    assert figures["presence_auc"] == pytest.approx(57 / 60)
    assert 0.4 < figures["presence_threshold"] < 0.9  # above every normal image, so the missed lesion is gated
    assert figures["lesion_recall"] == pytest.approx(0.95) and figures["normal_specificity"] == 1.0
    assert figures["gated_dice"] == pytest.approx(0.8 * 19 / 20) and figures["gated_normal_fpr"] == 0.0
    assert presence_figures([0.9], [], [0.8], []) == {}  # no normal images: nothing to separate
