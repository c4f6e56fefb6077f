#!/usr/bin/env python
"""Evaluate a SPIC pipeline on a dataset split: rate, mIoU, FID/KID, PSNR, SSIM against baselines.

Example::

    python scripts/evaluate_spic.py --model path/to/spic-pipeline --dataset path/to/dataset \
        --split validation --num_samples 100 --segmenter path/to/cityscapes-segformer \
        --sweep_qualities 30,35,40 --sweep_schedulers ddpm:100,ddim:50,dpmsolver++:20 --output_dir eval/

See ``spic_diffusers.evaluation`` for what is computed and written.
"""

from spic_diffusers.evaluation import main


if __name__ == "__main__":
    main()
