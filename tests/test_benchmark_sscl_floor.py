"""benchmarks/sscl_floor.py on real sample images: it reads SSCL folders and trainer checkpoints, and its floor share
is what `sscl_floor_mask` gives on the same features (tau_plus = 0 has no floor)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from safetensors.torch import save_file

from hf_contrastive.models.configuration_sscl import SSCLConfig
from hf_contrastive.models.modeling_sscl import SSCLForPreTraining

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import sscl_floor

SMALL = {"projection_hidden_size": 64, "projection_dim": 32, "queue_size": 64, "num_hard_negatives": 16,
         "num_synthetic_negatives": 8, "small_image_stem": False}


def test_floor_share_of_a_folder_and_of_a_checkpoint_with_another_config(tmp_path):
    model = SSCLForPreTraining(SSCLConfig(**SMALL))
    model.save_pretrained(tmp_path / "model")
    SSCLConfig(**SMALL, tau_plus=0.0).save_pretrained(tmp_path / "no_debiasing")
    (tmp_path / "step_4").mkdir()
    save_file(model.state_dict(), tmp_path / "step_4" / "model.safetensors")
    output = tmp_path / "floor.json"
    sscl_floor.main(["--model", str(tmp_path / "model"), str(tmp_path / "step_4"), "--label", "folder", "checkpoint",
                     "--config_from", str(tmp_path / "no_debiasing"),
                     "--dataset_name", "hf_contrastive/sample_data/cifar10_sample",
                     "--images", "48", "--also_tau", "0.5", "1.0", "--output", str(output)])
    report = json.loads(output.read_text())
    assert report["benchmark"] == "sscl_floor" and report["protocol"]["images"] == 48
    assert [row["label"] for row in report["rows"]] == ["folder", "checkpoint", "random init"]
    folder, checkpoint, _ = report["rows"]
    for row in report["rows"]:
        assert row["queries"] == 48
        assert set(row["share_at_floor_by_tau"]) == {"0.2", "0.5", "1"}
        assert all(0.0 <= share <= 1.0 for share in row["share_at_floor_by_tau"].values())
        assert -1.0 <= row["mean_positive_cos"] <= 1.0 and 0.0 < row["mean_moco_positive_probability"] < 1.0
    # Same weights and features; the checkpoint takes --config_from's tau_plus = 0, where no row can be at the floor.
    assert folder["tau_plus"] == 0.1 and checkpoint["tau_plus"] == 0.0
    assert set(checkpoint["share_at_floor_by_tau"].values()) == {0.0}
    assert checkpoint["mean_positive_cos"] == folder["mean_positive_cos"]


def test_refuses_other_methods_and_bare_checkpoints(tmp_path):
    from hf_contrastive.models.configuration_mocov2 import MoCoV2Config
    from hf_contrastive.models.modeling_mocov2 import MoCoV2ForPreTraining

    MoCoV2ForPreTraining(MoCoV2Config(small_image_stem=False, queue_size=64)).save_pretrained(tmp_path / "moco")
    with pytest.raises(SystemExit, match="measures SSCL's loss only"):
        sscl_floor.main(["--model", str(tmp_path / "moco"), "--dataset_name", "hf_contrastive/sample_data/cifar10_sample",
                         "--images", "8", "--output", str(tmp_path / "x.json")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="--config_from"):
        sscl_floor.main(["--model", str(tmp_path / "empty"), "--dataset_name", "hf_contrastive/sample_data/cifar10_sample",
                         "--output", str(tmp_path / "x.json")])
