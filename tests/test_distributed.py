import json
import os
import time

import pytest
import torch

from torch_geometric_mgvae.cli import main
from torch_geometric_mgvae.experiments.distributed import (
    DistributedGraphSampler,
    Parallel,
    select_device,
)
from torch_geometric_mgvae.experiments.options import UsageError
from torch_geometric_mgvae.experiments.state import STATE_FILE

from .conftest import random_graph, spawn_ranks

WORLD = 2


def test_select_device():
    assert select_device('cpu') == torch.device('cpu')
    auto = select_device('auto')
    if torch.cuda.is_available():
        assert auto.type == 'cuda'
    else:
        assert auto.type in ('mps', 'cpu')
    with pytest.raises(UsageError, match='--device'):
        select_device('tpu')
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match='no CUDA device'):
            select_device('cuda')


def _epoch(n, batch, world, epoch=1):
    out = []
    for rank in range(world):
        s = DistributedGraphSampler(list(range(n)), batch, world, rank,
                                    seed=3)
        s.set_epoch(epoch)
        out.append((list(s), s.step_counts()))
    return out


@pytest.mark.parametrize('n,batch,world', [(10, 6, 1), (10, 6, 2),
                                           (10, 6, 3), (7, 6, 3), (12, 4, 2)])
def test_sampler_visits_every_graph_once_and_keeps_the_global_batch(
        n, batch, world):
    parts = _epoch(n, batch, world)
    # Every graph once per epoch (stand-ins have weight 0):
    seen = []
    for idx, counts in parts:
        lb = batch // world
        pos = 0
        for real, _ in counts:
            take = max(real, 1)
            seen += idx[pos:pos + real]
            pos += take
        assert pos == len(idx) and lb >= max(c for c, _ in counts)
    assert sorted(seen) == list(range(n))
    # The global batches do not depend on the number of processes:
    (single, _), = _epoch(n, batch, 1)
    glob = [sorted(single[k:k + batch]) for k in range(0, n, batch)]
    steps = len(parts[0][1])
    assert all(len(c) == steps for _, c in parts)  # same steps everywhere
    for k in range(steps):
        got = []
        for idx, counts in parts:
            start = sum(max(c, 1) for c, _ in counts[:k])
            got += idx[start:start + counts[k][0]]
        assert sorted(got) == glob[k]
        assert {c[k][1] for _, c in parts} == {len(glob[k])}
    # Another epoch, another order:
    assert _epoch(n, batch, 1, epoch=2)[0][0] != single or n < 3


def test_sampler_needs_a_batch_the_processes_divide():
    with pytest.raises(UsageError, match='multiple of the 3 processes'):
        DistributedGraphSampler(list(range(10)), 4, 3, 0)


def _graphs(num=12):
    from torch_geometric_mgvae.transforms import FixedHierarchy
    fixed = FixedHierarchy('spectral', [2, 1])
    return [fixed(random_graph(6 + i % 4, 0.5, 3, seed=i)) for i in
            range(num)]


def _model():
    from torch_geometric_mgvae import MGN
    torch.manual_seed(0)
    return MGN(3, 8, 4, num_clusters=[2, 1], clustering='fixed').double()


