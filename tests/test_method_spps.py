"""SPPS (reconstruction) on real CIFAR-10 images: the multi-positive loss against a numpy loop, forward == the loss
of recomputed projections for both frames (SimCLR, MoCo v2), the plain base loss without neighbour views, teacher
and queue of the MoCo v2 frame, config checks, and an end-to-end run through the real loop that mines neighbours
with a freshly pretrained BYOL folder and reuses the cached table on resume.

The generic test over all methods (training on real images, Hub folder) lives elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import method_tester as mt
import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import AutoImageProcessor, AutoModel

from hf_contrastive import data as data_lib
from hf_contrastive import mining
from hf_contrastive.losses import moco_loss, simclr_loss, spps_loss
from hf_contrastive.models import FeatureQueue
from hf_contrastive.models.configuration_spps import SPPSConfig
from hf_contrastive.models.modeling_spps import SPPSForPreTraining
from hf_contrastive.training import Pretrainer, parse_args, train

BATCH = 16
SAMPLE = Path(__file__).resolve().parents[1] / "hf_contrastive" / "sample_data" / "cifar10_sample"
# Standard ResNet stem (16x cheaper at 32 px than the small-image stem) and small heads keep the file fast.
SMALL = {"projection_hidden_size": 64, "projection_dim": 32, "queue_size": 64, "small_image_stem": False}


# ---------------------------------------------------------------------------- the loss against a numpy loop


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def numpy_spps(queries, neighbours, tau, weight, as_negatives, keys=None, queue=None) -> float:
    """One anchor at a time: list its candidates with their positive weights, then the weighted average of
    -log softmax over the listed candidates."""
    q, n = _normalize(np.asarray(queries, np.float64)), _normalize(np.asarray(neighbours, np.float64))
    k = q if keys is None else _normalize(np.asarray(keys, np.float64))
    num_views, batch, _ = q.shape
    losses = []
    for v in range(num_views):
        for b in range(batch):
            candidates = []  # (vector, positive weight)
            for u in range(num_views):
                for j in range(batch):
                    positive = j == b and u != v
                    if keys is None and (u, j) != (v, b):  # SimCLR: every other view row of the batch
                        candidates.append((k[u, j], 1.0 if positive else 0.0))
                    elif keys is not None and positive:  # MoCo: only the key of the other view
                        candidates.append((k[u, j], 1.0))
            for m in range(n.shape[0]):
                for j in range(batch):
                    if j == b:
                        candidates.append((n[m, j], weight))
                    elif as_negatives:
                        candidates.append((n[m, j], 0.0))
            if queue is not None:
                candidates += [(row, 0.0) for row in _normalize(np.asarray(queue, np.float64))]
            logits = np.array([q[v, b] @ vector for vector, _ in candidates]) / tau
            weights = np.array([w for _, w in candidates])
            log_probabilities = logits - np.log(np.exp(logits).sum())
            losses.append(-(weights * log_probabilities).sum() / weights.sum())
    return float(np.mean(losses))


@pytest.mark.parametrize("frame", ["simclr", "mocov2"])
@pytest.mark.parametrize("as_negatives", [True, False])
@pytest.mark.parametrize("weight, num_neighbours", [(1.0, 1), (0.5, 2), (0.0, 1)])
def test_loss_matches_a_numpy_loop(frame, as_negatives, weight, num_neighbours):
    generator = torch.Generator().manual_seed(0)
    queries = torch.randn(2, 5, 4, generator=generator, dtype=torch.float64)
    neighbours = torch.randn(num_neighbours, 5, 4, generator=generator, dtype=torch.float64)
    keys = torch.randn(2, 5, 4, generator=generator, dtype=torch.float64) if frame == "mocov2" else None
    queue = torch.randn(7, 4, generator=generator, dtype=torch.float64) if frame == "mocov2" else None
    got = spps_loss(queries, neighbours, 0.3, weight, as_negatives, keys=keys, queue=queue)
    want = numpy_spps(queries, neighbours, 0.3, weight, as_negatives, keys=keys, queue=queue)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(want, rel=1e-12)
    # lists of per-view tensors give the same value
    listed = spps_loss(list(queries), list(neighbours), 0.3, weight, as_negatives,
                       keys=None if keys is None else list(keys), queue=queue)
    assert listed.item() == pytest.approx(want, rel=1e-12)


def test_loss_with_three_views_matches_the_numpy_loop():
    generator = torch.Generator().manual_seed(1)
    queries, neighbours = torch.randn(3, 4, 6, generator=generator), torch.randn(1, 4, 6, generator=generator)
    got = spps_loss(queries, neighbours, 0.2, 0.7, True)
    assert got.item() == pytest.approx(numpy_spps(queries, neighbours, 0.2, 0.7, True), rel=1e-5)


def test_loss_by_hand_for_two_images():
    """B = 2, one neighbour view, SimCLR frame, neighbours as negatives. Anchor (view 0, image 0): candidates
    z1(0) [pos, weight 1], z0(1), z1(1), n(0) [pos, weight w], n(1); with orthonormal-ish vectors the logits are
    simple enough to write down."""
    z0 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    n = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])  # image 0's neighbour view looks like image 1 and vice versa
    tau, w = 0.5, 0.5
    # Every anchor sees the same logits up to relabelling: its other view (s=1/tau), the other image's two views
    # (0), its own neighbour (0), the other image's neighbour (1/tau).
    log_z = np.log(2 * np.exp(1 / tau) + 3 * np.exp(0.0))
    per_anchor = -(1.0 * (1 / tau - log_z) + w * (0.0 - log_z)) / (1 + w)
    assert spps_loss(torch.stack([z0, z1]), n, tau, w, True).item() == pytest.approx(per_anchor, rel=1e-6)


def test_loss_without_neighbours_is_the_base_loss():
    generator = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(6, 8, generator=generator), torch.randn(6, 8, generator=generator)
    k1, k2 = torch.randn(6, 8, generator=generator), torch.randn(6, 8, generator=generator)
    queue = torch.randn(10, 8, generator=generator)
    torch.testing.assert_close(spps_loss([z1, z2], [], 0.2), simclr_loss(z1, z2, 0.2))
    torch.testing.assert_close(spps_loss([z1, z2], [], 0.2, keys=[k1, k2], queue=queue),
                               0.5 * (moco_loss(z1, k2, queue, 0.2) + moco_loss(z2, k1, queue, 0.2)))


def test_loss_input_errors():
    z = torch.randn(2, 4, 8)
    with pytest.raises(ValueError, match="V >= 2"):
        spps_loss(z[:1], z[:1], 0.2)
    with pytest.raises(ValueError, match=r"neighbours must be \[M, 4, 8\]"):
        spps_loss(z, torch.randn(1, 3, 8), 0.2)
    with pytest.raises(ValueError, match="both keys and queue"):
        spps_loss(z, z[:1], 0.2, keys=z)
    with pytest.raises(ValueError, match="semantic_positive_weight must be >= 0"):
        spps_loss(z, z[:1], 0.2, -1.0)
    with pytest.raises(ValueError, match=r"queue must be \[K, 8\]"):
        spps_loss(z, z[:1], 0.2, keys=z, queue=torch.randn(5, 7))


# ---------------------------------------------------------------------------- the model on real images


@pytest.fixture(scope="module")
def views(sample_views) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Two strong views of 16 real CIFAR-10 images, and one strong view of a "neighbour" per image (image b's
    neighbour is image b - 1)."""
    first, second, third = sample_views(["strong", "strong", "strong"])
    return [first, second], [torch.roll(third, 1, dims=0)]


