"""cRT (and the other second stages) on another stage-one variant than ce: `crt@cmltnet` retrains the
classifier on CMLTNet's frozen fused features with the extra heads' temperatures, in compare too."""
import json
import math

import pytest
import torch
from test_compare_paired import compare_args
from test_training import tiny_config

import pycmlt
from pycmlt.cli import main
from pycmlt.training import load_model
from pycmlt.training.variants import parse_variant, stage_one_variant, uses_words, variant_folder


def test_variant_names_say_what_a_second_stage_builds_on():
    assert parse_variant("crt@cmltnet") == ("crt", {})
    assert stage_one_variant("crt@cmltnet:ldam-drw") == "cmltnet:ldam-drw"
    assert stage_one_variant("crt") == "ce" and stage_one_variant("tau-norm@ldam-drw") == "ldam-drw"
    assert stage_one_variant("cmltnet:no-align") is None and stage_one_variant("ldam-drw") is None
    assert variant_folder("crt@cmltnet:no-fuse") == "crt-on-cmltnet-no-fuse"
    assert uses_words("crt@cmltnet:no-fuse") and uses_words("cmltnet:no-align") and uses_words("cmltnet")
    assert not any(map(uses_words, ("crt@ldam-drw", "crt", "ldam-drw", "logit-adjust")))
    for bad, message in [("ce@cmltnet", "only .* build on a stage-one model"),
                         ("crt:no-align@cmltnet", "unknown variant"),
                         ("crt@crt", "not a stage-one method"), ("crt@logit-adjust", "not a stage-one method"),
                         ("crt@tau-norm@ce", "not a stage-one method"), ("crt@svm", "unknown method")]:
        with pytest.raises(ValueError, match=message):
            parse_variant(bad)


def test_crt_on_a_cmltnet_retrains_the_classifier_and_the_head_temperatures(tmp_path):
    stage1 = pycmlt.train(tiny_config(tmp_path, method="cmltnet", cls_loss="ldam-drw", semantic_head=True,
                                      out_dir=str(tmp_path / "s1")))
    # lr 1e-12: the temperatures stay where cRT starts them, stage one's times ldam_scale
    still = pycmlt.train(tiny_config(tmp_path, method="crt", stage1=str(stage1.out_dir), crt_epochs=1, lr=1e-12,
                                     out_dir=str(tmp_path / "still")))
    crt = pycmlt.train(tiny_config(tmp_path, method="crt", stage1=str(stage1.out_dir), crt_epochs=2,
                                   out_dir=str(tmp_path / "crt")))
    base, _ = load_model(stage1.out_dir)
    started, _ = load_model(still.out_dir)
    retrained, _ = load_model(crt.out_dir)
    shift = math.log(30.0)  # the default ldam_scale stage one's loss applied to every logit
    assert started.semantic_log_scale.item() == pytest.approx(base.semantic_log_scale.item() + shift, abs=1e-6)
    assert retrained.semantic_log_scale.item() != pytest.approx(started.semantic_log_scale.item(), abs=1e-6)
    frozen = [k for k in base.state_dict() if not k.startswith("classifier.") and k != "semantic_log_scale"]
    for key in frozen:  # features, fusion, word modules and prototypes: stage one's
        torch.testing.assert_close(retrained.state_dict()[key], base.state_dict()[key], rtol=0, atol=0)
    assert retrained.classifier.weight.shape == base.classifier.weight.shape  # on the fused features
    assert retrained.config.cosine_scale == 16.0  # the new classifier takes cRT's loss (plain CE) scale


def test_compare_builds_a_second_stage_on_the_named_variant(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(compare_args(out, "--methods", "cmltnet", "crt@cmltnet", "--crt-epochs", "1",
                             "--reference", "cmltnet", "--bootstrap", "200")) == 0
    crt_config = json.loads((out / "crt-on-cmltnet" / "seed0" / "config.json").read_text())
    assert crt_config["method"] == "crt" and crt_config["stage1"] == str(out / "cmltnet" / "seed0")
    assert not (out / "ce").exists()  # the stage one is the named variant's run, reused
    summary = json.loads((out / "compare.json").read_text())
    assert set(summary["mean"]) == {"cmltnet", "crt@cmltnet"} and "crt@cmltnet" in summary["paired"]
