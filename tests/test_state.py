import argparse
import os
import random
import signal

import numpy as np
import pytest
import torch

from torch_geometric_mgvae.experiments.options import UsageError
from torch_geometric_mgvae.experiments.state import (
    STATE_FILE,
    Interrupted,
    TrainingSession,
    plain,
    rng_state,
    set_rng_state,
    training_state,
)
from torch_geometric_mgvae.experiments.train import (
    NonFiniteError,
    check_finite_grads,
    check_finite_loss,
)


def draws(gen):
    return (torch.rand(3).tolist(), random.random(), np.random.rand(),
            torch.rand(2, generator=gen).tolist())


def test_random_states_round_trip():
    gen = torch.Generator().manual_seed(1)
    state = rng_state({'g': gen})
    first = draws(gen)
    set_rng_state(state, {'g': gen})
    assert draws(gen) == first


def test_plain_values_only():
    ns = argparse.Namespace(lr=0.1, clusters=[2, 1], func=print)
    assert plain(ns) == {'lr': 0.1, 'clusters': [2, 1]}
    with pytest.raises(TypeError, match='function'):
        plain({'f': print})


def test_non_finite_checks_name_the_term_and_parameter():
    check_finite_loss({'a': torch.tensor(1.0)})
    with pytest.raises(NonFiniteError, match="loss term 'kl'"):
        check_finite_loss({'a': torch.tensor(1.0),
                           'kl': torch.tensor(float('inf'))})
    lin = torch.nn.Linear(2, 1)
    lin(torch.tensor([[1.0, float('nan')]])).sum().backward()
    with pytest.raises(NonFiniteError, match="gradient 'weight'"):
        check_finite_grads(lin)


def _tiny(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 1)
    return model, torch.optim.Adam(model.parameters(), lr=0.1)


def _fit(session, model, opt, epochs, key='k', on_epoch=None, stop=None):
    gen = torch.Generator().manual_seed(0)
    history = []
    resumed = session.restore(key, model, opt, generators={'g': gen})
    if resumed:
        history = resumed['history']

    def step(epoch):
        if on_epoch:
            on_epoch(epoch)
        opt.zero_grad()
        x = torch.randn(8, 3) + torch.rand(8, 1, generator=gen)
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
        history.append(loss.item())

    session.train(key, step, epochs, lambda: training_state(
        model, opt, {'in_features': 3, 'out_features': 1},
        generators={'g': gen}, history=history), resumed,
        stop=None if stop is None else lambda: stop(history))
    return history


