"""SimCLR-specific behaviour on real CIFAR-10 images: the loss forward computes, no teacher, no queue, config checks.

The generic test over all methods (training on real images, Hub folder) lives elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import method_tester as mt
import pytest
import torch

from hf_contrastive.losses import cross_view_infonce_loss, simclr_loss
from hf_contrastive.models.configuration_simclr import SimCLRConfig
from hf_contrastive.models.modeling_simclr import SimCLRForPreTraining

BATCH = 16
SMALL = {"projection_hidden_size": 64, "projection_dim": 32}


TESTER = mt.MethodTester(SimCLRConfig, SimCLRForPreTraining, small=SMALL)
views = mt.views_fixture(["strong", "strong"])  # two strong views of 16 real CIFAR-10 training images


def test_defaults_are_the_papers_definition_at_the_benchmark_sizes():
    config = SimCLRConfig()
    assert (config.projection_hidden_size, config.projection_dim, config.tau) == (2048, 128, 0.2)
    assert (config.negatives, config.projection_output_batch_norm) == ("all_views", False)
    assert config.views == ["strong", "strong"]
    model = SimCLRForPreTraining(SimCLRConfig(**SMALL))
    linear, batch_norm = model.projector[0], model.projector[1]
    assert isinstance(batch_norm, torch.nn.BatchNorm1d) and linear.bias is None  # Linear(no bias) -> BN -> ReLU -> Linear
    assert (linear.in_features, linear.out_features, model.projector[-1].out_features) == (512, 64, 32)


def test_loss_is_nt_xent_of_both_views_projections(views):
    model = TESTER.model().train()
    output = model(views=views)
    # Recompute the projections independently (train-mode BN: each view normalised with its own batch statistics,
    # exactly as forward does, so the outputs are identical).
    with torch.no_grad():
        z1 = model.projector(model.encoder(views[0]).pooler_output)
        z2 = model.projector(model.encoder(views[1]).pooler_output)
    assert output.loss.dtype == torch.float32 and output.loss.dim() == 0
    torch.testing.assert_close(output.loss.detach(), simclr_loss(z1, z2, 0.2))
    # tau is read from the config
    assert not torch.allclose(output.loss.detach(), simclr_loss(z1, z2, 0.5))
    # A random guess over the 2B - 1 candidates gives log(2B - 1): an untrained net is about there.
    assert abs(output.loss.item() - torch.log(torch.tensor(2.0 * BATCH - 1)).item()) < 1.5


def test_loss_is_symmetric_in_the_two_views(views):
    model = TESTER.model().eval()
    with torch.no_grad():
        torch.testing.assert_close(model(views=views).loss, model(views=views[::-1]).loss)


def test_no_teacher_no_queue_and_gradients_reach_encoder_and_projector(views):
    mt.check_no_teacher_no_queue_and_gradients_reach_encoder_and_projector(TESTER.model().train(), views)


def test_wrong_number_of_views_is_rejected(views):
    with pytest.raises(ValueError, match="two views"):
        TESTER.model()(views=views[:1])


test_config_validation = mt.config_validation_test(
    SimCLRConfig,
    [
        ({"tau": 0.0}, ValueError, "tau must be > 0"),
        ({"tau": -0.1}, ValueError, "tau must be > 0"),
        ({"views": ["strong"]}, ValueError, "exactly two views"),
        ({"projection_dim": 0}, ValueError, "must be >= 1"),
        ({"tau": "0.2"}, TypeError, "tau must be float"),
    ],
)


def test_config_has_no_generation_parameter_names():
    # transformers 5 drops/rejects generation-parameter names such as temperature/top_k in configs.
    assert not {"temperature", "top_k", "top_p"} & set(SimCLRConfig().to_dict())


def test_the_benchmarks_definition_and_the_cifar10_recipe_that_uses_it(views):
    """pc-cp/Benchmark-Methods-For-MNN's SimCLR: cross-view InfoNCE in both directions (no same-view negatives) and a
    projector ending Linear (no bias) + BatchNorm; simclr_cifar10.yaml, which sits beside its numbers, uses both."""
    import yaml

    recipe = yaml.safe_load((Path(__file__).resolve().parents[1] / "recipes/configs/simclr_cifar10.yaml").read_text())
    assert recipe["model"]["negatives"] == "other_view" and recipe["model"]["projection_output_batch_norm"] is True
    model = TESTER.model(negatives="other_view", projection_output_batch_norm=True).train()
    assert [type(layer).__name__ for layer in model.projector] == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert model.projector[3].bias is None and model.projector[0].bias is None
    output = model(views=views)
    with torch.no_grad():
        z1 = model.projector(model.encoder(views[0]).pooler_output)
        z2 = model.projector(model.encoder(views[1]).pooler_output)
    torch.testing.assert_close(output.loss.detach(), cross_view_infonce_loss(z1, z2, 0.2))
    assert not torch.allclose(output.loss.detach(), simclr_loss(z1, z2, 0.2))
    with pytest.raises(ValueError, match="negatives must be one of"):
        SimCLRConfig(negatives="same_view")
