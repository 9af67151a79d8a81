import numpy as np
import pytest

import reasonact
from reasonact.data import load_dataset
from reasonact.steering import distance_to_path, remaining_path


def test_remaining_path_starts_at_the_nearest_point_ahead():
    path = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]])
    r = remaining_path(path, np.array([4.0, 2.0]))
    np.testing.assert_allclose(r, [[4, 0], [10, 0], [10, 10]])
    r = remaining_path(path, np.array([12.0, 6.0]))
    np.testing.assert_allclose(r, [[10, 6], [10, 10]])


def test_distance_to_path_is_point_to_segment():
    path = np.array([[0.0, 0.0], [10.0, 0.0]])
    np.testing.assert_allclose(distance_to_path(np.array([[5.0, 3.0], [13.0, 4.0], [-3.0, 0.0]]), path), [3, 5, 3])


@pytest.mark.sim
def test_steered_prediction_returns_the_given_trace_and_a_chunk(tiny_dataset, tmp_path):
    run = reasonact.train(tiny_dataset, tmp_path / "run", config="debug", steps=3, batch_size=4, reasoning="trace",
                          steer_prob=0.5, progress=False)
    policy = reasonact.load_policy(run)
    obs = load_dataset(tiny_dataset)[3]
    drawn = np.array([[10.0, 30.0], [14.0, 26.0], [20.0, 22.0], [26.0, 20.0], [30.0, 18.0], [34.0, 15.0], [38.0, 12.0]])
    p = policy.predict(obs, trace=drawn)
    assert p.trace_given and p.actions.shape == (8, 4)
    from reasonact.tokenizers import resample_trace

    expected = resample_trace(drawn, 5)
    assert np.abs(p.trace - expected).max() <= 48 / 256  # within one coordinate bin
    np.testing.assert_allclose(p.trace[0], drawn[0], atol=48 / 256)
    np.testing.assert_allclose(p.trace[-1], drawn[-1], atol=48 / 256)
    own = policy.predict(obs)
    assert not own.trace_given
    # Steered, where to go comes from the trace alone: the task part of the state (the goal) is not read.
    moved = dict(obs, state=obs["state"] + np.array([0, 0, 0, 0, 0.3, -0.2, 0.1], np.float32))
    np.testing.assert_array_equal(policy.predict(moved, trace=drawn).actions, p.actions)


def test_steered_samples_keep_only_proprioception():
    import torch

    from reasonact.data.pipeline import hide_task_state

    state = torch.arange(14, dtype=torch.float32).reshape(2, 7) + 1
    out = hide_task_state(state, torch.tensor([True, False]))
    assert out[0, :4].tolist() == [1, 2, 3, 4] and out[0, 4:].abs().sum() == 0
    assert torch.equal(out[1], state[1])
    assert hide_task_state(state)[:, 4:].abs().sum() == 0
