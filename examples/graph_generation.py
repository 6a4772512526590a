# The graph generation experiment of Hy & Kondor's MGVAE (appendix D.5):
# community-small / ego-small, GDSS split (test = the first 20%), squared
# MMD of degree, clustering and orbit statistics of 1024 sampled graphs vs
# the test graphs, with the GraphRNN/GDSS and GRAN kernels, next to the
# training set (floor) and a matched Erdos-Renyi baseline (ceiling).
#
#   python examples/graph_generation.py --dataset community-small \
#       --root data/community_small --epochs 300 --seeds 3
#
# The raw GDSS file (community_small.edgelists.json or .pkl) lies in
# ROOT/raw. `mgvae generate` runs the same experiment with a progress bar.
import argparse
import os

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import torch  # noqa: E402

from torch_geometric_mgvae.experiments.generation import (  # noqa: E402
    GenerationExperiment,
    add_arguments,
    resolve_args,
)

parser = argparse.ArgumentParser(
    description='MGVAE graph generation (paper D.5): MMD vs the test set')
add_arguments(parser)
args = resolve_args(parser.parse_args())
torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))

# Data (GDSS split), structural node features, the training-set and
# Erdos-Renyi references and the MGVAE configuration of the paper:
experiment = GenerationExperiment(args)


def train() -> float:
    stats = experiment.train_epoch()  # Adam over the training graphs
    return stats['loss']


@torch.no_grad()
def test() -> dict:
    # fit_num_nodes(train), sample --num-samples graphs with a seeded
    # generator, MMD vs the test graphs (and the same for Erdos-Renyi).
    return experiment.test()


for seed in range(args.seeds):
    experiment.start_seed(seed)  # a fresh MGVAE, optimizer, loader
    for epoch in range(1, args.epochs + 1):
        loss = train()
        print(f'Seed: {seed}, Epoch: {epoch:03d}, Loss: {loss:.4f}')
    mmd = test()
    print(f'Seed: {seed}, ' + ', '.join(f'{k}: {v:.4f}'
                                         for k, v in mmd.items()))

# Mean +- std over seeds; records in --results (default
# OUT/graph_generation.json; this dataset's rows replaced), pictures and
# curves in --out.
experiment.finish()
