"""Multi-network GL (reconstruction of arXiv 2306.15930) on real CIFAR-10 images: the loss against numpy loops and
hand values, forward == loss of recomputed online/momentum outputs over 2 global + 4 local crops, what each queue
receives, gathered negatives, teachers frozen and EMA per network, shuffle-BN, config checks.

The generic test over all methods (training on real images, the loop, the Hub folder) lives in tests/test_methods.py.
"""

from __future__ import annotations

import math

import method_tester as mt
import numpy as np
import pytest
import torch

from hf_contrastive.losses import multinet_gl_loss
from hf_contrastive.models.configuration_multinet_gl import MultiNetGLConfig
from hf_contrastive.models.modeling_multinet_gl import MultiNetGLForPreTraining

BATCH = 16
VIEWS = ["strong", "strong", "local", "local", "local", "local"]
SMALL = {"projection_hidden_size": 64, "prediction_hidden_size": 64, "projection_dim": 32, "queue_size": 64}


# ----------------------------------------------------------------------------- the loss, independently computed


def _numpy_loss(queries, keys, queues, tau, batch_negatives):
    """Explicit loops: for every (view v, network n, global view g != v) and row i, -log softmax of the positive."""
    def unit(x):
        x = np.asarray(x, dtype=np.float64)
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    queries = [unit(q) for q in queries]
    keys = [[unit(k) for k in network] for network in keys]
    pair_losses = []
    for v, q in enumerate(queries):
        for n, network in enumerate(keys):
            for g, k in enumerate(network):
                if g == v:
                    continue
                rows = []
                for i in range(q.shape[0]):
                    logits = [float(q[i] @ k[i])]
                    if batch_negatives:
                        logits += [float(q[i] @ k[j]) for j in range(k.shape[0]) if j != i]
                    if queues is not None:
                        logits += [float(q[i] @ entry) for entry in unit(queues[n])]
                    logits = np.array(logits) / tau
                    rows.append(-logits[0] + math.log(np.exp(logits).sum()))
                pair_losses.append(np.mean(rows))
    return float(np.mean(pair_losses)), len(pair_losses)


def _random_inputs(batch=5, dim=6, num_views=4, num_global=2, networks=2, queue=7, seed=0):
    generator = torch.Generator().manual_seed(seed)
    queries = [torch.randn(batch, dim, generator=generator) for _ in range(num_views)]
    keys = [[torch.randn(batch, dim, generator=generator) for _ in range(num_global)] for _ in range(networks)]
    queues = [torch.randn(queue + n, dim, generator=generator) for n in range(networks)]  # sizes may differ
    return queries, keys, queues


@pytest.mark.parametrize("batch_negatives, use_queues", [(True, True), (True, False), (False, True)])
def test_loss_matches_numpy_loops(batch_negatives, use_queues):
    queries, keys, queues = _random_inputs()
    queues = queues if use_queues else None
    got = multinet_gl_loss(queries, keys, queues, 0.3, batch_negatives=batch_negatives)
    expected, num_pairs = _numpy_loss([q.numpy() for q in queries], [[k.numpy() for k in net] for net in keys],
                                      None if queues is None else [x.numpy() for x in queues], 0.3, batch_negatives)
    # 2 networks x (2 global queries x 1 other global view + 2 local queries x 2 global views)
    assert num_pairs == 2 * (2 * 1 + 2 * 2)
    assert got.dtype == torch.float32 and got.dim() == 0
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_loss_by_hand_on_orthonormal_vectors():
    # Two images, two global views, one network, no queue: q = k = e_i. Every pair has logits [1/tau, 0] (the other
    # image is orthogonal), so every term is log(1 + exp(-1/tau)).
    e = torch.eye(2)
    tau = 0.5
    loss = multinet_gl_loss([e, e], [[e, e]], None, tau)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1 / tau)), rel=1e-6)

    # Swap k_1's rows between the two images: the pairs (0, 1) and (1, 0) now differ, and the skipped pairs
    # (0, 0), (1, 1) would add the easy value log(1 + e^{-1/tau}) if they were (wrongly) included.
    q0, q1 = e, e
    k0, k1 = e, e.flip(0)  # row i of k1 is the other image's direction
    # pairs: (v=0, g=1): positive <e_i, e_{1-i}> = 0, negative <e_i, e_i> = 1 -> log(1 + e^{1/tau})
    #        (v=1, g=0): positive <e_i, e_i> = 1, negative 0            -> log(1 + e^{-1/tau})
    expected = 0.5 * (math.log(1 + math.exp(1 / tau)) + math.log(1 + math.exp(-1 / tau)))
    assert multinet_gl_loss([q0, q1], [[k0, k1]], None, tau).item() == pytest.approx(expected, rel=1e-6)