def _train(par, graphs, epochs, out=None, resume=False, nan_rank=None,
           interrupt_at=None):
    r"""3 steps per epoch (12 graphs, global batch 4) of a deterministic
    MGN (fixed clusters, no noise) inside a TrainingSession; SIGINT to
    rank 1 alone during epoch :obj:`interrupt_at`."""
    import signal

    from torch_geometric_mgvae.experiments.state import (
        TrainingSession,
        training_state,
    )
    from torch_geometric_mgvae.experiments.train import (
        LossModule,
        mgn_loss_terms,
        run_epoch,
    )

    def loss(model, batch, generator=None):
        terms = mgn_loss_terms(model, batch, generator)
        if par.rank == nan_rank:
            terms['balanced_cut'] = terms['balanced_cut'] * float('nan')
        return terms

    model = _model().to(par.device)
    net = par.wrap(LossModule(model, loss))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    loader = par.loader(graphs, 4, seed=0)
    gen = par.generator(0)
    def step(epoch):
        if epoch == interrupt_at and par.rank == 1:
            signal.raise_signal(signal.SIGINT)
        run_epoch(net, loader, opt, None, gen, epoch=epoch)

    with TrainingSession(out, every=0, resume=resume) as session:
        resumed = session.restore('', model, opt, generators={'g': gen})
        session.train('', step, epochs, lambda: training_state(
            model, opt, {}, generators={'g': gen}), resumed)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _worker(rank, folder, port):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD), MASTER_ADDR='127.0.0.1',
                      MASTER_PORT=str(port), OMP_NUM_THREADS='1')
    torch.set_num_threads(1)
    from torch_geometric_mgvae.experiments.distributed import gather_objects
    from torch_geometric_mgvae.experiments.io import write_json
    from torch_geometric_mgvae.experiments.state import Interrupted
    from torch_geometric_mgvae.experiments.train import NonFiniteError
    report = {}
    with Parallel('cpu') as par:
        graphs = _graphs()
        # 3 steps (one epoch), then 3 epochs against a run that a SIGINT
        # to rank 1 stops after epoch 1 (saved by both), then resumed:
        params = _train(par, graphs, 1)
        torch.save(params, os.path.join(folder, f'rank{rank}.pt'))
        full = _train(par, graphs, 3)
        run = os.path.join(folder, 'run')
        try:
            _train(par, graphs, 3, out=run, interrupt_at=1)
            report['interrupted'] = 'no'
        except Interrupted as e:
            report['interrupted'] = str(e)
        resumed = _train(par, graphs, 3, out=run, resume=True)
        report['resume_equal'] = all(torch.equal(full[k], resumed[k])
                                     for k in full)
        # A NaN on rank 1 only stops both, before any backward pass:
        try:
            _train(par, graphs, 1, nan_rank=1)
            report['nan'] = 'no error'
        except NonFiniteError as e:
            report['nan'] = str(e)
        # Only rank 0 writes:
        try:
            write_json(os.path.join(folder, f'written_by_{rank}.json'), {})
            report['write'] = 'ok'
        except RuntimeError as e:
            report['write'] = str(e)
        reports = gather_objects(report)
    if rank == 0:
        with open(os.path.join(folder, 'report.json'), 'w') as f:
            json.dump(reports, f)


def test_two_processes_equal_one_and_each_other(tmp_path):
    spawn_ranks(_worker, tmp_path, WORLD,
                results=['rank0.pt', 'rank1.pt', 'report.json'])
    a = torch.load(tmp_path / 'rank0.pt', weights_only=True)
    b = torch.load(tmp_path / 'rank1.pt', weights_only=True)
    with Parallel('cpu') as par:  # one process, the same global batches
        one = _train(par, _graphs(), 1)
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bitwise, both processes
        assert a[k].dtype == torch.float64
        assert torch.allclose(a[k], one[k], rtol=0, atol=1e-6), k
    assert any(not torch.equal(one[k], _model().state_dict()[k]) for k in a)
    reports = json.loads((tmp_path / 'report.json').read_text())
    for r in reports:
        assert r['resume_equal']
        assert 'after epoch 1' in r['interrupted']
        assert "non-finite loss term 'balanced_cut (process 1)'" in r['nan']
    assert reports[0]['write'] == 'ok'
    assert 'only rank 0 writes' in reports[1]['write']
    assert sorted(os.listdir(tmp_path)) == [
        'rank0.pt', 'rank1.pt', 'report.json', 'run', 'written_by_0.json']
    state = torch.load(tmp_path / 'run' / STATE_FILE, weights_only=True)
    assert state['world_size'] == 2 and len(state['current']['rng_ranks']) \
        == 2