def test_session_interrupt_and_resume_equal_an_uninterrupted_run(tmp_path):
    args = argparse.Namespace(out=str(tmp_path / 'a'), lr=0.1)
    model, opt = _tiny()
    with TrainingSession(args.out, args, every=2) as s:
        full = _fit(s, model, opt, 7)

    def interrupt(epoch):
        if epoch == 3:
            signal.raise_signal(signal.SIGTERM)

    out = str(tmp_path / 'b')
    args.out = out
    m1, o1 = _tiny()
    with pytest.raises(Interrupted) as info:
        with TrainingSession(out, args, every=5) as s:
            _fit(s, m1, o1, 7, on_epoch=interrupt)
    assert info.value.epoch == 3 and 'SIGTERM' in str(info.value)
    saved = torch.load(f'{out}/{STATE_FILE}', weights_only=True)
    assert saved['current']['epoch'] == 3
    m2, o2 = _tiny(seed=5)  # other initial weights: all come from the file
    with TrainingSession(out, args, every=5, resume=True) as s:
        rest = _fit(s, m2, o2, 7)
    assert rest == full
    for a, b in zip(model.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    # Other options are refused, and so is a missing state:
    with pytest.raises(UsageError, match='--lr 0.1'):
        TrainingSession(out, argparse.Namespace(out=out, lr=0.2),
                        resume=True)
    with pytest.raises(UsageError, match='no training state'):
        TrainingSession(str(tmp_path / 'c'), args, resume=True)
    # ... except the resume-free ones, e.g. sampling only (refinement):
    TrainingSession(out, argparse.Namespace(out=out, lr=0.1, refine_steps=1),
                    resume=True)
    TrainingSession(out, argparse.Namespace(out=out, lr=0.1,
                                            decode_rounds=4), resume=True)
    # An option added since the state was saved matches when it is off:
    TrainingSession(out, argparse.Namespace(out=out, lr=0.1, aromatic=False),
                    resume=True)
    with pytest.raises(UsageError, match='--aromatic None'):
        TrainingSession(out, argparse.Namespace(out=out, lr=0.1,
                                                aromatic=True), resume=True)
    TrainingSession(out, argparse.Namespace(out=out, lr=0.1,
                                            distance_context=0), resume=True)
    with pytest.raises(UsageError, match='--distance-context None'):
        TrainingSession(out, argparse.Namespace(out=out, lr=0.1,
                                                distance_context=6),
                        resume=True)


def test_a_signal_outside_an_epoch_stops_at_once(tmp_path):
    # (A shell starts background jobs with SIGINT ignored: compare with the
    # handler found here, not with Python's default.)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted, match='no training state saved'):
        with TrainingSession(str(tmp_path), argparse.Namespace()):
            signal.raise_signal(signal.SIGINT)
    # The handlers are restored afterwards:
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize('content', [
    {'format': 1}, {'format': 1, 'args': {}, 'done': [], 'current': None},
    [1, 2], 'junk bytes'])
def test_resume_refuses_a_state_of_another_layout(tmp_path, content):
    path = tmp_path / STATE_FILE
    if isinstance(content, str):
        path.write_text(content)
    else:
        torch.save(content, str(path))
    args = argparse.Namespace(out=str(tmp_path), lr=0.1)
    with pytest.raises(UsageError, match=STATE_FILE):
        TrainingSession(str(tmp_path), args, resume=True)


@pytest.mark.parametrize('damage', ['other-shapes', 'no-rng'])
def test_resume_of_a_state_that_does_not_fit_the_model(tmp_path, damage):
    args = argparse.Namespace(out=str(tmp_path), lr=0.1)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    current = dict(training_state(model, opt, dict(in_features=3)), key='m')
    if damage == 'other-shapes':
        current['model'] = torch.nn.Linear(4, 2).state_dict()
    else:
        current.pop('rng')
    TrainingSession(str(tmp_path), args).save(current)
    session = TrainingSession(str(tmp_path), args, resume=True)
    with pytest.raises(UsageError, match="does not fit this run's model"):
        session.restore('m', model, opt)


def test_a_budget_option_raised_on_resume_trains_on(tmp_path):
    # A command with one training run declares its budget options: a
    # finished run resumed with more epochs continues where it stopped and
    # ends like an uninterrupted run of the larger budget.
    out = str(tmp_path / 'a')
    args = argparse.Namespace(out=out, lr=0.1, epochs=3)
    full = _fit(TrainingSession(str(tmp_path / 'full'), args), *_tiny(), 5)
    model, opt = _tiny()
    with TrainingSession(out, args) as s:
        first = _fit(s, model, opt, 3)
    assert len(first) == 3
    more = argparse.Namespace(out=out, lr=0.1, epochs=5)
    with pytest.raises(UsageError, match='--epochs 3'):  # not declared
        TrainingSession(out, more, resume=True)
    m2, o2 = _tiny(seed=5)
    with TrainingSession(out, more, resume=True, budget=('epochs', )) as s:
        assert _fit(s, m2, o2, 5) == full
    # the same budget again, or a smaller one: nothing more is trained
    for epochs in (5, 4):
        m3, o3 = _tiny(seed=6)
        again = argparse.Namespace(out=out, lr=0.1, epochs=epochs)
        with TrainingSession(out, again, resume=True,
                             budget=('epochs', )) as s:
            assert _fit(s, m3, o3, epochs) == full
    # other options are still refused
    with pytest.raises(UsageError, match='--lr 0.1'):
        TrainingSession(out, argparse.Namespace(out=out, lr=0.2, epochs=5),
                        resume=True, budget=('epochs', ))


def test_a_raised_time_budget_trains_on(tmp_path):
    # A run finished by its stop condition (a time budget: here a number
    # of steps in its history) trains on only when the condition allows.
    out = str(tmp_path)
    args = argparse.Namespace(out=out, max_minutes=2)
    with TrainingSession(out, args) as s:
        first = _fit(s, *_tiny(), 10, stop=lambda h: len(h) >= 2)
    assert len(first) == 2
    for limit, trained in ((2, 2), (4, 4)):
        args = argparse.Namespace(out=out, max_minutes=limit)
        with TrainingSession(out, args, resume=True,
                             budget=('max_minutes', )) as s:
            h = _fit(s, *_tiny(seed=3), 10, stop=lambda h: len(h) >= limit)
        assert len(h) == trained


def test_a_signal_during_a_state_write_waits_for_the_file(tmp_path):
    # A signal's exception raised inside torch.save's writer would surface
    # as a RuntimeError of its C++ stream writer (the probe
    # demo-sigint-twice saw one): the handler waits until the file is
    # complete (in place, with the usual permissions), then interrupts.
    from torch_geometric_mgvae.experiments.io import atomic_write

    path = str(tmp_path / 'f.pt')

    def write(f):
        signal.raise_signal(signal.SIGINT)
        torch.save({'w': torch.arange(3)}, f)

    with pytest.raises(Interrupted, match='SIGINT'):
        with TrainingSession(str(tmp_path), argparse.Namespace()):
            atomic_write(path, write)
    assert torch.equal(torch.load(path, weights_only=True)['w'],
                       torch.arange(3))
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ['f.pt']
    # Outside a session the write is unaffected, and nothing stays pending:
    atomic_write(path, lambda f: f.write(b'x'))
    assert open(path, 'rb').read() == b'x'
