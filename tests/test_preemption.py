"""Training that survives SIGTERM and Ctrl-C, and one-line errors for bad input: real training processes on the
shipped CIFAR-10 sample, signalled as a scheduler or a terminal would signal them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from safetensors.torch import load_file

from hf_contrastive.training import main
from hf_contrastive.training.trainer import list_checkpoints

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = str(REPO_ROOT / "hf_contrastive" / "sample_data" / "cifar10_sample")
TRAIN_SCRIPT = str(REPO_ROOT / "recipes" / "train.py")
STEPS = 6
# 96 images in batches of 32: 3 steps an epoch, 2 epochs. Every command resumes with `auto`, so the same command
# line starts the run, continues it after a signal, and (with the final checkpoint) lets the states be compared.
RUN = [
    "--dataset_name", SAMPLE, "--max_train_samples", "96", "--max_eval_samples", "64",
    "--per_device_eval_batch_size", "64", "--report_to", "none", "--warmup_epochs", "1", "--knn_every_n_epochs", "0",
    "--max_train_steps", str(STEPS), "--checkpoints_total_limit", "5", "--resume_from_checkpoint", "auto",
    "--config_overrides", "queue_size=128,projection_hidden_size=256,bn_splits=4",
]


class _Output:
    """Collects a pipe in a thread, so that the test can wait for a pattern while the process runs."""

    def __init__(self, stream):
        self.data = b""
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        while chunk := stream.read1(4096):
            self.data += chunk

    def text(self) -> str:
        self._thread.join(timeout=10)
        return self.data.decode(errors="replace")


def _start(command: list[str]) -> tuple[subprocess.Popen, _Output, _Output]:
    # A session of its own: the test can signal the whole process group, as a terminal or a scheduler does.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return process, _Output(process.stdout), _Output(process.stderr)


def _wait_for(process: subprocess.Popen, condition, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _run(command: list[str]) -> str:
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-3000:]
    return completed.stdout


def _assert_same(expected, got, where: str) -> None:
    """Equal to the bit: tensors, arrays, and the containers accelerate's checkpoint files hold."""
    if isinstance(expected, torch.Tensor):
        assert torch.equal(expected, got), where
    elif isinstance(expected, np.ndarray):
        assert np.array_equal(expected, got), where
    elif isinstance(expected, dict):
        assert expected.keys() == got.keys(), where
        for key in expected:
            _assert_same(expected[key], got[key], f"{where}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(expected) == len(got), where
        for index, (a, b) in enumerate(zip(expected, got, strict=True)):
            _assert_same(a, b, f"{where}[{index}]")
    else:
        assert expected == got, where


def _assert_same_checkpoint(expected: Path, got: Path) -> None:
    """Weights (students, teachers, queues), optimizer and scheduler state and every RNG state of two checkpoints."""
    names = sorted(path.name for path in expected.iterdir() if path.name != "training_state.json")
    assert names == sorted(path.name for path in got.iterdir() if path.name != "training_state.json")
    assert any(name.startswith("random_states") for name in names) and "optimizer.bin" in names
    for name in names:
        if name.endswith(".safetensors"):
            _assert_same(load_file(expected / name), load_file(got / name), name)
        elif name.endswith((".bin", ".pkl")):  # optimizer, scheduler, sampler; .pkl: the RNG states (python, numpy, torch)
            _assert_same(torch.load(expected / name, weights_only=False), torch.load(got / name, weights_only=False),
                         name)


def test_sigterm_mid_epoch_then_the_same_command_ends_where_an_uninterrupted_run_ends(tmp_path):
    """SIGTERM to the training process (as torchrun and accelerate launch forward it; it has a loader worker): the
    step in progress finishes, a checkpoint is written there, the run exits 143 and prints how to resume; the same command
    then resumes it and ends bit-exact with a run that was never interrupted."""
    command = [sys.executable, TRAIN_SCRIPT, *RUN, "--per_device_train_batch_size", "32",
               "--dataloader_num_workers", "1", "--checkpointing_steps", str(STEPS)]
    straight = _run(command + ["--output_dir", str(tmp_path / "straight")])
    assert "--resume_from_checkpoint auto: no checkpoint in" in straight and "starting a new run" in straight

    process, stdout, stderr = _start(command + ["--output_dir", str(tmp_path / "stopped")])
    _wait_for(process, lambda: re.search(rb"\b1/6\b", stderr.data), "step 1 (tqdm)")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=300) == 143, stderr.text()[-3000:]
    output = stdout.text()
    checkpoints = list_checkpoints(tmp_path / "stopped")
    assert len(checkpoints) == 1, output
    state = json.loads((checkpoints[0] / "training_state.json").read_text())
    assert 2 <= state["global_step"] < STEPS and state["batches_done_in_epoch"] > 0, state  # mid-epoch
    assert f"SIGTERM received: saving a checkpoint at step {state['global_step']}" in output
    assert f"Stopped by SIGTERM after step {state['global_step']}; checkpoint: {checkpoints[0]}" in output
    resume_line = next(line for line in output.splitlines() if "Resume with: " in line).split("Resume with: ")[1]
    assert resume_line.startswith("accelerate launch ") and resume_line.endswith(" --resume_from_checkpoint auto")
    assert resume_line.count("--resume_from_checkpoint") == 1  # the command's own resume flag was replaced
    assert not (tmp_path / "stopped" / "all_results.json").exists()

    resumed = _run(command + ["--output_dir", str(tmp_path / "stopped")])
    assert f"Resumed from {checkpoints[0]} (step {state['global_step']}" in resumed
    for run in ("straight", "stopped"):
        assert json.loads((tmp_path / run / "all_results.json").read_text())["global_step"] == STEPS
    _assert_same_checkpoint(tmp_path / "straight" / "checkpoints" / f"step_{STEPS}",
                            tmp_path / "stopped" / "checkpoints" / f"step_{STEPS}")
    _assert_same(load_file(tmp_path / "straight" / "model" / "model.safetensors"),
                 load_file(tmp_path / "stopped" / "model" / "model.safetensors"), "model/model.safetensors")


