"""The table of methods (pycmlt.training.recipes.RECIPES) is complete and consistent, and what the
rest of the training package derives from it: config choices, losses, classifiers, evaluation."""
import pytest
import torch

from pycmlt.training import METHODS, TrainConfig
from pycmlt.training.config import RULES
from pycmlt.training.model_evaluation import evaluation_logits
from pycmlt.training.model_setup import model_config
from pycmlt.training.objective import CLASSIFICATION_LOSSES, ClassificationLoss, CMLTNetObjective, drw_start
from pycmlt.training.recipes import (
    LOSS_METHODS,
    RECIPES,
    SECOND_STAGE_KINDS,
    builds_on_stage_one,
    classification_recipe,
)


@pytest.mark.parametrize("method", list(RECIPES))
def test_every_recipe_is_complete(method):
    recipe = RECIPES[method]
    assert recipe.stage in (1, 2) and recipe.classifier in RULES["classifier"].choices
    assert recipe.loss in CLASSIFICATION_LOSSES
    if recipe.stage == 2:
        assert recipe.stage_one is not None and RECIPES[recipe.stage_one].stage == 1
    if recipe.stage_one is not None:
        assert recipe.second_stage in SECOND_STAGE_KINDS
    if recipe.uses_words:
        assert all(m in LOSS_METHODS for m in recipe.default_cls_loss)


def test_config_choices_come_from_the_table():
    assert METHODS == tuple(RECIPES) == RULES["method"].choices
    assert RULES["cls_loss"].choices == LOSS_METHODS == ("ce", "cb-focal", "ldam-drw", "balanced-softmax",
                                                         "logit-adjust")
    for method in METHODS:
        needs_stage1 = RECIPES[method].stage == 2
        if needs_stage1:
            with pytest.raises(ValueError, match="second stage"):
                TrainConfig(method=method)
        config = TrainConfig(method=method, stage1="runs/ce" if needs_stage1 else None)
        assert builds_on_stage_one(config) == needs_stage1


def test_logit_adjust_builds_on_a_stage_one_model_only_when_given_one():
    assert not builds_on_stage_one(TrainConfig(method="logit-adjust"))
    assert builds_on_stage_one(TrainConfig(method="logit-adjust", stage1="runs/ce"))


@pytest.mark.parametrize("config, multi_label, recipe", [
    (TrainConfig(method="cmltnet"), False, "ldam-drw"),
    (TrainConfig(method="cmltnet"), True, "cb-focal"),
    (TrainConfig(method="cmltnet", cls_loss="logit-adjust"), False, "logit-adjust"),
    (TrainConfig(method="crt", stage1="runs/ce"), False, "crt"),
    (TrainConfig(method="ldam-drw"), False, "ldam-drw"),
])
def test_classification_recipe(config, multi_label, recipe):
    assert classification_recipe(config, multi_label) == recipe
    assert ClassificationLoss(config, torch.tensor([5.0, 3.0, 1.0]), multi_label).recipe == recipe


def test_single_label_recipes_refuse_multi_label_data():
    with pytest.raises(ValueError, match="'ldam-drw' is defined for single-label data only.*'ce', 'cb-focal'"):
        ClassificationLoss(TrainConfig(method="ldam-drw"), torch.tensor([5.0, 1.0]), multi_label=True)


def test_post_hoc_adjustment_and_classifier_follow_the_recipe():
    counts = torch.tensor([8.0, 2.0])
    logits = torch.zeros(1, 2)
    adjusted = evaluation_logits(TrainConfig(method="cmltnet", cls_loss="logit-adjust"), logits, counts)
    torch.testing.assert_close(adjusted, -torch.log(torch.tensor([[0.8, 0.2]])))
    assert torch.equal(evaluation_logits(TrainConfig(method="balanced-softmax"), logits, counts), logits)
    assert model_config(TrainConfig(method="ldam-drw"), 2, 0).classifier == "cosine"
    assert model_config(TrainConfig(method="ldam-drw", classifier="linear"), 2, 0).classifier == "linear"


def test_objective_update_drives_the_deferred_reweighting_schedule():
    from pycmlt.models import CMLTNet

    config = TrainConfig(method="ldam-drw", epochs=10, backbone="resnet20")
    counts = torch.tensor([50.0, 5.0, 1.0])
    objective = CMLTNetObjective(config, CMLTNet(model_config(config, 3, 0)), counts, None, multi_label=False)
    logits, labels = torch.tensor([[0.3, 0.1, 0.0], [0.0, 0.2, 0.1]]), torch.tensor([0, 2])

    def loss_at(epoch):
        objective.update(epoch)
        return float(objective.classification(logits, labels))

    before = loss_at(drw_start(config) - 1)
    assert loss_at(0) == before  # uniform class weights until DRW starts
    assert loss_at(drw_start(config)) != before