TESTER = mt.MethodTester(SPPSConfig, SPPSForPreTraining, small=SMALL)


def test_defaults_and_the_fields_the_trainer_reads():
    config = SPPSConfig()
    assert (config.base, config.tau, config.projection_hidden_size, config.projection_dim) == ("simclr", 0.2, 2048, 128)
    assert (config.semantic_positive_weight, config.neighbours_as_negatives) == (1.0, True)
    assert (config.neighbour_views, config.mining_encoder, config.mining_k, config.mining_every_n_epochs) == (
        ["strong"], None, 5, 0)
    assert (config.views, config.ema_momentum, config.queue_size) == (["strong", "strong"], 0.99, 4096)
    simclr = TESTER.model()
    assert isinstance(simclr.projector[1], torch.nn.BatchNorm1d)  # SimCLR projector: Linear, BN, ReLU, Linear
    assert simclr.teacher_pairs() == [] and not any(isinstance(m, FeatureQueue) for m in simclr.modules())
    moco = TESTER.model(base="mocov2")
    assert [type(layer).__name__ for layer in moco.projector] == ["Linear", "ReLU", "Linear"]  # MoCo v2 head
    assert moco.queue.features.shape == (64, 32) and moco.queue_keys_per_sample == 2


def test_simclr_frame_forward_is_the_loss_of_recomputed_projections(views):
    pair, neighbour = views
    model = TESTER.model(semantic_positive_weight=0.5).train()
    output = model(views=pair, neighbour_views=neighbour)
    assert output.queue_keys is None
    with torch.no_grad():  # train-mode BN, one forward per view: the same batch statistics as forward
        z = [TESTER.student_output(model, x) for x in pair]
        n = [TESTER.student_output(model, y) for y in neighbour]
    torch.testing.assert_close(output.loss.detach(), spps_loss(z, n, 0.2, 0.5, True))
    assert not torch.allclose(output.loss.detach(), spps_loss(z, n, 0.2, 0.5, False))  # the flag is read
    assert not torch.allclose(output.loss.detach(), simclr_loss(z[0], z[1], 0.2))  # the neighbour counts
    output.loss.backward()
    assert model.encoder.backbone.conv1.weight.grad.abs().sum() > 0


