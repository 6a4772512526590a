# The molecule generation experiment of Hy & Kondor's MGVAE (Sec. 5.2,
# appendix D.2): train on 10,000 molecules of QM9 (GDSS test split) or
# ZINC-12k, sample 5,000, and report validity without and with the valence
# correction, uniqueness, novelty, QED and the FCD to the test set, with a
# picture of generated molecules (QED legends) and a latent interpolation.
#
#   python examples/molecule_generation.py --dataset qm9 \
#       --decoder all-at-once --root data/qm9 --epochs 20
#
# The raw files lie in ROOT/raw (or are copied there from --data).
# `mgvae molecules` runs the same experiment with a progress bar.
import argparse
import os

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import torch  # noqa: E402

from torch_geometric_mgvae.experiments.molecules import (  # noqa: E402
    MoleculeExperiment,
    add_arguments,
    resolve_args,
)

parser = argparse.ArgumentParser(
    description='MGVAE molecule generation (paper D.2)')
add_arguments(parser)
args = resolve_args(parser.parse_args())
torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))

# 10,000 random training molecules, the test split and the SMILES of the
# whole training split (for novelty):
experiment = MoleculeExperiment(args)
# A fresh MoleculeMGVAE (second-order encoders, Gaussian-MRF posteriors,
# learnable prior, joint atom/bond decoder) or AutoregressiveMGN:
experiment.start()


def train() -> float:
    stats = experiment.train_epoch()  # Adam over the training molecules
    return stats['loss']


@torch.no_grad()
def test() -> dict:
    # Sample --num-samples molecules (seeded); metrics without and with
    # the valence correction, and for training molecules as a reference.
    return experiment.test()


for epoch in range(1, args.epochs + 1):
    loss = train()
    print(f'Epoch: {epoch:03d}, Loss: {loss:.4f}')
    if experiment.out_of_time():
        break
results = test()
for setting, res in results.items():
    print(f'{setting}: validity {res["validity"]:.4f}, uniqueness '
          f'{res["uniqueness"]:.4f}, novelty {res["novelty"]:.4f}')

# Records in --results (default OUT/molecule_generation.json; this
# dataset's and generator's rows replaced), pictures, SMILES and the
# checkpoint in --out.
experiment.finish()
