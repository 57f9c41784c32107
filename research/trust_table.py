"""docs/results.md's trust tables from research.trust_report's JSON files, one per trained seed.

    python -m research.trust_table --reports docs/results/trust_seed0.json,docs/results/trust_seed0_fp32.json \
        --labels "0,0 (fp32)"

Prints three markdown tables: the three-way finding and calibration per seed (with each ECE's
floor: what calibrated probabilities would show on as many test images), the review flag at the
budget ``munet train`` uses, and the risk-coverage table over review budgets (reports made before
the budgets were added show only the first two). A research.cross_validation report counts as one
row per fold and adds a fourth table: its held-out images judged by values fitted on the other folds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence

import fire

from munet.engines.calibration import apply_temperature, ece_if_calibrated, expected_calibration_error


def _pct(share: float) -> str:
    return f"{100 * share:.1f} %"


def _ci(value: float) -> str:
    """A percentage of an interval bound, with a second decimal below 0.1 %."""
    return f"{100 * value:.1f}" if 100 * value >= 0.1 or value == 0 else f"{100 * value:.2f}"


def malignancy_floor(report: Dict) -> Dict:
    """The calibrated malignancy ECE's floor: from the report, or computed from its test probabilities."""
    stored = report["ece_test"].get("floor", {}).get("malignancy_after")
    if stored:
        return stored["if_calibrated"]
    t = report["values"]["class_temperature"]
    rows = report["probabilities"]["test"]
    probs = apply_temperature([r["prob_malignant"] for r in rows], t)
    return ece_if_calibrated(probs, observed=expected_calibration_error(probs, [r["class"] for r in rows]))


def seed_rows(reports: Sequence[Dict], labels: Sequence[str]) -> List[str]:
    lines = ["| seed | lesion images called \"no lesion\" (95 % CI) | \"uncertain\" lesion images | served Dice | Dice without the gate "
             "| FPR on normals | ECE malignancy before / after (floor, p) | ECE presence before / after |",
             "|---|---|---|---|---|---|---|---|"]
    for label, r in zip(labels, reports):
        three, ece, v = r["test"]["three_way"], r["ece_test"], r["values"]
        low, high = three["called_no_lesion_ci95"]
        floor = malignancy_floor(r)
        t_class = "temperature not applied" if v["class_temperature"] == 1.0 else f"T = {v['class_temperature']:.2f}"
        t_presence = "not applied" if v["presence_temperature"] == 1.0 else f"T = {v['presence_temperature']:.2f}"
        normals = round(three["normal_fpr"] * three["normal_images"])
        lines.append(f"| {label} | {three['called_no_lesion']} / {three['lesion_images']} = {_pct(three['called_no_lesion_share'])} "
                     f"({_ci(low)}-{_ci(high)} %) | {three['uncertain_lesion_images']} | {three['served_dice']:.3f} "
                     f"| {three['dice_without_gate']:.3f} | {three['normal_fpr']:.3f} ({normals} / {three['normal_images']}) "
                     f"| {ece['malignancy_before']:.3f} / {ece['malignancy_after']:.3f} ({t_class}; floor {floor['mean']:.3f}, "
                     f"p = {floor['p_value']:.2f}) | {ece['presence_before']:.3f} / {ece['presence_after']:.3f} ({t_presence}) |")
    return lines


def _flag_cells(review: Dict) -> str:
    auc = "n/a" if review["auc_unflagged"] is None else f"{review['auc_unflagged']:.3f}"
    return (f"{review['dice_unflagged']:.3f} / {review['dice_all']:.3f} | {auc} / {review['auc_all']:.3f} "
            f"| {review['normal_fpr_unflagged']:.3f} / {review['normal_fpr_all']:.3f} "
            f"| {review['misclassified_malignant_caught']} of {review['misclassified_malignant']}")


def flag_rows(reports: Sequence[Dict], labels: Sequence[str]) -> List[str]:
    lines = ["| seed | flagged | Dice unflagged / all | AUC unflagged / all | FPR on normals unflagged / all | malignant called benign: flagged |",
             "|---|---|---|---|---|---|"]
    for label, r in zip(labels, reports):
        review = r["test"]["review"]
        lines.append(f"| {label} | {_pct(review['flagged_share'])} ({review['flagged_lesion_images']} lesion + "
                     f"{review['flagged_normals']} normal images) | {_flag_cells(review)} |")
    return lines


