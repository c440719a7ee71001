"""What the per-method tests (tests/test_method_<name>.py) share, in the spirit of transformers' ModelTesterMixin.

`MethodTester` holds a method's test facts (small config, the student's and the teacher's modules) and builds its
models and *independent* recomputations of their outputs (the modules called one by one, never the model's own
`student_embeddings` / `teacher_embeddings`). The ``check_*`` functions are the assertions several methods make in
the same words: gradients reach the student only, teachers start as the student and follow it by EMA, forward
leaves the queue alone and hands over the right keys, shuffle-BN, and the config's validation errors. Each test file
keeps its tests (with their names) and calls these for the shared part.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from hf_contrastive.models import FeatureQueue

BATCH = 16  # images per view in the sample views (tests/conftest.py `sample_views`)


def views_fixture(kinds: list[str]):
    """A module-scoped ``views`` fixture: one view of each preset in ``kinds`` of 16 real CIFAR-10 training images
    (assign it to a module attribute named ``views``)."""

    @pytest.fixture(scope="module")
    def views(sample_views) -> list[torch.Tensor]:
        return sample_views(kinds)

    return views


@dataclass
class MethodTester:
    """A method's test setup: ``small`` config fields (small heads and queues, fast on CPU), and the attribute names
    of the student network's modules and of the (first) teacher's, encoder first, as the method's paper defines
    them (written here, not read from the model, so the recomputations are independent of it)."""

    config_class: type
    model_class: type
    small: dict = field(default_factory=dict)
    student: tuple[str, ...] = ("encoder", "projector")
    teacher: tuple[str, ...] = ("teacher_encoder", "teacher_projector")

    def config(self, **extra):
        return self.config_class(**{**self.small, **extra})

    def model(self, **extra):
        """A fresh model (seed 0) of ``config(**extra)``."""
        torch.manual_seed(0)
        return self.model_class(self.config(**extra))

    def perturbed_model(self, **extra):
        """A model in train mode whose teacher differs from its student (as after some training), so directions are
        distinguishable."""
        model = self.model(**extra).train()
        with torch.no_grad():
            for name in self.teacher:
                for parameter in model.get_submodule(name).parameters():
                    parameter.add_(0.05 * torch.randn_like(parameter))
        return model

    def student_output(self, model, x: torch.Tensor) -> torch.Tensor:
        """The student network on one batch, module by module."""
        return run_network([model.get_submodule(name) for name in self.student], x)

    @torch.no_grad()
    def teacher_output(self, model, x: torch.Tensor) -> torch.Tensor:
        """The teacher network on one batch, module by module (no shuffle)."""
        return run_network([model.get_submodule(name) for name in self.teacher], x)

    def outputs(self, model, views: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Student and teacher outputs of every view, one call per view, without gradients."""
        with torch.no_grad():
            return [self.student_output(model, x) for x in views], [self.teacher_output(model, x) for x in views]

    def check_gradients_reach_the_student_only(self, model, views: list[torch.Tensor]) -> None:
        """`check_gradients_reach_the_student_only` for the student network's modules."""
        modules = [model.get_submodule(name) for name in self.student]
        check_gradients_reach_the_student_only(model, views, [module for module in modules if module is not None])

    def check_teacher_follows_the_student_by_ema(self, model, views, momentum: float, shifted: str | None = None):
        """`check_teachers_start_as_the_student_and_follow_it_by_ema` for the teacher and the student modules it
        copies (the first ``len(teacher)`` of the student network)."""
        student = [model.get_submodule(name) for name in self.student[: len(self.teacher)]]
        teacher = [model.get_submodule(name) for name in self.teacher]
        check_teachers_start_as_the_student_and_follow_it_by_ema(
            model, views, student, [teacher], [momentum], None if shifted is None else model.get_submodule(shifted))


def run_network(modules: Sequence[nn.Module | None], x: torch.Tensor) -> torch.Tensor:
    """``heads[-1](...heads[0](encoder(x).pooler_output))`` for ``modules = [encoder, *heads]`` (``None`` skipped)."""
    encoder, *heads = modules
    features = encoder(x).pooler_output
    for head in heads:
        if head is not None:
            features = head(features)
    return features


def named_parameters(modules: Sequence[nn.Module]) -> dict[str, nn.Parameter]:
    """The parameters of several modules, named ``<position>.<name>``."""
    return {f"{i}.{name}": p for i, module in enumerate(modules) for name, p in module.named_parameters()}


# ----------------------------------------------------------------------------- students and teachers


