"""MT-DNN's task sampler (Liu et al. 2019, Algorithm 1): pack each task's training set into mini-batches,
merge the batches of every task and shuffle them; each step takes the next batch, so a batch holds one
task only and tasks come up in proportion to their number of batches (their size).
Within a task, batches are length-bucketed (`length_batches`): little padding, still random."""

import numpy as np

from distillery.data.batching import length_batches


def task_batches(lengths: dict[str, np.ndarray], batch_size: int, rng: np.random.Generator,
                 chunk: int = 50) -> list[tuple[str, np.ndarray]]:
    """One epoch: (task, row indices of that task) per batch; every row of every task exactly once."""
    batches = []
    for task in sorted(lengths):
        if len(lengths[task]):
            batches += [(task, idx) for idx in length_batches(lengths[task], batch_size=batch_size, rng=rng, chunk=chunk)]
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]
