"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest
import yaml
from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, RepoUrl

import hf_contrastive.hub


def _offline_api(remote_root: Path):
    """An HfApi whose network methods write to ``remote_root`` instead; upload_folder stays the library's own."""

    class OfflineHfApi(HfApi):
        calls: list[str] = []

        def create_repo(self, repo_id, *, repo_type=None, exist_ok=False, **kwargs):
            self.calls.append("create_repo")
            (remote_root / repo_id).mkdir(parents=True, exist_ok=exist_ok)
            return RepoUrl(f"{self.endpoint}/{repo_id}", endpoint=self.endpoint)

        def _validate_yaml(self, content, *, repo_type=None, token=None):
            # Server-side check (POST /api/validate-yaml) replaced by a local parse of the front matter.
            self.calls.append("_validate_yaml")
            assert content.startswith("---\n")
            metadata = yaml.safe_load(content.split("---\n")[1])
            assert isinstance(metadata, dict) and "model-index" in metadata

        def create_commit(self, repo_id, operations, *, commit_message, **kwargs):
            self.calls.append("create_commit")
            remote = remote_root / repo_id
            for operation in operations:
                assert isinstance(operation, CommitOperationAdd), operation
                target = remote / operation.path_in_repo
                target.parent.mkdir(parents=True, exist_ok=True)
                with operation.as_file() as source:
                    target.write_bytes(source.read())
            return CommitInfo(commit_url=f"{self.endpoint}/{repo_id}/commit/{'0' * 40}",
                              commit_message=commit_message, commit_description="", oid="0" * 40,
                              _endpoint=self.endpoint)

    return OfflineHfApi


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """Replace only the HTTP layer of hf_contrastive.hub's HfApi: pushes land in ``tmp_path / "remote" / repo_id``.

    Any other HTTP request huggingface_hub would make raises OfflineModeIsEnabled instead of hanging. With hf_xet
    installed, upload_folder streams through xet and module-level HTTP helpers; the single-commit path it takes
    without xet goes through ``self.create_commit``, which the fake replaces.
    """
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.hf_api, "is_xet_available", lambda: False)
    fake = _offline_api(tmp_path / "remote")
    monkeypatch.setattr(hf_contrastive.hub, "HfApi", fake)
    return fake


# ---------------------------------------------------------------------------- real CIFAR-10 images and their views

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "hf_contrastive" / "sample_data" / "cifar10_sample"


@pytest.fixture(scope="session")
def sample_images():
    """``sample_images(count)`` -> the first ``count`` decoded training images of the shipped CIFAR-10 sample."""
    from hf_contrastive.data import decode_image, load_image_dataset

    if not SAMPLE_DIR.is_dir():
        pytest.skip(f"{SAMPLE_DIR} missing; regenerate it with data/make_cifar10_sample.py")
    splits = load_image_dataset(str(SAMPLE_DIR))
    train, column = splits.train, splits.image_column

    def load(count: int) -> list:
        return [decode_image(train[i][column], index=i, column=column) for i in range(count)]

    return load


@pytest.fixture(scope="session")
def sample_views(sample_images):
    """``sample_views(kinds, count=16, seed=0, image_size=32)`` -> one ``[count, 3, H, W]`` tensor per view kind
    (``hf_contrastive.data`` presets, CIFAR-10 normalisation) of the first ``count`` sample images."""
    import torch

    from hf_contrastive.data import DATASET_STATS, build_view_transform

    mean, std = DATASET_STATS["cifar10"]

    def make(kinds, count: int = 16, seed: int = 0, image_size: int = 32) -> list:
        images = sample_images(count)
        torch.manual_seed(seed)
        transforms = [build_view_transform(kind, image_size, mean, std) for kind in kinds]
        return [torch.stack([transform(image) for image in images]) for transform in transforms]

    return make
