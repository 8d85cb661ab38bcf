"""ganx.data.sampling: the shuffle order resumes mid-epoch, and a sample's random draws depend on the seed, epoch and
index only."""

import torch

from ganx.data.sampling import ResumableShuffleSampler


def test_sampler_resumes_mid_epoch_with_the_same_order():
    full = ResumableShuffleSampler(20, batch_size=4, seed=3)
    epochs = [list(full) for _ in range(3)]
    assert sorted(epochs[0]) == list(range(20)) and epochs[0] != epochs[1]
    resumed = ResumableShuffleSampler(20, batch_size=4, seed=3)
    resumed.resume_at(7)  # 5 batches per epoch: epoch 1, after 2 batches
    assert list(resumed) == epochs[1][8:] and list(resumed) == epochs[2]


def test_seeded_draws_depend_on_seed_epoch_and_index_only_and_leave_the_callers_rng_alone():
    from ganx.data.sampling import ResumableShuffleSampler, SeededDraws

    class Draws(torch.utils.data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, index):
            return index, torch.rand(3)  # what a random crop or flip draws

    draws = SeededDraws(Draws(), seed=1)
    keys = list(ResumableShuffleSampler(5, batch_size=5, seed=1, keyed=True).__iter__())
    assert sorted(keys) == list(range(5))  # epoch 0
    torch.manual_seed(0)
    state = torch.get_rng_state()
    index, first = draws[7]  # epoch 1, index 2
    assert index == 2 and torch.equal(torch.get_rng_state(), state)
    torch.rand(10)  # another process state: the item is the same
    assert torch.equal(draws[7][1], first)
    assert not torch.equal(draws[2][1], first) and not torch.equal(SeededDraws(Draws(), seed=2)[7][1], first)
    resumed = ResumableShuffleSampler(5, batch_size=1, seed=1, keyed=True)
    resumed.resume_at(7)  # epoch 1 after 2 batches: keys 5..9
    assert all(5 <= key < 10 for key in resumed) and len(list(resumed)) == 5  # then epoch 2 in full
