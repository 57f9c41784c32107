"""Click guidance for the interactive MUNet: rendering, geometry, simulation, training config."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from bundle_helpers import CONFIGS, INFERENCE, TRAIN, make_tiny_dataset, run_workflow
from monai.transforms import Compose
from PIL import Image

from munet.data.guidance import SimulateClicksd, parse_clicks, render_clicks
from munet.data.preprocessing import deterministic_transforms
from munet.engines.interaction import ClickInteraction, error_click
from munet.integrations.monailabel_app.classes import class_for, class_index, read_sidecar
from munet.integrations.monailabel_app.results import write_label


def test_clicks_are_x_y_and_must_lie_inside_the_image():
    assert parse_clicks([[30, 10], [5.4, 7.6, 0]], (20, 40)) == [(10, 30), (8, 5)]
    assert parse_clicks(None, (5, 5)) == [] and parse_clicks("[]", (5, 5)) == []
    with pytest.raises(ValueError, match="a.png: fg: click \\[40, 1\\] is outside the 40x20"):
        parse_clicks([[40, 1]], (20, 40), "a.png: fg")
    with pytest.raises(ValueError, match="must be \\[x, y\\]"):
        parse_clicks([5], (20, 40))


def test_rendered_blobs_peak_at_the_clicks_and_are_zero_without_clicks():
    maps = render_clicks((50, 80), [(10, 70)], [(40, 5), (45, 60)])
    assert maps.shape == (2, 50, 80)
    assert np.unravel_index(maps[0].argmax(), maps[0].shape) == (10, 70) and maps[0].max() == pytest.approx(1.0)
    assert maps[1][40, 5] == pytest.approx(1.0) and maps[1][45, 60] == pytest.approx(1.0)
    assert maps[0][40, 5] < 1e-3
    assert not render_clicks((50, 80), [], []).any()


def test_clicks_follow_the_image_through_resize_and_padding(tmp_path):
    # a wide image: resized by its longest side then padded to a multiple of 32 vertically
    Image.fromarray((np.random.RandomState(0).rand(120, 200) * 255).astype(np.uint8)).save(tmp_path / "wide.png")
    chain = Compose(deterministic_transforms(label_key=None, class_key=None, image_size=128, guidance=True))
    out = chain({"image": str(tmp_path / "wide.png"), "foreground": [[150, 45]], "background": [[10, 100, 0]]})
    image = out["image"]
    assert image.shape == (3, 96, 128) and "foreground" not in out
    scale, top = 128 / 200, (96 - round(120 * 128 / 200)) // 2
    for channel, (col, row) in ((1, (150, 45)), (2, (10, 100))):
        peak = np.unravel_index(int(image[channel].argmax()), image.shape[1:])
        assert abs(peak[0] - (row * scale + top)) <= 1.5 and abs(peak[1] - col * scale) <= 1.5
    # no clicks: two zero channels, the automatic input
    plain = chain({"image": str(tmp_path / "wide.png")})["image"]
    assert plain.shape == (3, 96, 128) and not plain[1:].any()
    assert torch.equal(plain[0], image[0])


def test_simulated_clicks_fall_inside_and_around_the_lesion():
    label = torch.zeros(1, 60, 60)
    label[0, 20:40, 25:45] = 1
    sim = SimulateClicksd(keys="label", prob=1.0, max_clicks=3)
    sim.set_random_state(0)
    seen_bg = 0
    for _ in range(20):
        out = sim({"label": label})
        assert 1 <= len(out["foreground"]) <= 3
        for x, y in out["foreground"]:
            assert label[0, y, x] == 1
        for x, y in out["background"]:
            assert label[0, y, x] == 0
        seen_bg += len(out["background"])
    assert seen_bg > 0
    none = SimulateClicksd(keys="label", prob=0.0)({"label": label})
    assert none["foreground"] == [] and none["background"] == []


def test_error_clicks_go_to_the_deepest_point_of_the_larger_error():
    truth = np.zeros((40, 40), bool)
    truth[5:25, 5:25] = True
    pred = np.zeros((40, 40), bool)
    pred[5:25, 5:10] = True  # most of the lesion missed
    kind, (row, col) = error_click(pred, truth)
    assert kind == "foreground" and 10 <= row <= 19 and 13 <= col <= 20
    pred = truth.copy()
    pred[30:40, 30:40] = True  # lesion found, plus a false one
    kind, point = error_click(pred, truth)
    assert kind == "background" and pred[point] and not truth[point]
    assert error_click(truth, truth) is None


class _EmptyMask(torch.nn.Module):
    def forward(self, x):
        return {"mask": torch.zeros(x.shape[0], 1, *x.shape[2:])}


def test_noc_clicks_the_largest_error_region_not_a_merged_one():
    """The NoC protocol's click: a missed strip and a false strip that touch where the edges cross
    are two regions; the larger one (the false strip here) gets the click, at its centre."""
    from research.interactive_noc import next_click

    truth = np.zeros((40, 40), dtype=bool)
    truth[10:30, 10:30] = True
    pred = truth.copy()
    pred[10:30, 10:14] = False  # missed: 4 x 20 = 80 pixels
    pred[14:30, 30:36] = True  # false: 6 x 16 = 96 pixels, apart
    pred[30:33, 10:30] = True  # false: 3 x 20 = 60 pixels, touching the missed strip (merged: 140)
    kind, (x, y) = next_click(pred, truth)
    assert kind == "background" and 30 <= x < 36 and 14 <= y < 30
    assert next_click(truth, truth) is None


def test_interaction_adds_a_foreground_click_where_the_model_misses():
    image = torch.zeros(2, 3, 32, 32)
    label = torch.zeros(2, 1, 32, 32)
    label[0, 0, 8:20, 8:20] = 1
    label[1, 0, 2:6, 20:30] = 1
    out = ClickInteraction(prob=1.0, max_clicks=1).add_clicks(_EmptyMask(), image, label, "cpu")
    assert not image.any(), "the input batch must not be modified in place"
    for b in range(2):
        peak = np.unravel_index(int(out[b, 1].argmax()), (32, 32))
        assert label[b, 0][peak] == 1 and out[b, 1].max() == pytest.approx(1.0)
        assert not out[b, 2].any() and not out[b, 0].any()


def test_class_for_reads_label_params_then_the_sidecar(tmp_path):
    names = ["benign", "malignant"]
    (tmp_path / "classes.csv").write_text("image,class\ncase_1.png,malignant\ncase_2,0\n")
    sidecar = read_sidecar(str(tmp_path))
    assert class_for("/s/case_1.png", None, sidecar, names) == 1
    assert class_for("/s/case_2.dcm", {}, sidecar, names) == 0
    assert class_for("/s/case_1.png", {"class": "benign"}, sidecar, names) == 0  # the label's own params win
    assert class_for("/s/case_3.png", None, sidecar, names) == -1
    (tmp_path / "classes.json").write_text(json.dumps({"case_3": "Malignant"}))
    assert class_for("/s/case_3.png", None, read_sidecar(str(tmp_path)), names) == 1
    with pytest.raises(ValueError, match="sidecar entry 'case_3': class 'cyst'"):
        class_index("cyst", names, "sidecar entry 'case_3'")
    (tmp_path / "classes.json").write_text("{oops")
    with pytest.raises(ValueError, match="classes.json: not valid JSON"):
        read_sidecar(str(tmp_path))


def test_label_png_keeps_rows_and_columns(tmp_path):
    prob = torch.zeros(1, 30, 50)
    prob[0, 3:6, 40:45] = 0.9
    path, pixels = write_label(prob, 0.5, 1)
    label = np.asarray(Image.open(path))
    assert label.shape == (30, 50) and label.dtype == np.uint8 and pixels == 15
    assert set(np.unique(label)) == {0, 1} and label[4, 42] == 1


@pytest.mark.timeout(600)
def test_interactive_configs_train_and_infer(tmp_path):
    data = make_tiny_dataset(tmp_path, n_train=4, n_val=2, n_test=2)
    root = tmp_path / "bundle"
    run_workflow("train", TRAIN + [str(CONFIGS / "train_interactive.json")], root, data, max_epochs=1)
    models = {p.name for p in (root / "models").iterdir()}
    assert {"model_interactive.pt", "checkpoint_interactive_last.pt"} <= models and "model.pt" not in models
    weights = torch.load(root / "models" / "model_interactive.pt", weights_only=True)
    first = next(v for v in weights.values() if v.ndim == 4)  # the first convolution (a plain state dict)
    assert first.shape[1] == 3, "the interactive network takes the image plus two click channels"
    run_workflow("infer", INFERENCE + [str(CONFIGS / "inference_interactive.json")], root, data)
    masks = sorted((root / "eval" / "inference_interactive").glob("*_mask.png"))
    assert len(masks) == 2
