"""The Cityscapes label table and the id / train-id / colour conversions."""

import json

import numpy as np
import pytest

from spic_diffusers.data import cityscapes as cs


def test_label_table_matches_official_shape():
    labels = cs.CITYSCAPES_LABELS
    assert len(labels) == 35
    assert [label.id for label in labels[:34]] == list(range(34))
    assert labels[-1].name == "license plate" and labels[-1].id == -1
    train = [label for label in labels if 0 <= label.train_id < 19]
    assert sorted(label.train_id for label in train) == list(range(19))
    assert all(label.train_id == 255 for label in labels if label.ignore_in_eval and label.id >= 0)
    assert cs.ID2LABEL[0] == "road" and cs.ID2LABEL[10] == "sky" and cs.ID2LABEL[18] == "bicycle"
    assert cs.LABELS_BY_NAME["car"].color == (0, 0, 142) and cs.LABELS_BY_NAME["car"].id == 26
    assert len({tuple(c) for c in cs.TRAIN_ID_COLORS.tolist()}) == 19


def test_label_ids_to_train_ids_lookup():
    label_ids = np.array([[0, 7, 8, 11], [23, 24, 26, 33], [9, 14, 29, 255]], dtype=np.uint8)
    expected = np.array([[255, 0, 1, 2], [10, 11, 13, 18], [255, 255, 255, 255]], dtype=np.uint8)
    assert np.array_equal(cs.label_ids_to_train_ids(label_ids), expected)
    all_ids = np.arange(34, dtype=np.uint8)
    train = cs.label_ids_to_train_ids(all_ids)
    for label in cs.CITYSCAPES_LABELS[:34]:
        assert train[label.id] == (label.train_id if label.train_id < 19 else 255)


def test_unknown_label_ids_raise_with_values():
    with pytest.raises(ValueError, match=r"\[34, 200\]"):
        cs.label_ids_to_train_ids(np.array([[7, 34], [200, 8]], dtype=np.uint8))


def test_train_ids_label_ids_round_trip():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 19, size=(16, 32)).astype(np.uint8)
    train[0, :5] = 255
    label_ids = cs.train_ids_to_label_ids(train)
    assert np.array_equal(cs.label_ids_to_train_ids(label_ids), train)


def test_color_round_trip_and_void_colours():
    rng = np.random.default_rng(1)
    train = rng.integers(0, 19, size=(8, 12)).astype(np.uint8)
    train[3, 3] = 255
    color = cs.train_ids_to_color(train)
    assert color.shape == (8, 12, 3) and color.dtype == np.uint8
    assert tuple(color[3, 3]) == (0, 0, 0)
    assert np.array_equal(cs.color_to_train_ids(color), train)
    # RGBA input and void colours (ground, dynamic) -> ignore; polegroup colour -> pole.
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, 0, :3] = (81, 0, 81)
    rgba[0, 1, :3] = (111, 74, 0)
    rgba[0, 2, :3] = (153, 153, 153)
    assert cs.color_to_train_ids(rgba).tolist() == [[255, 255, 5]]


def test_unknown_colour_raises():
    color = np.zeros((2, 2, 3), dtype=np.uint8)
    color[1, 1] = (1, 2, 3)
    with pytest.raises(ValueError, match=r"\(1, 2, 3\)"):
        cs.color_to_train_ids(color)


def test_validate_train_ids_names_bad_values():
    with pytest.raises(ValueError, match=r"\[19, 100\]"):
        cs.validate_train_ids(np.array([0, 18, 19, 100, 255]))
    assert cs.validate_train_ids(np.array([0, 18, 255])).dtype == np.uint8


def test_id2label_json():
    data = json.loads(cs.id2label_json())
    assert len(data) == 19 and data["13"] == "car"