def test_nproc_relaunches_through_torchrun_and_rank_0_writes(tmp_path):
    out = tmp_path / 'demo'
    argv = ['demo', '--epochs', '2', '--num-graphs', '20', '--num-samples',
            '4', '--hidden', '8', '--latent', '4', '--no-progress',
            '--batch-size', '8', '--out', str(out), '--device', 'cpu']
    assert main(argv + ['--nproc', '2']) == 0
    assert sorted(os.listdir(out)) == ['demo.json', 'generated_vs_test.png',
                                       'loss.png', 'mgvae.pt', STATE_FILE]
    state = torch.load(out / STATE_FILE, weights_only=True)
    assert state['world_size'] == 2
    # --resume needs as many processes:
    assert main(argv + ['--resume']) == 2


def test_nproc_checks_the_global_batch_first(tmp_path, capsys):
    out = tmp_path / 'x'
    assert main(['demo', '--batch-size', '5', '--nproc', '2', '--out',
                 str(out)]) == 2
    assert 'multiple of the 2 processes' in capsys.readouterr().err
    assert not out.exists()


# Property prediction ######################################################

def _regressor():
    r"""A small regressor without batch normalisation (the CPU has no
    SyncBatchNorm: with it, every process normalises over its own share
    of the batch, and one process cannot equal two)."""
    from torch_geometric_mgvae.models.property import (
        HierarchicalRegressor,
        make_pools,
    )
    torch.manual_seed(0)
    model = HierarchicalRegressor(3, 4, 8, 2, make_pools('topk', 8, [0.5]),
                                  num_layers=1)
    model.norms = torch.nn.ModuleList(
        [torch.nn.Identity() for _ in model.norms])
    return model


def _fit(par):
    from torch_geometric.loader import DataLoader

    from torch_geometric_mgvae.experiments.properties import fit_regressor

    from .test_properties import _molecules
    graphs = _molecules(48)
    y = torch.cat([g.y for g in graphs[:32]]).double()
    model = _regressor().to(par.device)
    loaders = dict(train=par.loader(graphs[:32], 8, seed=0),
                   val=DataLoader(graphs[32:40], batch_size=8),
                   test=DataLoader(graphs[40:], batch_size=8))
    fit = fit_regressor(model, loaders, y.mean(0), y.std(0), 1, 1e-2,
                        aux_weight=0.1, parallel=par)
    params = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return params, fit


def _properties_worker(rank, folder, port):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD), MASTER_ADDR='127.0.0.1',
                      MASTER_PORT=str(port), OMP_NUM_THREADS='1')
    torch.set_num_threads(1)
    with Parallel('cpu') as par:
        params, fit = _fit(par)  # 4 steps of a global batch of 8
    torch.save(dict(params=params, test_mae=fit['test_mae'],
                    state=fit['state'] is not None),
               os.path.join(folder, f'rank{rank}.pt'))


def test_properties_fit_two_processes_equal_one(tmp_path):
    spawn_ranks(_properties_worker, tmp_path, WORLD,
                results=['rank0.pt', 'rank1.pt'])
    a = torch.load(tmp_path / 'rank0.pt', weights_only=True)
    b = torch.load(tmp_path / 'rank1.pt', weights_only=True)
    with Parallel('cpu') as par:
        one, fit = _fit(par)
    for k in one:
        assert torch.equal(a['params'][k], b['params'][k]), k
        assert torch.allclose(a['params'][k], one[k], rtol=0,
                              atol=1e-6), k
    assert any(not torch.equal(one[k], _regressor().state_dict()[k])
               for k in one)
    # Rank 0 evaluates; every process gets its result:
    assert a['test_mae'] == b['test_mae']
    assert torch.allclose(torch.tensor(a['test_mae']),
                          torch.tensor(fit['test_mae']), atol=1e-5)
    assert a['state'] and not b['state']