def test_two_processes_stop_at_the_same_step_when_one_is_signalled(tmp_path):
    """torchrun, 2 CPU processes (gloo): only rank 1 gets SIGTERM. Both must stop after the same step (rank 0 learns
    of it through the per-step agreement) and write one checkpoint; resumed, they end bit-exact with the
    uninterrupted 2-process run."""
    def command(output_dir: Path) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(_free_port()), TRAIN_SCRIPT, *RUN, "--per_device_train_batch_size", "16",
                "--dataloader_num_workers", "0", "--checkpointing_steps", str(STEPS), "--output_dir", str(output_dir)]

    _run(command(tmp_path / "straight"))
    process, stdout, stderr = _start(command(tmp_path / "stopped"))
    _wait_for(process, lambda: re.search(rb"\b1/6\b", stderr.data), "step 1 (tqdm)")
    workers = {child.environ().get("RANK"): child for child in psutil.Process(process.pid).children(recursive=True)}
    workers["1"].send_signal(signal.SIGTERM)
    process.wait(timeout=300)
    output = stdout.text()
    checkpoints = list_checkpoints(tmp_path / "stopped")
    assert len(checkpoints) == 1, output + stderr.text()[-3000:]
    step = json.loads((checkpoints[0] / "training_state.json").read_text())["global_step"]
    assert step < STEPS
    # Rank 0 was never signalled: it printed that it stops because the two processes agreed to.
    assert f"SIGTERM received: saving a checkpoint at step {step}" in output
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= {path.name for path in checkpoints[0].iterdir()}

    _run(command(tmp_path / "stopped"))
    _assert_same_checkpoint(tmp_path / "straight" / "checkpoints" / f"step_{STEPS}",
                            tmp_path / "stopped" / "checkpoints" / f"step_{STEPS}")


