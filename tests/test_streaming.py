"""--streaming: the train split read as a stream, each process reading its own rows, with exact resume."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from datasets.distributed import split_dataset_by_node
from safetensors.torch import load_file

from hf_contrastive import data as data_lib
from hf_contrastive.training import parse_args, train

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "hf_contrastive" / "sample_data" / "cifar10_sample"
STREAM_RUN = ["--method", "simclr", "--dataset_name", str(SAMPLE), "--streaming", "--max_train_samples", "96",
              "--max_eval_samples", "32", "--per_device_train_batch_size", "16", "--shuffle_buffer_size", "48",
              "--dataloader_num_workers", "0", "--report_to", "none", "--knn_every_n_epochs", "0",
              "--config_overrides", "projection_hidden_size=64,projection_dim=32,small_image_stem=false"]


def _row_key(row: dict) -> str:
    return hashlib.sha1(row["img"]["bytes"]).hexdigest()


def test_streamed_split_counts_rows_and_keeps_a_bank():
    splits = data_lib.load_streaming_image_dataset(str(SAMPLE), max_train_samples=96, max_eval_samples=20,
                                                   bank_samples=40)
    assert splits.train_rows == 96 and len(splits.train) == 40 and len(splits.eval) == 20
    assert splits.num_classes == 10 and splits.image_column == "img" and splits.label_column == "label"
    assert data_lib.load_streaming_image_dataset(str(SAMPLE)).train_rows == 2000  # from the parquet footers


def test_each_process_reads_its_own_rows():
    """split_dataset_by_node: over one pass, the 2 processes' streams are disjoint and together hold every row."""
    splits = data_lib.load_streaming_image_dataset(str(SAMPLE), max_train_samples=64, max_eval_samples=8)
    everything = {_row_key(row) for row in splits.train_stream}
    assert len(everything) == 64
    parts = [{_row_key(row) for row in split_dataset_by_node(splits.train_stream, rank=rank, world_size=2)}
             for rank in range(2)]
    assert not parts[0] & parts[1] and parts[0] | parts[1] == everything
    # Through the shuffled view dataset, a process's first pass covers its rows once (in another order).
    mean, std = data_lib.DATASET_STATS["cifar10"]
    dataset = data_lib.StreamingViewDataset(
        split_dataset_by_node(splits.train_stream, rank=1, world_size=2), "img", "label",
        [data_lib.build_view_transform("strong", 32, mean, std)], shuffle_buffer_size=16, process_index=1)
    items = [item for _, item in zip(range(32), dataset, strict=False)]
    assert sorted(item["index"] for item in items) == list(range(32))
    assert items[0]["views"][0].shape == (3, 32, 32)


def test_streaming_run_resumes_exactly(tmp_path):
    """A streamed run checkpointed mid-epoch and resumed ends bit for bit where the uninterrupted run ends."""
    common = STREAM_RUN + ["--max_train_steps", "5", "--checkpointing_steps", "2", "--checkpoints_total_limit", "5"]
    straight = tmp_path / "straight"
    results = train(parse_args(common + ["--output_dir", str(straight)]))
    assert results["streaming"] and results["train_samples"] == 96 and results["global_step"] == 5
    assert results["epochs"] == round(5 / 6, 3)  # 96 rows / 16 per step = 6 steps per epoch
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(straight / "checkpoints" / "step_2", resumed / "checkpoints" / "step_2")
    train(parse_args(common + ["--output_dir", str(resumed), "--resume_from_checkpoint", "latest"]))
    expected, got = (load_file(folder / "model" / "model.safetensors") for folder in (straight, resumed))
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_streaming_with_two_processes(tmp_path):
    """The real recipes/train.py under torchrun, 2 CPU processes each streaming its own rows of a local parquet
    folder; MNN's queues (filled with gathered keys) stay identical on both processes (the trainer checks)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
               str(REPO / "recipes" / "train.py"), "--method", "mnn", "--dataset_name", str(SAMPLE), "--streaming",
               "--max_train_samples", "128", "--max_eval_samples", "32", "--per_device_train_batch_size", "16",
               "--max_train_steps", "5", "--dataloader_num_workers", "0", "--report_to", "none",
               "--output_dir", str(tmp_path),
               "--config_overrides", "projection_hidden_size=64,queue_size=256,small_image_stem=false"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-3000:]
    assert "128 train images (streamed)" in output and "global batch 32" in output
    results = json.loads((tmp_path / "all_results.json").read_text())
    assert results["num_processes"] == 2 and results["global_step"] == 5 and results["streaming"]
    assert results["epochs"] == 1.25  # 128 rows / (2 x 16) = 4 steps per epoch