@pytest.fixture(scope='module')
def zinc_root(tmp_path_factory):
    r"""The first 40 molecules of the shared ZINC-12k file (24 / 8 / 8)."""
    from .conftest import SHARED
    from .datasets.test_molecules import _read_rows, _write_rows
    src = os.path.join(SHARED, 'zinc12k_benchgnn')
    if not os.path.isdir(src):
        pytest.skip('shared ZINC-12k folder not available')
    root = tmp_path_factory.mktemp('zinc')
    header, rows = _read_rows(os.path.join(src, 'smiles_score.csv'), 40)
    _write_rows(os.path.join(root, 'raw', 'smiles_score.csv'), header, rows)
    index = [[str(i), str(24 + i) if i < 8 else '',
              str(32 + i) if i < 8 else ''] for i in range(24)]
    _write_rows(os.path.join(root, 'raw', 'indexes_train_val_test.csv'),
                ['train', 'val', 'test'], index)
    return str(root)


def test_properties_nproc_rank_0_writes_and_resumes(tmp_path, zinc_root):
    out = tmp_path / 'props'
    argv = ['properties', '--dataset', 'zinc', '--root', zinc_root,
            '--methods', 'mgn_fixed', '--targets', 'logp', '--seeds', '1',
            '--epochs', '2', '--batch-size', '8', '--hidden', '8',
            '--layers', '1', '--clusters', '2', '--no-progress', '--out',
            str(out), '--device', 'cpu']
    assert main(argv + ['--nproc', '2']) == 0
    assert sorted(os.listdir(out)) == [
        'checkpoints', 'fixed_spectral.pt', 'parity_zinc_logp.png',
        'property_prediction.json', STATE_FILE]
    assert os.listdir(out / 'checkpoints') == ['mgn_fixed_logp_seed0.pt']
    recs = json.loads((out / 'property_prediction.json').read_text())
    assert {r['metric'] for r in recs} == {'MAE', 'epoch_seconds'}
    assert [r['processes'] for r in recs if r['metric'] ==
            'epoch_seconds'] == [2]
    state = torch.load(out / STATE_FILE, weights_only=True)
    assert state['world_size'] == 2
    assert main(argv + ['--resume']) == 2  # needs as many processes
    # A finished run is not repeated:
    assert main(argv + ['--resume', '--nproc', '2']) == 0
    again = json.loads((out / 'property_prediction.json').read_text())
    assert [r['value'] for r in again if r['metric'] == 'MAE'] == \
        [r['value'] for r in recs if r['metric'] == 'MAE']


def test_properties_unsupervised_nproc(tmp_path):
    from .datasets.test_molecules import small_qm9_root
    root = small_qm9_root(tmp_path, 80)  # 64 / 8 / 8
    out = tmp_path / 'unsup'
    # The autoencoder trains in both processes; rank 0 alone computes the
    # features and fits the MLPs (the other waits) and writes.
    assert main(['properties', '--dataset', 'qm9', '--mode', 'unsupervised',
                 '--root', str(root), '--targets', 'gap,mu', '--seeds', '1',
                 '--ae-train', '32', '--ae-epochs', '2', '--mlp-epochs', '1',
                 '--hidden', '8', '--latent', '4', '--clusters', '2',
                 '--batch-size', '8', '--mlp-batch-size', '16',
                 '--no-progress', '--out', str(out), '--device', 'cpu',
                 '--nproc', '2']) == 0
    assert sorted(os.listdir(out)) == [
        'mgvae_autoencoder_seed0.pt', 'parity_qm9_unsup_gap.png',
        'parity_qm9_unsup_mu.png', 'property_prediction.json', STATE_FILE]
    recs = json.loads((out / 'property_prediction.json').read_text())
    trained = [r for r in recs if r['metric'] == 'train_seconds']
    assert [r['processes'] for r in trained] == [2]
    assert len([r for r in recs if r['metric'] == 'MAE']) == 10


# Images ###################################################################

IMAGES_TINY = ['--num-train', '48', '--batch-size', '16', '--hidden', '4',
               '--layers', '1', '--latent', '4', '--decoder-channels', '4',
               '--conv-channels', '4', '--no-fid', '--no-progress',
               '--device', 'cpu']