def budget_rows(reports: Sequence[Dict], labels: Sequence[str]) -> List[str]:
    lines = ["| seed | review budget (validation) | flagged on test | rule | Dice unflagged / all | AUC unflagged / all "
             "| FPR on normals unflagged / all | malignant called benign: flagged |",
             "|---|---|---|---|---|---|---|---|"]
    for label, r in zip(labels, reports):
        for row in r["test"].get("review_by_budget", []):
            rule = row["review_rule"]
            parts = [f"uncertain {r['values']['presence_threshold']:.2f}-{row['presence_uncertain_below']:.2f}"]
            if rule.get("min_view_agreement") is not None:
                parts.append(f"views agree < {rule['min_view_agreement']:.2f}")
            if rule.get("class_margin") is not None:
                parts.append(f"class within {rule['class_margin']:.2f} of 0.5")
            lines.append(f"| {label} | {_pct(row['budget'])} | {_pct(row['flagged_share'])} | {'; '.join(parts)} | {_flag_cells(row)} |")
    return lines


def expand(reports: Sequence[Dict], labels: Sequence[str]) -> tuple:
    """Reports and labels with each cross-validation report (research.cross_validation's: per-fold
    reports under ``folds``, models of the whole split under ``whole_split``) replaced by those,
    labelled "<label>, <name>"."""
    out_reports: List[Dict] = []
    out_labels: List[str] = []
    for label, report in zip(labels, reports):
        if "folds" in report and "test" not in report:
            parts = report["folds"] + report.get("whole_split", [])
            out_reports += parts
            out_labels += [f"{label}, {part['name']}" for part in parts]
        else:
            out_reports.append(report)
            out_labels.append(label)
    return out_reports, out_labels


def cross_fitted_rows(reports: Sequence[Dict], labels: Sequence[str]) -> List[str]:
    """Per cross-validation report: its held-out images judged by values fitted on the other folds."""
    lines = ["| cross-validation | lesion images called \"no lesion\" (95 % CI) | FPR on normals | ECE malignancy before / after (floor, p) "
             "| ECE malignancy with a logit shift (not served) |",
             "|---|---|---|---|---|"]
    for label, r in zip(labels, reports):
        c = r.get("cross_fitted")
        if not c:
            continue
        low, high = c["called_no_lesion_ci95"]
        after = c["ece_malignancy_after"]
        lines.append(f"| {label} | {c['called_no_lesion']} / {c['lesion_images']} = {_pct(c['called_no_lesion_share'])} "
                     f"({_ci(low)}-{_ci(high)} %) | {c['normal_fpr']:.3f} ({c['normals_marked']} / {c['normal_images']}) "
                     f"| {c['ece_malignancy_before']['ece']:.3f} / {after['ece']:.3f} (floor {after['if_calibrated']['mean']:.3f}, "
                     f"p = {after['if_calibrated']['p_value']:.2f}) | {_shifted(c)} |")
    return lines if len(lines) > 2 else []


def _shifted(cross: Dict) -> str:
    shifted = cross.get("ece_malignancy_logit_shift")
    if not shifted:
        return "n/a"
    return f"{shifted['ece']:.3f} (floor {shifted['if_calibrated']['mean']:.3f}, p = {shifted['if_calibrated']['p_value']:.2f})"


def render(reports: Sequence[str], labels: Sequence[str]) -> str:
    """The tables, separated by blank lines (a cross-validation report adds its cross-fitted table)."""
    if len(reports) != len(labels):
        raise ValueError(f"{len(reports)} reports but {len(labels)} labels")
    loaded = [json.loads(Path(p).read_text()) for p in reports]
    labels = [str(x) for x in labels]
    cross = cross_fitted_rows(loaded, labels)
    loaded, labels = expand(loaded, labels)
    tables = [seed_rows(loaded, labels), flag_rows(loaded, labels)]
    budgets = budget_rows(loaded, labels)
    if len(budgets) > 2:
        tables.append(budgets)
    if cross:
        tables.append(cross)
    return "\n\n".join("\n".join(t) for t in tables)


def _items(value) -> List[str]:
    """A comma-separated string (or what fire made of it) as a list of strings."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",")]
    return [str(v) for v in value]


def cli(reports, labels) -> None:
    """``reports``, ``labels``: comma-separated, one label per report."""
    print(render(_items(reports), _items(labels)))


if __name__ == "__main__":
    fire.Fire(cli)
