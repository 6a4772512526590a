r"""Link prediction in a process group: a non-finite edge score found by
rank 0's evaluation stops every process (the others would otherwise wait in
the next step's collectives)."""
import json
import os

import torch

from torch_geometric_mgvae.experiments import link_prediction as lp
from torch_geometric_mgvae.experiments.distributed import Parallel

from .conftest import spawn_ranks
from .test_link_prediction import sbm_graph


class NaNScoreVGAE(lp.VGAEBaseline):
    r"""A VGAE whose edge scores turn NaN from the second evaluation on."""
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.evaluations = 0

    def scorer(self, train):
        self.evaluations += 1
        score = super().scorer(train)
        if self.evaluations < 2:
            return score
        return lambda pairs: score(pairs) * float('nan')


def _worker(rank, folder, port):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE='2',
                      MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
                      OMP_NUM_THREADS='1')
    torch.set_num_threads(1)
    from torch_geometric_mgvae.experiments.train import NonFiniteError
    train, val, test = lp.split_edges(sbm_graph(), seed=0)
    with Parallel('cpu') as par:
        torch.manual_seed(0)
        try:
            lp.train_model(NaNScoreVGAE(3, 8), train, val, test, epochs=20,
                           lr=0.01, eval_every=2, parallel=par)
            result = 'finished'
        except NonFiniteError as e:
            result = str(e)
    with open(os.path.join(folder, f'rank{rank}.json'), 'w') as f:
        json.dump(result, f)


def test_a_nan_score_at_evaluation_stops_every_process(tmp_path):
    spawn_ranks(_worker, tmp_path, 2, results=['rank0.json', 'rank1.json'])
    r0 = json.loads((tmp_path / 'rank0.json').read_text())
    r1 = json.loads((tmp_path / 'rank1.json').read_text())
    assert "non-finite edge score 'evaluated pairs'" in r0, r0
    assert "non-finite edge score 'evaluated pairs on rank 0'" in r1, r1