@pytest.fixture(scope='module')
def mnist_small(tmp_path_factory):
    r"""The shared MNIST raw files, processed once (train and test)."""
    from torch_geometric_mgvae.datasets import MNISTGraphs

    from .conftest import stage_mnist
    root = stage_mnist(tmp_path_factory.mktemp('mnist'))
    MNISTGraphs(str(root), 'train')
    MNISTGraphs(str(root), 'test')
    return str(root)


def _images_worker(rank, folder, port, root):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD), MASTER_ADDR='127.0.0.1',
                      MASTER_PORT=str(port), OMP_NUM_THREADS='1')
    torch.set_num_threads(1)
    from torch_geometric_mgvae.cli import build_parser
    from torch_geometric_mgvae.experiments import images
    from torch_geometric_mgvae.experiments.state import TrainingSession
    args = images.resolve_args(build_parser().parse_args(
        ['images', '--root', root, '--epochs', '1', '--out',
         os.path.join(folder, 'out')] + IMAGES_TINY))
    params = {}
    with Parallel('cpu') as par:
        train, _ = images.load_data(args)
        for name in ('mgvae', 'conv'):  # 3 steps of a global batch of 16
            model = images.train_model(args, name, train, TrainingSession(),
                                       lambda *a: None, par)['model']
            # (the running statistics of batch normalisation are each
            # process's own after the last step; DDP copies rank 0's at the
            # start of every forward pass)
            params[name] = {k: v.detach().clone()
                            for k, v in model.named_parameters()}
    torch.save(params, os.path.join(folder, f'rank{rank}.pt'))


def test_images_two_processes_train_the_same_parameters(tmp_path,
                                                        mnist_small):
    # Both models draw reparameterisation noise per process and normalise
    # their decoders' batches per process (the CPU has no SyncBatchNorm),
    # so one process cannot equal two; the two hold the same parameters.
    spawn_ranks(_images_worker, tmp_path, WORLD, mnist_small,
                results=['rank0.pt', 'rank1.pt'])
    a = torch.load(tmp_path / 'rank0.pt', weights_only=True)
    b = torch.load(tmp_path / 'rank1.pt', weights_only=True)
    for name in ('mgvae', 'conv'):
        for k, v in a[name].items():
            assert torch.equal(v, b[name][k]), (name, k)
    # Only rank 0 wrote the checkpoints:
    assert sorted(os.listdir(tmp_path / 'out')) == ['conv.pt', 'mgvae.pt']


def test_images_nproc_rank_0_writes_and_resumes(tmp_path, mnist_small):
    out = tmp_path / 'images'
    argv = ['images', '--root', mnist_small, '--epochs', '1', '--models',
            'conv', '--out', str(out)] + IMAGES_TINY
    assert main(argv + ['--nproc', '2']) == 0
    assert sorted(os.listdir(out)) == [
        'conv.pt', 'image_generation.json', 'reconstruction_conv.png',
        'samples_conv.png', 'summary.json', STATE_FILE]
    recs = json.loads((out / 'image_generation.json').read_text())
    assert {r['processes'] for r in recs} == {2}
    assert torch.load(out / STATE_FILE, weights_only=True)[
        'world_size'] == 2
    assert main(argv + ['--resume']) == 2  # needs as many processes
    assert main(argv + ['--resume', '--nproc', '2']) == 0  # not repeated
    again = json.loads((out / 'image_generation.json').read_text())
    assert [r['value'] for r in again] == [r['value'] for r in recs]


@pytest.mark.parametrize('device', ['cpu', 'auto'])
def test_device_option(tmp_path, device):
    out = tmp_path / device
    assert main(['demo', '--epochs', '1', '--num-graphs', '10',
                 '--num-samples', '4', '--hidden', '8', '--latent', '4',
                 '--no-progress', '--out', str(out), '--device',
                 device]) == 0
    result = json.loads((out / 'demo.json').read_text())
    assert result['device'] == str(select_device(device))


