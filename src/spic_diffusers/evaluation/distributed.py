"""Sharding an evaluation over the processes of `accelerate launch`, and gathering the results on the main one.

Without a launcher (or with one process) everything runs here and gathering is the identity. Ranks take
every ``world``-th image, so the shares differ by at most one image; per-image seeds come from image ids,
so a record does not depend on which rank made it.
"""

from __future__ import annotations

import os
from typing import Any


class Shard:
    """This process's place among the launched processes."""

    def __init__(self, device: str = "cpu"):
        self.state = None
        self.rank, self.world = 0, 1
        self.device = device
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from accelerate import PartialState

            self.state = PartialState(cpu=device == "cpu")
            self.rank, self.world = self.state.process_index, self.state.num_processes
            if device.startswith("cuda"):
                self.device = str(self.state.device)  # one GPU per process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def indices(self, count: int) -> range:
        return range(self.rank, count, self.world)

    def wait(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()

    def gather(self, items: list[Any]) -> list[Any]:
        """Every process's ``items``, concatenated in rank order (on every process)."""
        if self.state is None:
            return list(items)
        from accelerate.utils import gather_object

        return gather_object(list(items))
