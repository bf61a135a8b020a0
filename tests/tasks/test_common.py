import torch
from torch.utils.data import RandomSampler

from kanbench.tasks.common import ResumableShuffle


def test_resumable_shuffle_draws_random_sampler_s_order_from_any_epoch():
    reference = RandomSampler(range(37), generator=torch.Generator().manual_seed(5))
    epochs = [list(reference) for _ in range(6)]
    straight = ResumableShuffle(37, 5)
    assert [list(straight) for _ in range(6)] == epochs
    for epoch in range(6):
        resumed = ResumableShuffle(37, 5)
        resumed.set_epoch(epoch)                    # what Lightning does on resuming there
        assert list(resumed) == epochs[epoch]
        resumed.set_epoch(epoch + 1)                # and on the next epoch: no replay needed
        if epoch + 1 < 6:
            assert list(resumed) == epochs[epoch + 1]
