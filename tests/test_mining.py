"""Mined neighbours (SPPS): the neighbour table against a numpy search, and neighbour views of real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hf_contrastive import data as data_lib
from hf_contrastive import mining

SAMPLE = Path(__file__).resolve().parents[1] / "hf_contrastive" / "sample_data" / "cifar10_sample"


def test_neighbour_table_matches_a_numpy_search():
    generator = torch.Generator().manual_seed(0)
    features = torch.nn.functional.normalize(torch.randn(50, 8, generator=generator), dim=1)
    table = mining.nearest_neighbour_table(features, k=3, chunk_size=7)  # chunks that do not divide N
    array = features.numpy().astype(np.float64)
    for i in range(50):
        similarity = array @ array[i]
        similarity[i] = -np.inf
        assert table[i].tolist() == list(np.argsort(-similarity, kind="stable")[:3])


def test_neighbour_table_rejects_k_out_of_range():
    with pytest.raises(ValueError, match="1 <= k < number of images"):
        mining.nearest_neighbour_table(torch.eye(4), k=4)


def test_cached_table_round_trips_and_must_fit(tmp_path):
    table = torch.tensor([[1, 2], [0, 2], [0, 1]])
    path = mining.cache_path(tmp_path, "initial")
    mining.save_neighbour_table(path, table, "some/encoder")
    assert torch.equal(mining.load_neighbour_table(path, 3, 2), table)
    assert mining.load_neighbour_table(path, 4, 2) is None  # another dataset: mine again
    assert mining.load_neighbour_table(mining.cache_path(tmp_path, "epoch_5"), 3, 2) is None


def test_dataset_yields_views_of_a_mined_neighbour():
    splits = data_lib.load_image_dataset(str(SAMPLE), max_train_samples=16)
    mean, std = data_lib.DATASET_STATS["cifar10"]
    strong = data_lib.build_view_transform("strong", 32, mean, std)
    evaluate = data_lib.build_view_transform("eval", 32, mean, std)
    dataset = data_lib.MultiViewDataset(splits.train, splits.image_column, splits.label_column, [strong, strong],
                                        neighbour_transforms=[evaluate], num_neighbours=2)
    # Before any mining every image is its own neighbour.
    assert dataset[3]["neighbour_index"] == 3
    table = torch.stack([(torch.arange(16) + 1) % 16, (torch.arange(16) + 2) % 16], dim=1)
    dataset.set_neighbours(table)
    items = [dataset[i] for i in range(16)]
    for i, item in enumerate(items):
        assert item["neighbour_index"] in table[i].tolist()
        neighbour = data_lib.decode_image(splits.train[item["neighbour_index"]][splits.image_column])
        torch.testing.assert_close(item["neighbour_views"][0], evaluate(neighbour))  # eval view: deterministic
    assert dataset[5]["neighbour_index"] == items[5]["neighbour_index"]  # a pure function of (seed, epoch, index)
    batch = data_lib.collate_views(items[:4])
    assert batch["neighbour_views"][0].shape == (4, 3, 32, 32) and batch["neighbour_index"].shape == (4,)
    with pytest.raises(ValueError, match="expected"):
        dataset.set_neighbours(table[:, :1])
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        dataset.set_neighbours(table + 16)


def test_local_view_is_a_small_strongly_augmented_crop(sample_images):
    mean, std = data_lib.DATASET_STATS["cifar10"]
    image = sample_images(1)[0]
    local = data_lib.build_view_transform("local", 32, mean, std)
    assert local(image).shape == (3, 16, 16)
    assert data_lib.build_view_transform("local", 64, mean, std, size=24)(image).shape == (3, 24, 24)
    with pytest.raises(ValueError, match="valid ones"):
        data_lib.build_view_transform("local", 32, mean, std, blur=0.1)
