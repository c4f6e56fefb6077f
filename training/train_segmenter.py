#!/usr/bin/env python
"""Train the segmentation network SPIC is measured with: a small SegFormer from scratch, in Cityscapes train ids.

The dataset is any SPIC dataset (`image`, `semantic_map` in train ids, 255 = ignore), e.g. CamVid converted with
`scripts/convert_camvid_to_datasets.py`. The model predicts the train ids present in the training maps; the
weights with the best validation mIoU are saved in --output_dir with their image processor, ready for
`spic_diffusers.codec.Segmenter.from_pretrained` and `--segmenter` everywhere. All options: --help.

    accelerate launch training/train_segmenter.py --dataset_name_or_path data/camvid_spic --output_dir segmenter
    python training/train_segmenter.py --cpu --dataset_name_or_path data/camvid_spic --output_dir segmenter

Resume: add `--resume_from_checkpoint latest` (same --output_dir).
"""

import sys

from spic_diffusers.training.segmenter import cli

if __name__ == "__main__":
    sys.exit(cli())