def test_loss_gradient_reaches_queries_only_through_their_pairs():
    queries, keys, queues = _random_inputs(networks=1)
    queries = [q.requires_grad_(True) for q in queries]
    multinet_gl_loss(queries, keys, queues[:1], 0.2).backward()
    assert all(q.grad is not None and q.grad.abs().sum() > 0 for q in queries)


def test_loss_input_errors():
    queries, keys, queues = _random_inputs()
    with pytest.raises(ValueError, match="needs negatives"):
        multinet_gl_loss(queries, keys, None, 0.2, batch_negatives=False)
    with pytest.raises(ValueError, match="one queue per network"):
        multinet_gl_loss(queries, keys, queues[:1], 0.2)
    with pytest.raises(ValueError, match="must both be"):
        multinet_gl_loss(queries + [torch.randn(3, 6)], keys, queues, 0.2)
    with pytest.raises(ValueError, match="same G global-view"):
        multinet_gl_loss(queries, [keys[0], keys[1][:1]], queues, 0.2)


# ----------------------------------------------------------------------------- the model on real images


@pytest.fixture(scope="module")
def views(sample_views) -> list[torch.Tensor]:
    """2 strong global views (32 px) + 4 local views (16 px) of 16 real CIFAR-10 training images."""
    return sample_views(VIEWS)


def _model(**overrides) -> MultiNetGLForPreTraining:
    torch.manual_seed(0)
    return MultiNetGLForPreTraining(MultiNetGLConfig(**{**SMALL, **overrides}))


def _student(model, x):
    projection = model.projector(model.encoder(x).pooler_output)
    return model.predictor(projection) if model.predictor is not None else projection


def _teacher(model, n, x):
    return model.teacher_projectors[n](model.teacher_encoders[n](x).pooler_output)


@torch.no_grad()
def _perturb_teachers(model):
    """Teachers start as copies of the student; move them so that each network's keys differ."""
    for n, teacher in enumerate(model.teacher_encoders):
        for parameter in teacher.parameters():
            parameter.add_(0.02 * (n + 1) * torch.randn_like(parameter))


def test_defaults_views_and_heads():
    config = MultiNetGLConfig()
    assert config.views == VIEWS and config.num_global_views == 2
    assert (config.num_momentum_networks, config.ema_momentum, config.ema_momenta) == (1, 0.99, [0.99])
    assert (config.tau, config.queue_size, config.use_batch_negatives) == (0.2, 4096, True)
    assert (config.projection_hidden_size, config.projection_dim) == (2048, 128)
    model = _model()
    assert [type(layer).__name__ for layer in model.projector] == ["Linear", "ReLU", "Linear"]  # MoCo v2 head
    assert model.predictor is None
    assert len(model.teacher_encoders) == len(model.queues) == 1
    assert model.queues[0].features.shape == (64, 32) and model.queue_keys_per_sample == 2


