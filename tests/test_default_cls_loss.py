"""CMLTNet's default classification loss (LDAM-DRW on single-label data, cb-focal on multi-label
data) is written into every run's config, and a run saved with a null cls_loss by an earlier version
(whose default was balanced softmax) is read as what it trained with: resumed, loaded and built on."""
import json

import pytest
from test_training import tiny_config

from pycmlt.errors import ConfigMismatchError
from pycmlt.training import load_model
from pycmlt.training.checkpoint import saved_train_config
from pycmlt.training.loop import train
from pycmlt.training.recipes import explicit_cls_loss, saved_cls_loss
from pycmlt.training.stage_two import stage_one_logit_scale


def test_the_default_is_resolved_for_the_data_and_saved(tmp_path):
    config = tiny_config(tmp_path, method="cmltnet", epochs=1)
    train(config)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["cls_loss"] == "ldam-drw"
    model, meta = load_model(tmp_path / "run")
    assert model.config.classifier == "cosine" and meta["train_config"]["cls_loss"] == "ldam-drw"
    train(config, resume=True)  # the unresolved config resumes its own run
    assert explicit_cls_loss(config, multi_label=True).cls_loss == "cb-focal"
    assert explicit_cls_loss(config.replace(method="ce"), multi_label=False).cls_loss is None


def test_a_run_saved_with_a_null_cls_loss_means_balanced_softmax(tmp_path):
    config = tiny_config(tmp_path, method="cmltnet", cls_loss="balanced-softmax", epochs=1)
    train(config)
    run = tmp_path / "run"
    stored = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**stored, "cls_loss": None}))  # as an earlier version saved it
    train(config, resume=True)                    # the same loss, spelled out: resumes
    (run / "config.json").write_text(json.dumps({**stored, "cls_loss": None}))
    with pytest.raises(ConfigMismatchError, match="cls_loss: 'balanced-softmax' -> 'ldam-drw'"):
        train(config.replace(cls_loss=None), resume=True)   # today's default is another loss
    _, meta = load_model(run)
    legacy = {**meta, "train_config": {**meta["train_config"], "cls_loss": None}}
    assert saved_train_config(legacy).cls_loss == "balanced-softmax"
    assert saved_train_config({**legacy, "multi_label": True}).cls_loss == "cb-focal"
    assert stage_one_logit_scale(legacy, multi_label=False) == 1.0     # not LDAM's x30
    assert saved_cls_loss({"method": "ce", "cls_loss": None}, False) == {"method": "ce", "cls_loss": None}
