"""Calibration, presence thresholds and the review flag of a trained BUSI run: fitted on validation, measured on test.

    python -m research.trust_report --bundle runs/recommended/seed0 --data runs/recommended/data \
        --output docs/results/trust_seed0.json [--write_values True]

1. Fits on the validation split (lesion and normal images) what ``munet train`` fits
   (:func:`munet.cli.validation_fit.fit_on_validation`): the class and presence temperatures, the
   three-way presence thresholds and the review rule.
2. Predicts the test split and the test normals with the bundle's served inference and no
   presence gate (the evaluation workflow's ``per_case.csv``).
3. Reports on the test split: ECE before and after (MONAI's CalibrationErrorMetric), lesion images
   called "no lesion" with a 95 % Clopper-Pearson interval, false positives on normals counting
   "uncertain" as a mark, served Dice against Dice without the gate, and the review flag's
   risk-coverage table (the rule chosen on validation under each budget of ``BUDGETS``);
   reliability diagrams as PNG next to ``--output``. Each ECE comes with the ECE a calibrated model
   with the same probabilities would show on as many images (its floor, and a p-value).
``--write_values True`` writes the fitted values into the bundle's configs/train.json, as
``munet train`` does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import fire
import numpy as np

from munet.cli.train import write_train_values
from munet.cli.validation_fit import calibrated, evaluate_split, fit_on_validation
from munet.engines.calibration import apply_logit_shift, apply_temperature, ece_if_calibrated, expected_calibration_error
from munet.engines.review import case_findings, choose_review_settings, risk_coverage
from research.study_common import git_commit

#: the aims of issue #31 the report checks
MAX_HIDDEN, MAX_NORMAL_MARKED, MAX_FLAGGED = 0.02, 0.15, 0.20
#: review budgets of the risk-coverage table: the rule is chosen on validation under each
BUDGETS = (0.05, 0.10, 0.15, 0.20)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> Tuple[float, float]:
    """Exact two-sided interval of a proportion k/n."""
    from scipy.stats import beta

    alpha = 1 - level
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def outcome(cases: List[Dict], normals: List[Dict], thresholds: Tuple[Optional[float], Optional[float]]) -> Dict:
    """What the thresholds do: lesion images called "no lesion" (with a 95 % interval), lesion images
    "uncertain", normals marked ("lesion" or "uncertain"), served Dice against Dice without the gate."""
    findings, normal_findings = case_findings(cases, thresholds), case_findings(normals, thresholds)
    hidden = sum(f == "no lesion" for f in findings)
    served = [0.0 if f == "no lesion" else c["dice"] for f, c in zip(findings, cases)]
    low_ci, high_ci = clopper_pearson(hidden, len(cases))
    return {"lesion_images": len(cases), "called_no_lesion": hidden, "called_no_lesion_share": hidden / len(cases),
            "called_no_lesion_ci95": [round(low_ci, 4), round(high_ci, 4)],
            "uncertain_lesion_images": sum(f == "uncertain" for f in findings),
            "normal_images": len(normals), "normal_fpr": float(np.mean([f != "no lesion" for f in normal_findings])) if normals else None,
            "served_dice": float(np.mean(served)), "dice_without_gate": float(np.mean([c["dice"] for c in cases]))}


def best_on_test(cases: List[Dict], normals: List[Dict], max_hidden: float = MAX_HIDDEN) -> Dict:
    """The most any single "no lesion" threshold could do, chosen on these (test) rows themselves: the
    highest one that calls at most ``max_hidden`` of the lesion images "no lesion", and the FPR on
    normals it leaves. Not a rule (it looks at the test answers): it says whether both aims can be
    met by this model at all, whatever the fit."""
    allowed = int(np.floor(max_hidden * len(cases)))
    probs = sorted(c["lesion_prob"] for c in cases)
    threshold = probs[allowed] if allowed < len(probs) else 1.0  # below it: the ``allowed`` lowest lesion images
    result = outcome(cases, normals, (threshold, threshold))
    return {"threshold": threshold, "called_no_lesion": result["called_no_lesion"], "normal_fpr": result["normal_fpr"]}


def ece_with_floor(probs: Sequence[float], labels: Sequence[int]) -> Dict:
    """MONAI's ECE and what a calibrated model with the same probabilities would show on as many images."""
    ece = expected_calibration_error(probs, labels)
    return {"ece": ece, "if_calibrated": ece_if_calibrated(probs, observed=ece)}


def review_by_budget(val_lesions: List[Dict], val_normals: List[Dict], test: List[Dict], test_normals: List[Dict],
                     no_lesion_below: float) -> List[Dict]:
    """The risk-coverage table: per review budget, the upper presence threshold and review rule
    chosen on the (calibrated) validation rows under it, measured on the (calibrated) test rows."""
    rows = []
    for budget in BUDGETS:
        upper, rule = choose_review_settings(val_lesions, val_normals, no_lesion_below, max_flagged=budget)
        rows.append({"budget": budget, "presence_uncertain_below": upper, "review_rule": rule,
                     **risk_coverage(test, test_normals, (no_lesion_below, upper), rule)})
    return rows


