"""Training building blocks: config files, CLI flags, sampling, augmentation, atomic checkpoints."""
import json

import pytest
import torch

from pycmlt.cli import build_parser
from pycmlt.cli.config_args import config_from_args
from pycmlt.training import TrainConfig
from pycmlt.training import checkpoint as ckpt


def test_config_round_trip_yaml_and_json(tmp_path):
    cfg = TrainConfig(method="cmltnet", epochs=3, word_topk=(1, 3), data_options={"imbalance": 50})
    cfg.save(tmp_path / "c.json")
    assert TrainConfig.from_file(tmp_path / "c.json") == cfg
    (tmp_path / "c.yaml").write_text("method: ldam-drw\nepochs: 4\nbatch_size: 16\n")
    y = TrainConfig.from_file(tmp_path / "c.yaml")
    assert (y.method, y.epochs, y.batch_size) == ("ldam-drw", 4, 16)
    (tmp_path / "bad.json").write_text(json.dumps({"methd": "ce"}))
    with pytest.raises(ValueError, match="unknown config keys: \\['methd'\\]"):
        TrainConfig.from_file(tmp_path / "bad.json")


def test_config_validation():
    with pytest.raises(ValueError, match="method must be one of"):
        TrainConfig(method="svm")
    with pytest.raises(ValueError, match="second stage"):
        TrainConfig(method="crt")


def test_cli_flags_override_config_file(tmp_path):
    (tmp_path / "c.yaml").write_text("method: cmltnet\nepochs: 9\n")
    args = build_parser().parse_args(["train", "--config", str(tmp_path / "c.yaml"), "--epochs", "2",
                                      "--no-align", "--out", "x", "--word-topk", "1", "2"])
    cfg = config_from_args(args)
    assert (cfg.method, cfg.epochs, cfg.use_align, cfg.use_infer, cfg.out_dir, cfg.word_topk) == \
        ("cmltnet", 2, False, True, "x", (1, 2))


def test_atomic_save_keeps_previous_checkpoint_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    ckpt.atomic_save({"format": ckpt.FORMAT, "epoch": 1}, path)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        ckpt.atomic_save({"format": ckpt.FORMAT, "epoch": 2}, path)
    monkeypatch.undo()
    assert ckpt.load(path)["epoch"] == 1
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable pycmlt checkpoint"):
        ckpt.load(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError):
        ckpt.load(tmp_path / "missing.pt")
    assert not (tmp_path / "checkpoint.pt.tmp").exists()


def test_compare_variants_map_to_config_changes():
    from pycmlt.training.variants import parse_variant

    assert parse_variant("ce") == ("ce", {})
    assert parse_variant("cmltnet:no-infer") == ("cmltnet", {"use_infer": False, "use_fuse": False})
    assert parse_variant("cmltnet:minilm") == ("cmltnet", {"word_vectors": "minilm"})
    assert parse_variant("cmltnet:ldam-drw") == ("cmltnet", {"cls_loss": "ldam-drw"})
    with pytest.raises(ValueError, match="unknown variant"):
        parse_variant("ce:no-align")
    with pytest.raises(ValueError, match="unknown method"):
        parse_variant("svm")


def test_cmltnet_classifier_and_semantic_scale_follow_the_classification_loss():
    from pycmlt.training.model_setup import model_config

    linear = model_config(TrainConfig(method="cmltnet", cls_loss="balanced-softmax"), num_classes=5, vocab_size=7)
    assert linear.classifier == "linear" and linear.semantic_scale == 10.0
    # LDAM (the default) scales cosine logits by ldam_scale: the semantic cosine scores start on that scale too
    for config in (TrainConfig(method="cmltnet"), TrainConfig(method="cmltnet", cls_loss="ldam-drw")):
        cosine = model_config(config, num_classes=5, vocab_size=7)
        assert cosine.classifier == "cosine" and cosine.semantic_scale == 1.0 and not cosine.semantic_head
    # on multi-label data the default is cb-focal, with its linear classifier
    multi = model_config(TrainConfig(method="cmltnet"), num_classes=5, vocab_size=7, multi_label=True)
    assert multi.classifier == "linear" and multi.semantic_scale == 10.0
    plain = model_config(TrainConfig(method="ce"), num_classes=5, vocab_size=7)
    assert not (plain.use_align or plain.use_infer or plain.semantic_head) and plain.vocab_size == 0