def test_local_views_are_small_crops(views):
    assert [tuple(v.shape) for v in views] == [(BATCH, 3, 32, 32)] * 2 + [(BATCH, 3, 16, 16)] * 4


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"num_momentum_networks": 2, "ema_momentum": [0.99, 0.9], "use_predictor": True,
         "projection_batch_norm": True, "queue_size": 0},
        {"use_batch_negatives": False, "small_image_stem": False},
    ],
    ids=["default", "two-networks-predictor-no-queue", "queue-only"],
)
def test_forward_loss_is_the_loss_of_recomputed_outputs(views, overrides):
    model = _model(**overrides).train()
    _perturb_teachers(model)
    config = model.config
    queues_before = None if model.queues is None else [q.features.clone() for q in model.queues]
    output = model(views=views)
    if queues_before is not None:  # forward reads the queues but never writes them
        assert all(torch.equal(q.features, before) for q, before in zip(model.queues, queues_before, strict=True))

    with torch.no_grad():  # train-mode BN with bn_splits=1: per-view batch statistics, as forward
        queries = [_student(model, x) for x in views]
        keys = [[_teacher(model, n, x) for x in views[:2]] for n in range(config.num_momentum_networks)]
    expected = multinet_gl_loss(queries, keys, queues_before, config.tau, config.use_batch_negatives)
    torch.testing.assert_close(output.loss.detach(), expected)
    # every network counts: dropping the last one changes the loss (they differ after the perturbation)
    if config.num_momentum_networks > 1:
        assert not torch.allclose(output.loss.detach(), multinet_gl_loss(queries, keys[:1], None, config.tau))
    # the local views count: the loss over the global views alone differs
    partial = multinet_gl_loss(queries[:2], keys, queues_before, config.tau, config.use_batch_negatives)
    assert not torch.allclose(output.loss.detach(), partial)

    if queues_before is None:
        assert output.queue_keys is None
    else:
        assert set(output.queue_keys) == {f"queues.{n}" for n in range(config.num_momentum_networks)}
        for n in range(config.num_momentum_networks):
            keys_n = output.queue_keys[f"queues.{n}"]
            assert keys_n.shape == (2 * BATCH, 32) and keys_n.dtype == torch.float32 and not keys_n.requires_grad
            torch.testing.assert_close(keys_n, torch.cat(keys[n]))  # momentum keys of the global views, in order


def test_enqueue_fills_each_network_queue(views):
    model = _model(num_momentum_networks=2, ema_momentum=[0.99, 0.95]).train()
    _perturb_teachers(model)
    before = [q.features.clone() for q in model.queues]
    output = model(views=views)
    model.enqueue(output.queue_keys)
    for n, queue in enumerate(model.queues):
        keys = output.queue_keys[f"queues.{n}"]
        assert queue.pointer.item() == 2 * BATCH
        torch.testing.assert_close(queue.features[: 2 * BATCH], keys)
        torch.testing.assert_close(queue.features[2 * BATCH :], before[n][2 * BATCH :])
    assert not torch.allclose(output.queue_keys["queues.0"], output.queue_keys["queues.1"])
    # a queue that cannot hold one step's keys (2 x batch) is reported
    small = _model(queue_size=BATCH)
    with pytest.raises(ValueError, match="must not exceed queue_size"):
        small.enqueue(small(views=views).queue_keys)