def test_unavailable_device_is_a_one_line_usage_error(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip('CUDA is available here')
    assert main(['demo', '--device', 'cuda', '--out',
                 str(tmp_path / 'x')]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('mgvae: error: --device cuda: no CUDA device')
    assert '\n' not in err


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_training_and_sampling(tmp_path):
    out = tmp_path / 'cuda'
    assert main(['demo', '--epochs', '2', '--num-graphs', '10',
                 '--num-samples', '4', '--hidden', '8', '--latent', '4',
                 '--no-progress', '--out', str(out), '--device',
                 'cuda']) == 0
    assert json.loads((out / 'demo.json').read_text())['device'] == 'cuda:0'
    from torch_geometric_mgvae.experiments.train import LossModule, run_epoch
    with Parallel('cuda') as par:
        model = _model().to(par.device)
        loader = par.loader(_graphs(), 4)
        stats = run_epoch(LossModule(model), loader,
                          torch.optim.Adam(model.parameters()),
                          generator=par.generator(0), epoch=1)
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())


@pytest.mark.parametrize('balanced', [False, True])
def test_pair_loss_shards_average_to_the_whole_loss(balanced):
    from torch_geometric.utils import erdos_renyi_graph

    from torch_geometric_mgvae.nn.decoder import (
        InnerProductDecoder,
        pair_recon_loss,
    )
    torch.manual_seed(0)
    z = torch.randn(40, 4, dtype=torch.float64)
    ei = erdos_renyi_graph(40, 0.2)
    group = torch.randint(0, 5, (40, ))
    dec = InnerProductDecoder().double()
    whole = pair_recon_loss(z, ei, group, 5, dec, balanced=balanced)
    for world in (2, 3):  # dense blocks: exact
        parts = [pair_recon_loss(z, ei, group, 5, dec, balanced=balanced,
                                 shard=(r, world)) for r in range(world)]
        assert torch.allclose(sum(parts) / world, whole)
    with pytest.raises(ValueError, match='shard'):
        pair_recon_loss(z, ei, group, 5, dec, shard=(2, 2))
    # Sampled non-edges: the same estimator, the positives split exactly.
    torch.manual_seed(0)
    pos_only = pair_recon_loss(z, ei, group, 5, dec, max_dense_pairs=0,
                               balanced=balanced, num_neg_samples=1,
                               generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(pos_only)


def test_reprs():
    from torch_geometric_mgvae.experiments.train import LossModule
    s = DistributedGraphSampler(list(range(10)), 4, 2, 1)
    assert str(s) == ('DistributedGraphSampler(10, batch_size=4, '
                      'num_replicas=2, rank=1)')
    assert str(Parallel('cpu')) == ('Parallel(device=cpu, world_size=1, '
                                    'rank=0)')
    assert str(LossModule(torch.nn.Linear(1, 1))).endswith(
        'loss=mgn_loss_terms)')


def _ending_worker(rank, folder, port, mode):
    if mode == 'raise':  # rank 1 fails, rank 0 would wait for ever
        if rank == 1:
            raise ValueError('a bug in the code under test')
        time.sleep(600)
    if mode == 'abort after writing':
        with open(os.path.join(folder, f'rank{rank}.txt'), 'w') as f:
            f.write('done')
    if rank == 0:
        os.abort()


@pytest.mark.parametrize('mode,error', [
    ('abort after writing', None),
    ('abort before writing', r"exit codes \[-6, 0\] .* missing: \['rank0"),
    ('raise', 'rank 1 failed:(.|\n)*ValueError: a bug in the code'),
])
def test_spawn_ranks_tolerates_only_a_crash_after_the_results(
        tmp_path, mode, error):
    results = ['rank0.txt', 'rank1.txt']
    if error is None:
        spawn_ranks(_ending_worker, tmp_path, 2, mode, results=results)
        return
    t0 = time.monotonic()
    with pytest.raises(AssertionError, match=error):
        spawn_ranks(_ending_worker, tmp_path, 2, mode, results=results)
    assert time.monotonic() - t0 < 60  # the waiting rank 0 was stopped
