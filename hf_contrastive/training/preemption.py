"""Stopping a run cleanly when the machine is taken away: SIGTERM (schedulers, spot instances) and SIGINT (Ctrl-C).

While `StopSignals` is installed, the first SIGTERM or SIGINT only records a request; the trainer reads it after
each optimiser step (every process agrees on one step, see `StopSignals.agreed`), writes a checkpoint there and
raises `TrainingInterrupted`, whose ``exit_code`` is 128 + the signal number (143 for SIGTERM, 130 for SIGINT), the
status a shell reports for a process killed by that signal, which Slurm, Kubernetes and torchrun read as
"terminated by a signal". A second SIGINT stops the process at once (the default action of SIGINT, no traceback);
the checkpoint being written then stays a ``.partial`` folder that resuming never picks. A repeated SIGTERM is
ignored: launchers forward the signal they got, so one request can reach a process twice.
"""

from __future__ import annotations

import os
import signal
import threading

import torch
import torch.distributed as dist

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def interrupted_exit_code(signal_number: int) -> int:
    """128 + the signal number: the exit status a shell gives a process ended by that signal."""
    return 128 + signal_number


class TrainingInterrupted(Exception):
    """The run stopped on a signal after writing ``checkpoint``; ``resume_command`` continues it."""

    def __init__(self, signal_number: int, global_step: int, checkpoint, resume_command: str):
        self.signal_number = signal_number
        self.global_step = global_step
        self.checkpoint = checkpoint
        self.resume_command = resume_command
        self.exit_code = interrupted_exit_code(signal_number)
        super().__init__(
            f"Stopped by {signal.Signals(signal_number).name} after step {global_step}; checkpoint: {checkpoint}. "
            f"Resume with: {resume_command}"
        )


class StopSignals:
    """Records the first SIGTERM / SIGINT instead of dying; a context manager that restores the previous handlers.

    Handlers can only be set from the main thread: elsewhere (a training run started in a thread) nothing is
    installed and signals keep their usual effect.
    """

    def __init__(self) -> None:
        self.received: int | None = None  # the first signal's number
        self._previous: dict[int, object] = {}
        self._group = None  # the process group `agreed` reduces over

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # A CPU (gloo) group: agreeing on a host flag then never waits for the accelerator.
            self._group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
            self._distributed = True
        else:
            self._distributed = False
        return self

    def __exit__(self, *exc_info) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous.clear()

    def _handle(self, number: int, frame) -> None:
        # Only a flag here: printing from a handler can re-enter a stream the loop is writing to (tqdm).
        if self.received is None:
            self.received = number
        elif number == signal.SIGINT:  # the second Ctrl-C: stop now, as SIGINT does by default
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)

    def agreed(self) -> int | None:
        """The signal every process acts on now (None: keep training). With several processes a signal seen by any
        of them counts for all, so every rank stops after the same step; one small all-reduce over a CPU group."""
        if not self._distributed:
            return self.received
        flag = torch.tensor([self.received or 0], dtype=torch.int64)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
        return int(flag.item()) or None


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: workers leave Ctrl-C to the training process.

    Ctrl-C reaches the whole process group; a worker that stopped on it would make the training process fail before
    it could save. SIGTERM keeps its default in workers: the loader stops its workers with SIGTERM when they do not
    end by themselves, so ignoring it there would leave the training process waiting for them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