def test_simclr_frame_without_neighbour_views_is_plain_nt_xent(views):
    pair, _ = views
    model = TESTER.model().train()
    output = model(views=pair)
    with torch.no_grad():
        expected = simclr_loss(TESTER.student_output(model, pair[0]), TESTER.student_output(model, pair[1]), 0.2)
    torch.testing.assert_close(output.loss.detach(), expected)


def test_mocov2_frame_forward_keys_queue_and_teacher(views):
    pair, neighbour = views
    model = TESTER.model(base="mocov2", neighbours_as_negatives=False).train()
    teacher = [p for name, p in model.named_parameters() if name.startswith("teacher_")]
    assert teacher and not any(p.requires_grad for p in teacher)
    assert all(torch.equal(a, b)
               for a, b in zip(model.teacher_encoder.parameters(), model.encoder.parameters(), strict=True))
    queue_before, pointer_before = model.queue.features.clone(), model.queue.pointer.clone()
    output = model(views=pair, neighbour_views=neighbour)
    # forward reads the queue, never writes it
    assert torch.equal(model.queue.features, queue_before) and torch.equal(model.queue.pointer, pointer_before)
    with torch.no_grad():
        q = [TESTER.student_output(model, x) for x in pair]
        k = [TESTER.teacher_output(model, x) for x in pair]
        n = [TESTER.teacher_output(model, y) for y in neighbour]  # the neighbour positive is a teacher key, like MoCo's
    torch.testing.assert_close(output.loss.detach(), spps_loss(q, n, 0.2, 1.0, False, keys=k, queue=queue_before))
    # only the two views' keys are enqueued, first view first
    keys = output.queue_keys["queue"]
    assert set(output.queue_keys) == {"queue"} and keys.shape == (2 * BATCH, 32) and not keys.requires_grad
    torch.testing.assert_close(keys, torch.cat(k))
    # no neighbour views: MoCo v2's symmetric loss
    plain = model(views=pair)
    torch.testing.assert_close(plain.loss.detach(), 0.5 * (moco_loss(q[0], k[1], queue_before, 0.2)
                                                           + moco_loss(q[1], k[0], queue_before, 0.2)))

    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    output.loss.backward()
    assert all(p.grad is None for p in teacher)
    old_teacher = [p.detach().clone() for p in teacher]
    optimizer.step()
    model.momentum_update()
    students = list(model.encoder.parameters()) + list(model.projector.parameters())
    for new, old, student in zip(teacher, old_teacher, students, strict=True):
        torch.testing.assert_close(new.detach(), 0.99 * old + 0.01 * student.detach())
    model.enqueue(output.queue_keys)
    assert model.queue.pointer.item() == 2 * BATCH


def test_neighbour_views_must_match_the_batch(views):
    pair, neighbour = views
    with pytest.raises(ValueError, match="one row per image"):
        TESTER.model()(views=pair, neighbour_views=[neighbour[0][:4]])
    with pytest.raises(ValueError, match="two views"):
        TESTER.model()(views=pair[:1], neighbour_views=neighbour)


test_config_validation = mt.config_validation_test(
    SPPSConfig,
    [
        ({"base": "byol"}, ValueError, r"base must be one of \('simclr', 'mocov2'\)"),
        ({"tau": 0}, ValueError, "tau must be > 0"),
        ({"semantic_positive_weight": -0.5}, ValueError, "semantic_positive_weight must be >= 0"),
        ({"ema_momentum": 1.0}, ValueError, r"ema_momentum must be in \[0, 1\)"),
        ({"queue_size": 1}, ValueError, "queue_size must be >= 2"),
        ({"neighbour_views": []}, ValueError, "at least one view kind"),
        ({"mining_encoder": " "}, ValueError, "mining_encoder must be a folder or Hub id"),
        ({"mining_k": 0}, ValueError, "mining_k must be >= 1"),
        ({"mining_every_n_epochs": -1}, ValueError, "mining_every_n_epochs must be >= 0"),
        ({"views": ["strong"]}, ValueError, "exactly two views"),
        ({"mining_k": 2.0}, TypeError, "mining_k must be int"),
        ({"neighbours_as_negatives": "yes"}, TypeError, "neighbours_as_negatives must be bool"),
    ],
)


# ---------------------------------------------------------------------------- end to end through the real loop

RUN = [
    "--dataset_name", str(SAMPLE), "--max_train_samples", "64", "--max_eval_samples", "32",
    "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "64", "--dataloader_num_workers", "0",
    "--report_to", "none", "--knn_every_n_epochs", "0", "--warmup_epochs", "0",
]
HEADS = "small_image_stem=false,projection_hidden_size=64,projection_dim=32"


