"""Data-parallel jobs under torchrun: each rank takes a disjoint slice; rank 0 finishes.

`run` splits examples (each rank writes its own shards), `probe` splits layers (rank 0
gathers the fits and writes the grid). Without WORLD_SIZE (or with 1) nothing is set up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        return cls(rank=dist.get_rank(), world=dist.get_world_size())

    def mine(self, indices) -> list[int]:
        """This rank's share of the example indices (every world-th one)."""
        return [i for i in indices if i % self.world == self.rank]

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def broadcast_error(self, error: str | None) -> str | None:
        """Share rank 0's set-up failure so every rank stops with the same line."""
        if self.world == 1:
            return error
        import torch.distributed as dist

        box = [error]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value):
        """Every rank's value, in rank order, on rank 0 (None on the others)."""
        if self.world == 1:
            return [value]
        import torch.distributed as dist

        box = [None] * self.world if self.rank == 0 else None
        dist.gather_object(value, box, dst=0)
        return box

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