def test_teachers_start_as_student_frozen_and_follow_by_their_own_ema(views):
    model = _model(num_momentum_networks=2, ema_momentum=[0.99, 0.9]).train()
    student = dict(model.encoder.named_parameters()) | {f"p.{k}": v for k, v in model.projector.named_parameters()}
    teachers = [
        dict(model.teacher_encoders[n].named_parameters())
        | {f"p.{k}": v for k, v in model.teacher_projectors[n].named_parameters()}
        for n in range(2)
    ]
    for teacher in teachers:
        assert teacher.keys() == student.keys()
        assert all(torch.equal(student[name], teacher[name]) for name in student)
        assert not any(p.requires_grad for p in teacher.values())
    assert all(not p.requires_grad for name, p in model.named_parameters() if name.startswith("teacher_"))

    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(views=views).loss.backward()
    assert all(p.grad is None for teacher in teachers for p in teacher.values())
    old = [{name: p.detach().clone() for name, p in teacher.items()} for teacher in teachers]
    optimizer.step()
    model.momentum_update()
    for teacher, previous, momentum in zip(teachers, old, (0.99, 0.9), strict=True):
        moved = 0
        for name in student:
            expected = momentum * previous[name] + (1 - momentum) * student[name].detach()
            torch.testing.assert_close(teacher[name].detach(), expected)
            moved += not torch.equal(teacher[name], previous[name])
        assert moved > 0


def test_teacher_keys_use_shuffle_bn_when_batch_norm_is_split(views):
    model = _model(bn_splits=2, small_image_stem=False).train()
    torch.manual_seed(123)
    output = model(views=views)
    # The online forwards draw no random numbers, so the teacher permutations are the first draws (one per view).
    torch.manual_seed(123)
    orders = [torch.randperm(BATCH), torch.randperm(BATCH)]
    with torch.no_grad():
        expected = [_teacher(model, 0, x[order])[torch.argsort(order)]
                    for x, order in zip(views[:2], orders, strict=True)]
        unshuffled = _teacher(model, 0, views[0])
    torch.testing.assert_close(output.queue_keys["queues.0"], torch.cat(expected))
    assert not torch.allclose(output.queue_keys["queues.0"][:BATCH], unshuffled)


def test_wrong_number_of_views_is_reported(views):
    with pytest.raises(ValueError, match="takes 6 views"):
        _model()(views=views[:2])


test_config_validation = mt.config_validation_test(
    MultiNetGLConfig,
    [
        ({"tau": 0}, ValueError, "tau must be > 0"),
        ({"ema_momentum": 1.0}, ValueError, r"ema_momentum must be in \[0, 1\)"),
        ({"ema_momentum": [0.99, -0.1], "num_momentum_networks": 2}, ValueError, r"ema_momentum must be in \[0, 1\)"),
        ({"num_momentum_networks": 2}, ValueError, "must be a list of 2 different values"),
        ({"num_momentum_networks": 2, "ema_momentum": [0.99, 0.99]}, ValueError, "must differ"),
        ({"num_momentum_networks": 2, "ema_momentum": [0.99]}, ValueError, "one value per momentum network"),
        ({"num_momentum_networks": 0}, ValueError, "num_momentum_networks must be >= 1"),
        ({"num_global_views": 1}, ValueError, "num_global_views must be >= 2"),
        ({"views": ["strong"]}, ValueError, "at least num_global_views=2"),
        ({"views": ["local", "strong", "local"]}, ValueError, "global and must be presets"),
        ({"views": ["strong", "strong", "eval"]}, ValueError, "local views must be presets"),
        ({"queue_size": -1}, ValueError, "queue_size must be >= 0"),
        ({"queue_size": 1}, ValueError, "queue_size must be 0 or >= num_global_views"),
        ({"queue_size": 0, "use_batch_negatives": False}, ValueError, "InfoNCE needs negatives"),
        ({"projection_dim": 0}, ValueError, "projection_dim must be >= 1"),
        ({"queue_size": 4096.0}, TypeError, "queue_size must be int"),
        ({"ema_momentum": "0.99"}, TypeError, "ema_momentum must be float or list"),
    ],
)


def test_config_round_trips_with_several_networks(tmp_path):
    config = MultiNetGLConfig(num_momentum_networks=2, ema_momentum=[0.99, 0.95], queue_size=0)
    config.save_pretrained(tmp_path)
    loaded = MultiNetGLConfig.from_pretrained(tmp_path)
    assert loaded.ema_momenta == [0.99, 0.95] and loaded.queue_size == 0 and loaded.views == VIEWS
