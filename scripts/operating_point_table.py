#!/usr/bin/env python
"""Combine a fast-student run and a paper-sampler run of `evaluate_spic.py` into the operating-point table.

    python scripts/operating_point_table.py --fast_run OUT/fast --paper_run OUT/paper --output_dir docs/camvid

Writes `operating_point.md`, `operating_point.json` and the rate-vs-mIoU / rate-vs-PSNR plots, and prints the table
with the goals checked (see `spic_diffusers.evaluation.operating_point`). `--paper_card` / `--fast_card` (a model
folder) put the table into that model's card, with its own rows (paper sampler / fast student) in the model-index.
"""

import argparse
import sys

from spic_diffusers.evaluation import EvaluationError
from spic_diffusers.evaluation.operating_point import FAST, PAPER, markdown, update_card, write_table
from spic_diffusers.hub import ModelCardError

COMMAND = "bash scripts/evaluate_operating_point.sh camvid_spic OUT"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast_run", required=True,
                        help="evaluate_spic.py folder of the fast student (with the baselines)")
    parser.add_argument("--paper_run", default=None, help="evaluate_spic.py folder of the paper sampler (a subset)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--paper_card", default=None, help="model folder whose card gets the table (paper sampler)")
    parser.add_argument("--fast_card", default=None, help="model folder whose card gets the table (fast student)")
    args = parser.parse_args(argv)
    try:
        table = write_table(args.fast_run, args.paper_run, args.output_dir)
        for card, candidate in ((args.paper_card, PAPER), (args.fast_card, FAST)):
            if card is not None:
                update_card(card, table, candidate, COMMAND)
    except (EvaluationError, ModelCardError) as error:
        print(f"operating_point_table.py: {error}", file=sys.stderr)
        return 2
    print(markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