def reliability_png(curves: Dict[str, Tuple[Sequence[float], Sequence[int]]], path: Path, title: str) -> None:
    """Reliability diagram: observed frequency against mean predicted probability in 10 bins."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.figure(figsize=(4.2, 4.2))
    plt.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    edges = np.linspace(0, 1, 11)
    for name, (probs, labels) in curves.items():
        p, y = np.asarray(probs, float), np.asarray(labels, float)
        idx = np.clip(np.digitize(p, edges) - 1, 0, 9)
        xs = [p[idx == b].mean() for b in range(10) if (idx == b).any()]
        ys = [y[idx == b].mean() for b in range(10) if (idx == b).any()]
        plt.plot(xs, ys, "o-", label=name, markersize=3)
    plt.xlabel("predicted probability")
    plt.ylabel("observed frequency")
    plt.title(title, fontsize=9)
    plt.legend(fontsize=7)
    plt.tight_layout()
    plt.savefig(path, dpi=110)
    plt.close()


def _curves(test: List[Dict], test_normals: List[Dict]) -> Tuple[Tuple[List[float], List[int]], Tuple[List[float], List[int]]]:
    """(probabilities, labels) of malignancy on the lesion images and of presence on all images."""
    malignancy = ([c["prob_malignant"] for c in test], [c["class"] for c in test])
    presence = ([c["lesion_prob"] for c in test + test_normals], [1] * len(test) + [0] * len(test_normals))
    return malignancy, presence


def class_map(probs: Sequence[float], values: Dict, shift: float = 0.0) -> List[float]:
    """Malignancy probabilities under the fitted class temperature, as served (and a log-odds
    ``shift`` after it, which is measured but not served)."""
    return [float(p) for p in apply_logit_shift(apply_temperature(probs, values.get("class_temperature", 1.0)), shift)]


def measure_on_test(values: Dict, validation: List[Dict], test: List[Dict], test_normals: List[Dict]) -> Dict:
    """What fitted ``values`` do on the test rows (ungated, uncalibrated predictions): ECE before and
    after with floors, the three-way outcome against no gate, the review flag and the risk-coverage
    table (its rule chosen under each budget on the ``validation`` rows the values were fitted on)."""
    t_class, t_presence = values.get("class_temperature", 1.0), values.get("presence_temperature", 1.0)
    thresholds = (values["presence_threshold"], values["presence_uncertain_below"])
    cal_test, cal_normals = calibrated(test, t_class, t_presence), calibrated(test_normals, t_class, t_presence)
    malignancy, presence = _curves(test, test_normals)
    malignancy_after = class_map(malignancy[0], values)
    val_lesions = calibrated([r for r in validation if r["lesion"]], t_class, t_presence)
    val_normals = calibrated([r for r in validation if not r["lesion"]], t_class, t_presence)
    return {
        "values": values,
        "ece_test": {
            "malignancy_before": expected_calibration_error(*malignancy),
            "malignancy_after": expected_calibration_error(malignancy_after, malignancy[1]),
            "presence_before": expected_calibration_error(*presence),
            "presence_after": expected_calibration_error(apply_temperature(presence[0], t_presence), presence[1]),
            "floor": {"malignancy_after": ece_with_floor(malignancy_after, malignancy[1]),
                      "presence_after": ece_with_floor(apply_temperature(presence[0], t_presence), presence[1])}},
        "test": {"three_way": outcome(cal_test, cal_normals, thresholds), "no_gate": outcome(test, test_normals, (None, None)),
                 "best_threshold_on_test": best_on_test(cal_test, cal_normals),
                 "review": risk_coverage(cal_test, cal_normals, thresholds, values["review_rule"]),
                 "review_if_no_rule": risk_coverage(cal_test, cal_normals, thresholds, None),
                 "review_by_budget": review_by_budget(val_lesions, val_normals, cal_test, cal_normals, thresholds[0])},
        "probabilities": {"test": test, "normal_test": test_normals, "validation": validation},
    }


def main(bundle: str, data: str, output: str, write_values: bool = False, trained_at: str = "") -> Dict:
    """Fit on validation, report on test (see the module doc); writes ``output`` (JSON) and two PNGs beside it."""
    root, data_dir, out = Path(bundle).resolve(), Path(data).resolve(), Path(output).resolve()
    fit = fit_on_validation(root, data_dir, data_dir / "datalist_with_normals.json", root / "eval" / "trust_validation")
    validation = evaluate_split(root, data_dir, data_dir / "datalist_with_normals.json", "validation", root / "eval" / "trust_validation")
    values = fit["values"]
    test = evaluate_split(root, data_dir, data_dir / "datalist.json", "test", root / "eval" / "trust_test")
    test_normals = evaluate_split(root, data_dir, data_dir / "datalist.json", "normal_test", root / "eval" / "trust_normal_test")
    report = {"bundle": str(root), "trained_by": trained_at or _trained_by(root), "evaluated_by": git_commit(),
              **measure_on_test(values, validation, test, test_normals), "validation": fit["summary"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(finite_json(report), indent=1))
    stem = out.with_suffix("")
    malignancy, presence = _curves(test, test_normals)
    t_presence = values["presence_temperature"]
    reliability_png({"before": malignancy, "after": (class_map(malignancy[0], values), malignancy[1])},
                    Path(f"{stem}_malignancy.png"), "malignancy, test split")
    reliability_png({"before": presence, "after": (apply_temperature(presence[0], t_presence), presence[1])},
                    Path(f"{stem}_presence.png"), "lesion presence, test split")
    if write_values:
        write_train_values(root, values)
    print(json.dumps(finite_json({k: v for k, v in report.items() if k != "probabilities"}), indent=1))
    return report


def _trained_by(root: Path) -> str:
    """The commit of the training, as research.train_recommended or munet train recorded it (or unknown)."""
    for name in ("result.json", "train_record.json"):
        path = root / name
        if path.is_file():
            commit = json.loads(path.read_text()).get("commit")
            if commit:
                return str(commit)
    return "unknown"


def finite_json(value: Any) -> Any:
    """``value`` with NaN replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_json(v) for v in value]
    return value


def cli(bundle: str, data: str, output: str, write_values: bool = False, trained_at: str = "") -> None:
    """See the module doc; ``--trained_at`` names the training's commit when the run folder has no record of it."""
    main(bundle, data, output, write_values, trained_at)


if __name__ == "__main__":
    fire.Fire(cli)