def check_gradients_reach_the_student_only(model, views: list[torch.Tensor], student: Sequence[nn.Module]) -> None:
    """After backward: no ``teacher_*`` parameter has a gradient (or needs one); every student module has one for
    each parameter, not all zero."""
    model(views=views).loss.backward()
    for name, parameter in model.named_parameters():
        if name.startswith("teacher_"):
            assert not parameter.requires_grad and parameter.grad is None, name
    for module in student:
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def check_teachers_start_as_the_student_and_follow_it_by_ema(
    model,
    views: list[torch.Tensor],
    student: Sequence[nn.Module],
    teachers: Sequence[Sequence[nn.Module]],
    momenta: Sequence[float],
    shifted: nn.Module | None = None,
) -> None:
    """Each teacher (its modules, in the order of ``student``'s) starts equal to the student, parameters and
    buffers, and frozen; after a real step (backward: no teacher gradient; SGD; then ``shifted``'s parameters + 1,
    so a wrong EMA cannot hide in a small step) ``momentum_update`` moves every teacher parameter to
    ``m t + (1 - m) s`` with its own momentum ``m``."""
    student_parameters = named_parameters(student)
    teacher_parameters = [named_parameters(teacher) for teacher in teachers]
    for teacher in teachers:
        for student_module, teacher_module in zip(student, teacher, strict=True):
            student_state, teacher_state = student_module.state_dict(), teacher_module.state_dict()
            assert student_state.keys() == teacher_state.keys()
            for name, value in student_state.items():
                assert torch.equal(value, teacher_state[name]), name
    for parameters in teacher_parameters:
        assert parameters.keys() == student_parameters.keys()
        assert not any(p.requires_grad for p in parameters.values())

    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(views=views).loss.backward()
    assert all(p.grad is None for parameters in teacher_parameters for p in parameters.values())
    old = [{name: p.detach().clone() for name, p in parameters.items()} for parameters in teacher_parameters]
    optimizer.step()
    if shifted is not None:
        with torch.no_grad():
            for parameter in shifted.parameters():
                parameter.add_(1.0)
    model.momentum_update()
    for parameters, previous, momentum in zip(teacher_parameters, old, momenta, strict=True):
        moved = 0
        for name, s in student_parameters.items():
            expected = momentum * previous[name] + (1 - momentum) * s.detach()
            torch.testing.assert_close(parameters[name].detach(), expected)
            moved += not torch.equal(parameters[name], previous[name])
        assert moved > 0


def check_teacher_keys_use_shuffle_bn(model, views: list[torch.Tensor], teacher_output: Callable, name: str = "queue"):
    """With split BatchNorm (train mode) each teacher view's batch is shuffled with its own permutation (drawn in
    view order: the student forwards draw no random numbers) and restored: the keys ``queue_keys[name]`` equal the
    teacher's outputs computed that way, and differ from the unshuffled ones (the shuffle is really applied)."""
    torch.manual_seed(123)
    output = model(views=views)
    torch.manual_seed(123)
    orders = [torch.randperm(BATCH) for _ in views]
    with torch.no_grad():
        expected = [teacher_output(x[order])[torch.argsort(order)] for x, order in zip(views, orders, strict=True)]
        unshuffled = teacher_output(views[0])
    torch.testing.assert_close(output.queue_keys[name], torch.cat(expected))
    assert not torch.allclose(output.queue_keys[name][:BATCH], unshuffled)


def check_no_teacher_no_queue_and_gradients_reach_encoder_and_projector(model, views: list[torch.Tensor]) -> None:
    """Methods without teacher or queue: nothing to enqueue, ``momentum_update`` a no-op, gradients in the encoder
    and the projector."""
    assert model.teacher_pairs() == []
    assert not any(isinstance(module, FeatureQueue) for module in model.modules())
    assert not any(name.startswith("teacher_") for name, _ in model.named_parameters())
    output = model(views=views)
    assert output.queue_keys is None
    output.loss.backward()
    assert model.encoder.backbone.conv1.weight.grad.abs().sum() > 0
    assert model.projector[0].weight.grad.abs().sum() > 0
    before = [p.detach().clone() for p in model.parameters()]
    model.momentum_update()  # no-op
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


# ----------------------------------------------------------------------------- queues


def forward_reading_the_queue(model, views: list[torch.Tensor], **kwargs):
    """``model(views=views, **kwargs)``, checking that forward read the queue but left it (features and pointer)
    alone; returns the output and the queue as it was."""
    queue_before, pointer_before = model.queue.features.clone(), model.queue.pointer.clone()
    output = model(views=views, **kwargs)
    assert torch.equal(model.queue.features, queue_before) and torch.equal(model.queue.pointer, pointer_before)
    return output, queue_before


def check_keys_and_enqueue(model, output, expected: torch.Tensor, shape: tuple[int, int]) -> None:
    """``queue_keys`` is ``{"queue": expected}`` (``shape``, float32, detached); ``enqueue`` writes them at the
    queue's pointer and leaves the rest of the queue as it was."""
    keys = output.queue_keys["queue"]
    assert set(output.queue_keys) == {"queue"} and keys.shape == shape
    assert keys.dtype == torch.float32 and not keys.requires_grad
    torch.testing.assert_close(keys, expected)
    size, start = model.queue.features.shape[0], model.queue.pointer.item()
    before = model.queue.features.clone()
    model.enqueue(output.queue_keys)
    assert model.queue.pointer.item() == (start + shape[0]) % size
    written = torch.zeros(size, dtype=torch.bool)
    written[start:start + shape[0]] = True
    torch.testing.assert_close(model.queue.features[written], keys)
    torch.testing.assert_close(model.queue.features[~written], before[~written])


# ----------------------------------------------------------------------------- configs


def config_validation_test(config_class: type, cases: list[tuple[dict, type, str]], **base):
    """A test over ``cases``: ``config_class(**base, **fields)`` raises ``error`` matching ``message``. Assign it to a
    module attribute named ``test_...``."""

    @pytest.mark.parametrize(("fields", "error", "message"), cases)
    def test(fields, error, message):
        with pytest.raises(error, match=message):
            config_class(**{**base, **fields})

    return test
