"""Datasets for long-tailed classification with descriptional words.

    from pycmlt.data import build_dataset, collate
    train = build_dataset("emoji-lt", "train", image_size=32, seed=0)
    test = build_dataset("emoji-lt", "test", image_size=32, seed=0, vocab=train.vocab)
    loader = torch.utils.data.DataLoader(train, batch_size=128, shuffle=True, collate_fn=collate)
    for batch in loader:                       # Batch: images, labels, word_ids (-1 padded), word_mask, indices
        batch = batch.to(device)

Every dataset has classes, vocab, multi_label, class_counts (training counts), split_counts,
word_counts, meta, bad_images; see pycmlt.data.dataset for the full interface.
"""
from pycmlt.data.dataset import ArrayDataset, FileDataset, LTDataset
from pycmlt.data.images import BadImageLog, ImageLoadError, load_image
from pycmlt.data.registry import DATASETS, build_dataset, build_datasets, register_dataset
from pycmlt.data.sample import WORD_PAD, BadSample, Batch, Sample, collate
from pycmlt.data.samplers import ClassBalancedSampler
from pycmlt.data.stats import format_summary, imbalance_ratio, shot_group_of_classes, shot_groups, summarize
from pycmlt.data.transforms import augment_batch, eval_transform, train_transform
from pycmlt.data.vocab import Vocabulary

__all__ = [
    "ArrayDataset", "FileDataset", "LTDataset", "BadImageLog", "ImageLoadError", "load_image", "DATASETS",
    "build_dataset", "build_datasets", "register_dataset", "WORD_PAD", "BadSample", "Batch", "Sample", "collate",
    "ClassBalancedSampler", "format_summary", "imbalance_ratio", "shot_group_of_classes", "shot_groups",
    "summarize", "augment_batch", "eval_transform", "train_transform", "Vocabulary",
]
