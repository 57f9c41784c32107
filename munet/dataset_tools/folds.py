"""k-fold cross-validation splits of a datalist: training + validation pooled, the test split untouched.

Why: the values ``munet train`` fits after training (temperatures, presence thresholds, review
rule) rest on the validation split, which on BUSI holds 55 lesion and 13 normal images: too few
to place a threshold (one seed put it at 0.669, the next at 0.028). Trained on fold ``i``'s
complement, each of k models predicts its held-out fold, so together they predict every
training and validation image once, unseen ("out of fold"), and the fit can rest on all of them.

Assignment is deterministic and keeps groups together (BUSI's near-duplicate groups: a duplicate
in training and its twin held out would make the held-out prediction a seen one). Groups are
dealt to folds per stratum (benign, malignant, normal), largest first, each to the fold that has
the fewest cases of that stratum, so every fold has about the same share of each.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any, Callable, Dict, List, Mapping, Optional

__all__ = ["fold_datalist", "case_group", "POOLED_SPLITS"]

#: the lists pooled and re-split; every other key (test, normal_test, metadata) is kept as it is
POOLED_SPLITS = ("training", "validation")


def case_group(case: Mapping[str, Any]) -> str:
    """A case's group: its ``group`` key, else its ``id``, else its image path."""
    return str(case.get("group") or case.get("id") or case["image"])


def _stratum(case: Mapping[str, Any]) -> str:
    return "normal" if "class" not in case else f"class {case['class']}"


def _stable(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fold_datalist(datalist: Mapping[str, Any], folds: int, fold: int,
                  group_of: Optional[Callable[[Mapping[str, Any]], str]] = None) -> Dict[str, Any]:
    """``datalist`` with ``training`` = the pooled training + validation cases outside fold
    ``fold`` of ``folds`` and ``validation`` = that fold; ``folds_of`` records the split.

    Raises ValueError for a bad ``folds``/``fold`` or when a fold would have no case.
    """
    if int(folds) != folds or folds < 2:
        raise ValueError(f"folds must be a whole number >= 2, got {folds!r}")
    if int(fold) != fold or not 0 <= fold < folds:
        raise ValueError(f"fold must be one of 0..{folds - 1}, got {fold!r}")
    group_of = group_of or case_group
    pooled: List[Mapping[str, Any]] = [c for key in POOLED_SPLITS for c in datalist.get(key, [])]
    groups: Dict[str, List[Mapping[str, Any]]] = defaultdict(list)
    for case in pooled:
        groups[group_of(case)].append(case)
    if len(groups) < folds:
        raise ValueError(f"{len(groups)} groups of cases in {' + '.join(POOLED_SPLITS)} cannot fill {folds} folds")
    # a group goes with the stratum of its first case; deal largest groups first, ties in a stable order
    by_stratum: Dict[str, List[str]] = defaultdict(list)
    for name, members in groups.items():
        by_stratum[_stratum(members[0])].append(name)
    assigned: Dict[str, int] = {}
    for stratum in sorted(by_stratum):
        counts = [0] * folds
        for name in sorted(by_stratum[stratum], key=lambda g: (-len(groups[g]), _stable(g))):
            target = min(range(folds), key=lambda f: (counts[f], f))
            assigned[name] = target
            counts[target] += len(groups[name])
    out = dict(datalist)
    out["training"] = [c for c in pooled if assigned[group_of(c)] != fold]
    out["validation"] = [c for c in pooled if assigned[group_of(c)] == fold]
    if not out["validation"] or not out["training"]:
        raise ValueError(f"fold {fold} of {folds} leaves an empty training or validation list")
    out["folds_of"] = {"folds": int(folds), "fold": int(fold), "pooled": list(POOLED_SPLITS), "groups": len(groups)}
    return out
