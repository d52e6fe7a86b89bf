"""Scale-out through torch.distributed, as launched by `torchrun` or `accelerate launch`.

Each process labels every WORLD_SIZE-th batch and writes its own store parts; after a barrier,
rank 0 merges them into the stage output. Without a launcher this is a single process.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        """This process's GPU where CUDA is there (the one `init_world` selected), else the CPU."""
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


def init_world() -> World:
    """Join the process group a launcher set up (gloo on CPU, nccl on GPU); else a world of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return World(rank=dist.get_rank(), size=dist.get_world_size())


def finish(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