def test_mining_with_a_pretrained_folder_end_to_end_and_resume_reuses_the_cache(tmp_path, capsys):
    # 1. A BYOL folder to mine with (2 steps: any encoder of ours will do).
    byol = tmp_path / "byol"
    train(parse_args(RUN + ["--method", "byol", "--max_train_steps", "2", "--output_dir", str(byol),
                            "--config_overrides", HEADS]))
    sampler = byol / "model"

    # 2. SPPS: mined once with BYOL, re-mined with the student at epoch 1 (64 images / 16 = 4 steps per epoch).
    output_dir = tmp_path / "spps"
    spps_run = RUN + ["--method", "spps", "--max_train_steps", "5", "--checkpointing_steps", "2",
                      "--checkpoints_total_limit", "3", "--output_dir", str(output_dir), "--config_overrides",
                      f"{HEADS},mining_encoder={sampler},mining_k=2,mining_every_n_epochs=1"]
    straight = Pretrainer(parse_args(spps_run))
    results = straight.train()
    assert results["method"] == "spps" and results["global_step"] == 5
    assert capsys.readouterr().out.count("Mined 2 neighbours per image") == 2  # with BYOL, then with the student
    initial_path, student_path = mining.cache_path(output_dir, "initial"), mining.cache_path(output_dir, "epoch_1")
    assert initial_path.is_file() and student_path.is_file()
    initial = mining.load_neighbour_table(initial_path, 64, 2)
    assert initial is not None and initial.shape == (64, 2)
    assert not (initial == torch.arange(64)[:, None]).any()  # no image is its own neighbour
    with safe_open(str(initial_path), "pt") as handle:
        assert str(sampler) in handle.metadata()["source"]

    # The initial table holds the BYOL encoder's nearest neighbours (its own preprocessing, cosine similarity),
    # compared by similarity so that near-ties may come in either order.
    encoder = AutoModel.from_pretrained(sampler).eval()
    processor = AutoImageProcessor.from_pretrained(sampler)
    splits = data_lib.load_image_dataset(str(SAMPLE), max_train_samples=64, seed=42)
    images = [data_lib.decode_image(row, index=i) for i, row in enumerate(splits.train[splits.image_column])]
    with torch.no_grad():
        features = encoder(**processor(images, return_tensors="pt")).pooler_output.double().numpy()
    features = _normalize(features)
    similarity = features @ features.T
    np.fill_diagonal(similarity, -np.inf)
    best = -np.sort(-similarity, axis=1)[:, :2]
    mined = np.take_along_axis(similarity, initial.numpy(), axis=1)
    np.testing.assert_allclose(mined, best, atol=1e-4)

    # The dataset ends on the student's table: every item's neighbour is one of its row.
    student_table = mining.load_neighbour_table(student_path, 64, 2)
    assert not (student_table == torch.arange(64)[:, None]).any()
    for index in range(0, 64, 9):
        assert straight.train_dataset[index]["neighbour_index"] in student_table[index].tolist()

    # 3. Resume from step 4 (the end of epoch 0): both tables come from the cache (the initial one for epoch 0,
    # the student's for epoch 1), nothing is mined again, and the run ends exactly where the uninterrupted one did.
    stamps = {path: path.stat().st_mtime_ns for path in (initial_path, student_path)}

    capsys.readouterr()
    resumed = train(parse_args(spps_run + ["--resume_from_checkpoint", str(output_dir / "checkpoints" / "step_4")]))
    assert resumed["global_step"] == 5
    assert resumed["final_loss"] == results["final_loss"]
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
    assert "Mined" not in capsys.readouterr().out  # the trainer announces every mining it does


def test_channels_last_reaches_the_neighbour_views(tmp_path):
    """--channels_last converts the neighbour views as well as the views: what the model's forward receives, seen by
    a hook. (Without mining every image is its own neighbour, which is enough here. Equal training in both layouts
    is tested on MNN in test_training.py; float32 channels-last convolutions on CPU round differently, so short runs
    of other methods drift apart by more than a tight tolerance.)"""
    args = parse_args(RUN + ["--method", "spps", "--max_train_steps", "2", "--channels_last", "--output_dir",
                             str(tmp_path), "--config_overrides", HEADS])
    trainer = Pretrainer(args)
    layouts = []

    def record_layouts(module, args, kwargs):
        layouts.append({name: [view.is_contiguous(memory_format=torch.channels_last) for view in kwargs[name]]
                        for name in ("views", "neighbour_views") if name in kwargs})

    trainer.model.register_forward_pre_hook(record_layouts, with_kwargs=True)
    trainer.train()
    assert [sorted(layout) for layout in layouts] == [["neighbour_views", "views"]] * 2
    assert all(all(flags) for layout in layouts for flags in layout.values())