def test_a_second_signal_during_the_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    """SIGTERM, then Ctrl-C while the stop's checkpoint is being written: the process stops at once, the checkpoint
    being written stays a .partial folder that resuming ignores, and the same command resumes from the one before."""
    command = [sys.executable, TRAIN_SCRIPT, *RUN, "--per_device_train_batch_size", "32",
               "--dataloader_num_workers", "0", "--checkpointing_steps", "2", "--output_dir", str(tmp_path)]
    process, stdout, stderr = _start(command)
    first = tmp_path / "checkpoints" / "step_2" / "training_state.json"
    _wait_for(process, first.is_file, "the checkpoint of step 2")
    process.send_signal(signal.SIGTERM)
    saving = lambda: [path for path in (tmp_path / "checkpoints").glob("*.partial")]  # noqa: E731
    _wait_for(process, saving, "the stop's checkpoint to be written")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=300) == -signal.SIGINT, stdout.text()[-2000:] + stderr.text()[-2000:]
    assert "Traceback" not in stderr.text()
    assert [path.name for path in list_checkpoints(tmp_path)] == ["step_2"]  # the interrupted save is not listed

    resumed = _run(command)
    assert f"Resumed from {tmp_path / 'checkpoints' / 'step_2'} (step 2" in resumed
    assert json.loads((tmp_path / "all_results.json").read_text())["global_step"] == STEPS


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------ errors in the user's input


def _one_image_folder(root: Path) -> Path:
    """An image folder whose only image is corrupt."""
    (root / "cats").mkdir(parents=True)
    (root / "cats" / "cat.png").write_bytes(b"not a PNG at all")
    return root


@pytest.mark.parametrize(("extra", "message"), [
    (["--learning_rate", "-1"], "--learning_rate must be positive, got -1."),
    (["--learning_rate", "nan"], "--learning_rate must be a finite number, got nan."),
    (["--base_learning_rate", "inf"], "--base_learning_rate must be a finite number, got inf."),
    (["--momentum", "1.5"], "--momentum must lie in [0, 1), got 1.5."),
    (["--output_dir", "{file}"], "--output_dir {file} is a file; pass a folder (created if missing)."),
    (["--dataset_name", "{one_image}"], "split has 1 readable image(s), too few to hold out 10% as the eval split"),
    (["--resume_from_checkpoint", "latest"], "--resume_from_checkpoint latest: no checkpoint in"),
    (["--config", "{missing}"], "no such file"),
])
def test_input_errors_are_one_line_with_status_2(tmp_path, capsys, extra, message):
    places = {"file": tmp_path / "a_file", "one_image": _one_image_folder(tmp_path / "images"),
              "missing": tmp_path / "missing.yaml"}
    places["file"].write_text("")
    extra = [value.format(**places) for value in extra]
    base = ["--dataset_name", SAMPLE, "--report_to", "none", "--output_dir", str(tmp_path / "run")]
    assert main(base + extra) == 2
    stderr = capsys.readouterr().err  # may hold progress bars of datasets before the error
    error = stderr.strip().splitlines()[-1]
    assert "Traceback" not in stderr and stderr.count(": error: ") == 1, stderr
    assert ": error: " in error and message.format(**places) in error, error


def test_a_non_finite_loss_ends_with_one_line_and_status_2(tmp_path, capsys):
    # A learning rate of 1e30 makes the weights, then the loss, non-finite within two steps.
    status = main(["--dataset_name", SAMPLE, "--max_train_samples", "64", "--per_device_train_batch_size", "32",
                   "--dataloader_num_workers", "0", "--report_to", "none", "--knn_every_n_epochs", "0",
                   "--learning_rate", "1e30", "--warmup_epochs", "0", "--max_train_steps", "4", "--logging_steps", "1",
                   "--config_overrides", "queue_size=128,small_image_stem=false", "--output_dir", str(tmp_path)])
    stderr = capsys.readouterr().err
    assert status == 2 and "Traceback" not in stderr
    assert re.search(r"error: The loss became nan .* start the run again\.\n", stderr), stderr[-2000:]


def test_the_script_prints_one_line_and_the_traceback_only_when_asked(tmp_path):
    command = [sys.executable, TRAIN_SCRIPT, "--learning_rate", "nan", "--output_dir", str(tmp_path)]
    plain = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines()[-1] == "train.py: error: --learning_rate must be a finite number, got nan."
    shown = subprocess.run(command, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "HF_CONTRASTIVE_TRACEBACK": "1"})
    assert shown.returncode == 1 and "Traceback (most recent call last)" in shown.stderr
