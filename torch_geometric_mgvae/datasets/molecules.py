r"""Molecule benchmarks: QM9, ZINC-12k and MOSES as
:class:`~torch_geometric.data.InMemoryDataset` objects.

Every molecule is converted once by
:func:`~torch_geometric_mgvae.chem.smiles_to_data` (heavy atoms only,
kekulized unless :obj:`kekulize=False`): :obj:`x` holds one-hot atom types
of the dataset's vocabulary (:attr:`atoms`), :obj:`edge_index` both bond
directions, :obj:`edge_attr` one-hot single/double/triple (/aromatic) bonds,
:obj:`smiles` the canonical SMILES (without stereo) and :obj:`idx` the
molecule's id in the raw file. Molecules that cannot be converted (invalid
SMILES, atom types outside the vocabulary) are skipped, counted in
:attr:`info` and reported with a warning.

All splits of a dataset are converted together into one processed file; a
split is a view on it (:obj:`dataset._indices`), so the splits never overlap
and :obj:`len(train) + len(test) == len(all)`. :attr:`split_idx` holds the
positions of every split. Raw files already in :obj:`root/raw` are used as
they are; otherwise they are downloaded, and without internet a
:class:`RuntimeError` names the expected files and where to get them.
Processed files carry the digests of the raw files they were built from and
are rebuilt (with a warning) when a raw file changed or a processed file
cannot be read (see
:class:`~torch_geometric_mgvae.datasets.base.CachedInMemoryDataset`).

**Raw file checks.** Bad *structure* raises a :class:`ValueError` naming
the file and line: a missing column, a row with another number of fields
than the header or a last line without line end (a file cut mid-line), an
unreadable or truncated gzip stream, a repeated molecule id, and in split
files (ZINC's ``indexes_train_val_test.csv``, QM9's ``valid_idx_qm9.json``)
an entry that is not a row index, an index outside the table, an index in
two splits or twice in one, or an empty split. Bad *rows* (a property that
is not a finite number, an id that is not an integer) are skipped, counted in
:obj:`info["num_bad_rows"]` / :obj:`info["bad_rows"]` and reported with one
warning; their ids are not renumbered.
"""
import csv
import gzip
import json
import math
import os.path as osp
import time
import zlib
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

import torch
from torch import Tensor
from torch_geometric.data import Data, InMemoryDataset
from tqdm import tqdm

from torch_geometric_mgvae.chem.convert import (
    QM9_ATOMS,
    ZINC_ATOMS,
    AtomType,
    AtomVocabulary,
    smiles_to_data,
)
from torch_geometric_mgvae.datasets.base import (
    CachedInMemoryDataset,
    CacheError,
    warn_user,
)

__all__ = [
    'QM9Molecules', 'ZINC12k', 'MOSES', 'QM9_TARGETS', 'ZINC12K_TARGETS',
    'molecule_dataset_stats', 'penalized_logp'
]

#: The 15 QM9 properties stored in :obj:`QM9Molecules.y`, in column order,
#: as ``(name, unit, qm9pack column, MoleculeNet qm9.csv column)``. Columns
#: 0-11 are the 12 usual regression targets (the order of the first 12
#: targets of :class:`torch_geometric.datasets.QM9`, but in the raw units of
#: the QM9 files: energies in Hartree, not eV), 12-14 the rotational
#: constants.
QM9_TARGETS: List[Tuple[str, str, str, str]] = [
    ('mu', 'D', 'Dipole_debye', 'mu'),
    ('alpha', 'bohr^3', 'Polarizability_bohr3', 'alpha'),
    ('homo', 'Hartree', 'HOMO_au', 'homo'),
    ('lumo', 'Hartree', 'LUMO_au', 'lumo'),
    ('gap', 'Hartree', 'HOMO_LUMO_gap_au', 'gap'),
    ('r2', 'bohr^2', 'R2_bohr2', 'r2'),
    ('zpve', 'Hartree', 'ZPVE_au', 'zpve'),
    ('U0', 'Hartree', 'InternalEnergy_0K_au', 'u0'),
    ('U', 'Hartree', 'InternalEnergy_298K_au', 'u298'),
    ('H', 'Hartree', 'Enthalphy_298K_au', 'h298'),
    ('G', 'Hartree', 'GibbsFreeEnergy_298K_au', 'g298'),
    ('Cv', 'cal/(mol K)', 'Heatcapacity_Cv_cal_mol_K', 'cv'),
    ('A', 'GHz', 'RotA_GHz', 'A'),
    ('B', 'GHz', 'RotB_GHz', 'B'),
    ('C', 'GHz', 'RotC_GHz', 'C'),
]

#: The columns of :obj:`ZINC12k.y` (raw values of ``smiles_score.csv``).
ZINC12K_TARGETS: List[str] = ['logp', 'SA', 'score']

GDSS_COMMIT = '24cc490e0c5b39cbd265fda33ab2bc8b528d4454'
GDSS_VALID_IDX_URL = ('https://raw.githubusercontent.com/harryjo97/GDSS/'
                      f'{GDSS_COMMIT}/data/valid_idx_qm9.json')
MOLECULENET_QM9_URL = ('https://deepchemdata.s3-us-west-1.amazonaws.com/'
                       'datasets/qm9.csv')
GRAPHIUM_COMMIT = '2573628b14751178679cd4606a1523486585d873'
GRAPHIUM_URL = ('https://raw.githubusercontent.com/datamol-io/graphium/'
                f'{GRAPHIUM_COMMIT}/ZINC_bench_gnn')
MOSES_COMMIT = 'b94468cab4590ced03a98c26a35d3c1e0647d9c9'
# The MOSES CSVs are Git LFS objects: raw.githubusercontent.com serves only
# the pointer, media.githubusercontent.com the content.
MOSES_URL = ('https://media.githubusercontent.com/media/molecularsets/moses/'
             f'{MOSES_COMMIT}/moses/dataset/data')

# Constants of the normalised penalised logP of JT-VAE (means and standard
# deviations of logP, -SA and -cycle over ZINC-250k).
_LOGP_MEAN, _LOGP_STD = 2.4570953396190123, 1.434324401111988
_SA_MEAN, _SA_STD = -3.0525811293166134, 0.8335207024513095
_CYCLE_MEAN, _CYCLE_STD = -0.0485696876403053, 0.2860212110245455


def _open_text(path: str):
    if path.endswith('.gz'):
        return gzip.open(path, 'rt', newline='')
    return open(path, newline='')


class _Lines:
    r"""The lines of a text file, remembering the last one (a file cut
    mid-line ends without a line end)."""
    def __init__(self, f) -> None:
        self.f = f
        self.last = ''

    def __iter__(self) -> Iterator[str]:
        for line in self.f:
            self.last = line
            yield line


class _Row(NamedTuple):
    index: int  # 0-based data row of the file (bad rows included)
    line: int  # line number in the file (the header is line 1)
    values: Optional[List[Any]]  # parsed values, None for a bad row
    error: str  # why the row is bad ('' for a good row)


def _column(header: List[str], name: str, path: str) -> int:
    if name not in header:
        raise KeyError(f"Column '{name}' not found in '{path}' "
                       f"(available: {header})")
    return header.index(name)


def _read_table(
    path: str,
    columns: Dict[str, Callable[[str], Any]],
) -> Iterator[_Row]:
    r"""The rows of a (gzipped) CSV file, as the values of
    :obj:`columns` (name -> parser) in that order.

    A value its parser rejects makes a bad row (:obj:`values=None`, the
    reason in :obj:`error`). Bad structure raises a :class:`ValueError`
    naming the file and line: a row with another number of fields than the
    header, a last line without line end, undecodable bytes or a truncated
    gzip stream. Blank lines are ignored.
    """
    with _open_text(path) as f:
        lines = _Lines(f)
        reader = csv.reader(lines)
        try:
            header = next(reader, None)
            if header is None:
                raise ValueError(f"'{path}' is empty (expected a CSV header)")
            header = [h.strip() for h in header]
            cols = [(name, _column(header, name, path), parse)
                    for name, parse in columns.items()]
            index = 0
            for row in reader:
                if len(row) == 0:
                    continue
                if len(row) != len(header):
                    raise ValueError(
                        f"'{path}', line {reader.line_num}: {len(row)} "
                        f"field{'' if len(row) == 1 else 's'} where the "
                        f"header has {len(header)} (a file cut mid-line, or "
                        f"a malformed row)")
                values: Optional[List[Any]] = []
                error = ''
                for name, c, parse in cols:
                    try:
                        values.append(parse(row[c]))
                    except ValueError as e:
                        values, error = None, f"column '{name}': {e}"
                        break
                yield _Row(index, reader.line_num, values, error)
                index += 1
        except (OSError, EOFError, UnicodeDecodeError, csv.Error,
                zlib.error) as e:
            raise ValueError(f"'{path}', line {reader.line_num + 1}: cannot "
                             f"be read ({e})") from None
    if lines.last and not lines.last.endswith(('\n', '\r')):
        raise ValueError(f"'{path}', line {reader.line_num}: the last line "
                         f"has no line end, so the file looks cut mid-line "
                         f"(if it is complete, end it with a newline)")


def _finite_float(value: str) -> float:
    r"""A property value: a finite number (a 'nan' or 'inf' cell makes the
    row bad, skipped and counted, instead of a NaN target)."""
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f'{value.strip()!r} is not a finite number')
    return out


def _gdb_id(value: str) -> int:
    value = value.strip()
    try:
        return int(value[4:] if value.startswith('gdb_') else value)
    except ValueError:
        raise ValueError(f'{value!r} is not a GDB id') from None


def _read_split_index(path: str, names: Sequence[str], num_rows: int,
                      table: str) -> Dict[str, List[int]]:
    r"""Reads a CSV file whose columns :obj:`names` list the 0-based row
    indices of each split (blank cells allowed), checking that every entry
    is a row of the :obj:`num_rows`-row :obj:`table`, that no row is listed
    twice (in one split or in two) and that no split is empty."""
    splits: Dict[str, List[int]] = {name: [] for name in names}
    seen: Dict[int, Tuple[str, int]] = {}
    for row in _read_table(path, {name: str for name in names}):
        for name, cell in zip(names, row.values):
            cell = cell.strip()
            if not cell:
                continue
            where = f"'{path}', line {row.line}, column '{name}'"
            try:
                i = int(cell)
            except ValueError:
                raise ValueError(f'{where}: {cell!r} is not a row '
                                 f'index') from None
            if not 0 <= i < num_rows:
                raise ValueError(f"{where}: row {i} is outside the "
                                 f"{num_rows} data rows of '{table}'")
            if i in seen:
                other, line = seen[i]
                raise ValueError(f"{where}: row {i} is already in split "
                                 f"'{other}' (line {line}); splits must "
                                 f"not overlap or repeat rows")
            seen[i] = (name, row.line)
            splits[name].append(i)
    for name in names:
        if not splits[name]:
            raise ValueError(f"'{path}': split '{name}' lists no rows")
    return splits


def _bad_rows_note(bad_rows: Sequence[Tuple[int, str]]) -> str:
    return '; '.join(f'line {line}: {error}'
                     for line, error in bad_rows[:3]) + (
                         ' ...' if len(bad_rows) > 3 else '')


def _atom_label(atom: AtomType) -> str:
    symbol, charge = atom
    if charge == 0:
        return symbol
    sign = '+' if charge > 0 else '-'
    return symbol + sign + (str(abs(charge)) if abs(charge) > 1 else '')


class _MoleculeDataset(CachedInMemoryDataset):
    r"""Shared machinery: conversion with a progress bar, skip counting,
    pre-filtering and one processed file (plus a meta file) per variant."""
    atoms: List[AtomType] = []

    def __init__(
        self,
        root: str,
        split: str,
        chem_features: bool = False,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        pre_filter: Optional[Callable] = None,
        force_reload: bool = False,
        kekulize: bool = True,
    ) -> None:
        self.chem_features = bool(chem_features)
        self.kekulize = bool(kekulize)
        super().__init__(root, split, transform, pre_transform, pre_filter,
                         force_reload=force_reload)

    def load_processed(self) -> None:
        self.load(self.processed_paths[0])
        meta = self.load_file(self.processed_paths[1])
        if not isinstance(meta, dict) or not {'info', 'split_idx'} <= set(
                meta):
            raise CacheError(self.processed_paths[1],
                             'not a meta file of this package')
        split_idx = meta['split_idx']
        if split_idx is not None and self.split != 'all' and \
                self.split not in split_idx:
            raise CacheError(self.processed_paths[1],
                             f"no positions of split '{self.split}'")
        #: Processing record: raw rows read, molecules converted and
        #: skipped (with the ids of the skipped ones), bad raw rows,
        #: seconds taken, ...
        self.info: Dict[str, Any] = meta['info']
        #: The positions of every split in the processed file, or
        #: :obj:`None` if the processed file holds a single split.
        self.split_idx: Optional[Dict[str, Tensor]] = split_idx
        if self.split_idx is not None and self.split != 'all':
            self._indices = self.split_idx[self.split].tolist()

    # Subclasses give the processed file stem and the raw sources.
    def _stem(self) -> str:
        raise NotImplementedError

    @property
    def processed_file_names(self) -> List[str]:
        stem = self._stem() + ('' if self.kekulize else '_aromatic') + (
            '_chem' if self.chem_features else '')
        return [f'{stem}.pt', f'{stem}_meta.pt']

    def _convert(
        self,
        smiles: Sequence[str],
        ids: Sequence[int],
        attrs: Optional[Sequence[Dict[str, Tensor]]] = None,
        splits: Optional[Dict[str, Sequence[int]]] = None,
        info: Optional[Dict[str, Any]] = None,
        start: Optional[float] = None,
        bad_rows: Sequence[Tuple[int, str]] = (),
        raw_name: str = '',
    ) -> None:
        r"""Converts :obj:`smiles` (with raw ids :obj:`ids` and extra
        attributes :obj:`attrs`), applies :obj:`pre_filter` and
        :obj:`pre_transform`, and saves the data and the meta file.
        :obj:`splits` maps split names to raw ids; positions are computed
        over the molecules kept. :obj:`bad_rows` (line, reason) are the
        rows of :obj:`raw_name` skipped before conversion."""
        start = time.perf_counter() if start is None else start
        vocab = AtomVocabulary(self.atoms)
        data_list: List[Data] = []
        kept_ids: List[int] = []
        skipped: List[int] = []
        num_filtered = 0
        name = self.__class__.__name__
        if bad_rows:
            warn_user(f"{name}: skipped {len(bad_rows)} bad rows of "
                      f"'{raw_name}' ({_bad_rows_note(bad_rows)})")
        # disable=None: a bar on a terminal, silent in logs and pipes
        for i, smi in enumerate(tqdm(smiles, desc=f'{name} {self._stem()}',
                                     unit='mol', disable=None)):
            data = smiles_to_data(smi, vocab, kekulize=self.kekulize,
                                  chem_features=self.chem_features)
            if data is None:
                skipped.append(int(ids[i]))
                continue
            data.idx = torch.tensor([int(ids[i])])
            if attrs is not None:
                for key, value in attrs[i].items():
                    data[key] = value
            if self.pre_filter is not None and not self.pre_filter(data):
                num_filtered += 1
                continue
            if self.pre_transform is not None:
                data = self.pre_transform(data)
            data_list.append(data)
            kept_ids.append(int(ids[i]))
        if skipped:
            warn_user(
                f"{name}: skipped {len(skipped)} of {len(smiles)} molecules "
                f"that could not be converted (invalid SMILES or atom types "
                f"outside the vocabulary); ids: {skipped[:20]}"
                f"{' ...' if len(skipped) > 20 else ''}")
        if len(data_list) == 0:
            raise RuntimeError(f'{name}: no molecule left after conversion '
                               f'and pre_filter (nothing to save)')

        split_idx = None
        if splits is not None:
            position = {i: p for p, i in enumerate(kept_ids)}
            split_idx = {}
            for key, members in splits.items():
                pos = sorted(position[i] for i in set(members)
                             if i in position)
                split_idx[key] = torch.tensor(pos, dtype=torch.long)
        info = dict(info or {})
        info.update(num_rows=len(smiles) + len(bad_rows),
                    num_bad_rows=len(bad_rows),
                    bad_rows=[f'line {line}: {error}'
                              for line, error in bad_rows[:20]],
                    num_converted=len(smiles) - len(skipped),
                    num_skipped=len(skipped), skipped_ids=skipped,
                    num_filtered=num_filtered, num_molecules=len(data_list),
                    process_seconds=round(time.perf_counter() - start, 2))
        self.save(data_list, self.processed_paths[0])
        self.save_file({'info': info, 'split_idx': split_idx},
                       self.processed_paths[1])


class QM9Molecules(_MoleculeDataset):
    r"""The QM9 molecules (Ramakrishnan *et al.*, 2014; up to 9 heavy atoms
    C, N, O, F) as graphs, with their 15 DFT properties and the GDSS test
    split, as used for molecule generation by MoFlow, GDSS and MGVAE.

    **Split.** :obj:`split="test"` holds the molecules whose GDB id is in
    GDSS's ``valid_idx_qm9.json`` (13,082 0-based row indices of the
    133,885-row MoleculeNet ``qm9.csv``, i.e. GDB id = index + 1);
    :obj:`split="train"` the others; :obj:`"all"` both. With the qm9pack
    file, 168 of those ids are "uncharacterized" molecules that the file
    omits, so the test split has 12,914 molecules and the training split
    117,917 (GDSS, on all 133,885 rows, has 13,082 / 120,803). The number of
    absent test ids is :obj:`info["num_test_ids_absent"]`.

    **Graphs.** :obj:`x` one-hot atom types of :const:`QM9_ATOMS` (C, N, O,
    F and the charged N+, O-, C-, N- of the zwitterions), :obj:`edge_index`,
    :obj:`edge_attr` one-hot single/double/triple (kekulized), :obj:`smiles`
    (canonical, no stereo), :obj:`idx` the GDB id ``[1]``, :obj:`y` the 15
    properties ``[1, 15]`` in the raw units of QM9 (see
    :const:`QM9_TARGETS`): mu (D), alpha (bohr^3), homo, lumo, gap (Hartree),
    r2 (bohr^2), zpve, U0, U, H, G (Hartree), Cv (cal/(mol K)), then the
    rotational constants A, B, C (GHz). :obj:`y[:, :12]` are the 12 usual
    targets. With :obj:`chem_features=True`, :obj:`chem_x` holds the 24
    atom features of :func:`~torch_geometric_mgvae.chem.atom_features`.

    **Raw files** (in :obj:`root/raw`; the first found is used):

    * ``qm9_qm9pack_compact.csv.gz``: columns ``Index`` (GDB id), ``SMILES``
      and the properties, derived from the PyPI package ``qm9pack`` (its
      ``qm9pack/data/qm9_part{1,2,3}.csv`` concatenated, keeping those
      columns); 130,831 molecules = QM9 without the 3,054 uncharacterized
      ones. Not downloadable.
    * ``qm9.csv``: the MoleculeNet file (columns ``mol_id`` = ``gdb_<id>``,
      ``smiles``, ``A, B, C, mu, ..., cv``; all 133,885 molecules, the
      uncharacterized ones included), downloaded from DeepChem if no raw
      file is present.

    plus ``valid_idx_qm9.json`` (downloaded from GDSS if missing).

    Processing converts every molecule once (about 2 minutes of CPU time
    for the 130,831 molecules, 1-2 ms per molecule) into
    ``root/processed/<source>.pt`` (124 MB, ``<source>`` = ``qm9pack`` or
    ``moleculenet``) and ``<source>_meta.pt`` (split positions and
    :attr:`info`); :obj:`chem_features=True` uses separate
    ``<source>_chem*.pt`` files.

    Args:
        root (str): Root directory where the dataset should be saved.
        split (str, optional): :obj:`"train"`, :obj:`"test"` or
            :obj:`"all"`. (default: :obj:`"train"`)
        chem_features (bool, optional): If :obj:`True`, also stores the
            chemical atom features as :obj:`chem_x`. (default: :obj:`False`)
        transform (callable, optional): A function/transform applied to
            every :class:`~torch_geometric.data.Data` on access.
            (default: :obj:`None`)
        pre_transform (callable, optional): A function/transform applied
            before saving to disk. (default: :obj:`None`)
        pre_filter (callable, optional): A function deciding whether a
            molecule is kept (applied before splitting). (default:
            :obj:`None`)
        force_reload (bool, optional): Whether to re-process the dataset.
            (default: :obj:`False`)
        kekulize (bool, optional): If :obj:`False`, aromatic bonds keep
            their own type: :obj:`edge_attr` gets a fourth (aromatic)
            column and the graphs are processed into a separate file
            (``*_aromatic*.pt``). An aromatic nitrogen's hydrogen
            (pyrrole-type ``[nH]``) is then implicit in the graph;
            :func:`~torch_geometric_mgvae.chem.data_to_mol` restores
            it. (default: :obj:`True`)

    **STATS** (qm9pack raw file):

    .. list-table::
        :widths: 10 10 10 10
        :header-rows: 1

        * - #molecules
          - #atoms (heavy)
          - #bonds
          - split (train/test)
        * - 130,831
          - 1-9 (mean 8.8)
          - 0-13 (mean 9.4)
          - 117,917/12,914
    """
    splits = ('train', 'test', 'all')
    atoms = QM9_ATOMS
    targets = QM9_TARGETS
    compact_name = 'qm9_qm9pack_compact.csv.gz'
    moleculenet_name = 'qm9.csv'
    valid_idx_name = 'valid_idx_qm9.json'
    raw_help = (
        f"Place either '{compact_name}' (derived from the PyPI package "
        f"qm9pack) or the MoleculeNet '{moleculenet_name}' "
        f"({MOLECULENET_QM9_URL}) in the raw folder, together with "
        f"'{valid_idx_name}' ({GDSS_VALID_IDX_URL}).")

    def __init__(
        self,
        root: str,
        split: str = 'train',
        chem_features: bool = False,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        pre_filter: Optional[Callable] = None,
        force_reload: bool = False,
        kekulize: bool = True,
    ) -> None:
        super().__init__(root, split, chem_features, transform,
                         pre_transform, pre_filter, force_reload,
                         kekulize=kekulize)

    def _table_name(self) -> str:
        if osp.exists(osp.join(self.raw_dir, self.compact_name)):
            return self.compact_name
        return self.moleculenet_name

    def _stem(self) -> str:
        if self._table_name() == self.compact_name:
            return 'qm9pack'
        return 'moleculenet'

    def raw_sources(self) -> Dict[str, Optional[str]]:
        table = self._table_name()
        url = None if table == self.compact_name else MOLECULENET_QM9_URL
        return {table: url, self.valid_idx_name: GDSS_VALID_IDX_URL}

    def process(self) -> None:
        start = time.perf_counter()
        path = osp.join(self.raw_dir, self._table_name())
        if self._table_name() == self.compact_name:
            id_col, smiles_col, prop = 'Index', 'SMILES', 2
        else:
            id_col, smiles_col, prop = 'mol_id', 'smiles', 3
        columns: Dict[str, Callable[[str], Any]] = {
            id_col: _gdb_id,
            smiles_col: str
        }
        columns.update({t[prop]: _finite_float for t in self.targets})

        ids, smiles, attrs, bad = [], [], [], []
        line_of: Dict[int, int] = {}
        for row in _read_table(path, columns):
            if row.values is None:
                bad.append((row.line, row.error))
                continue
            gdb_id, smi, *y = row.values
            if gdb_id in line_of:
                raise ValueError(f"'{path}', line {row.line}: GDB id "
                                 f"{gdb_id} is already on line "
                                 f"{line_of[gdb_id]}")
            line_of[gdb_id] = row.line
            ids.append(gdb_id)
            smiles.append(smi)
            attrs.append({'y': torch.tensor([y], dtype=torch.float)})

        test_ids = self._read_test_ids()
        present = set(ids)
        train_ids = [i for i in ids if i not in test_ids]
        splits = {'train': train_ids, 'test': list(test_ids & present)}
        info = {
            'raw_file': self._table_name(),
            'num_test_ids': len(test_ids),
            'num_test_ids_absent': len(test_ids - present),
        }
        self._convert(smiles, ids, attrs, splits, info, start, bad,
                      self._table_name())

    def _read_test_ids(self) -> Set[int]:
        r"""The GDB ids (row index + 1) listed in ``valid_idx_qm9.json``."""
        path = osp.join(self.raw_dir, self.valid_idx_name)
        try:
            with open(path) as f:
                obj = json.load(f)
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            raise ValueError(f"'{path}' is not a valid JSON file "
                             f"({e})") from None
        idx = obj.get('valid_idxs') if isinstance(obj, dict) else None
        if not isinstance(idx, list):
            raise ValueError(f"'{path}': expected a JSON object "
                             f'{{"valid_idxs": [row indices]}}')
        test_ids = set()
        for k, i in enumerate(idx):
            value = -1
            if isinstance(i, str) or (isinstance(i, int)
                                      and not isinstance(i, bool)):
                try:
                    value = int(i)  # GDSS stores '000123' strings
                except ValueError:
                    pass
            if value < 0:
                raise ValueError(f"'{path}', entry {k} of 'valid_idxs': "
                                 f"{i!r} is not a row index")
            test_ids.add(value + 1)
        return test_ids


class ZINC12k(_MoleculeDataset):
    r"""The 12k-molecule ZINC subset of *Benchmarking Graph Neural Networks*
    (Dwivedi *et al.*), split 10,000 / 1,000 / 1,000 into train / val /
    test, as SMILES with the ZINC atom vocabulary :const:`ZINC_ATOMS`.

    Each graph carries :obj:`x`, :obj:`edge_index`, :obj:`edge_attr`,
    :obj:`smiles` (see :class:`QM9Molecules`), :obj:`idx` (the 0-based row of
    ``smiles_score.csv``) and :obj:`y` ``[1, 3]`` = (logP, SA, score), the
    raw columns of the file (:const:`ZINC12K_TARGETS`; logP is RDKit's
    Crippen logP, SA the synthetic accessibility score).

    .. warning::
        The ``score`` column is exactly :obj:`logp - SA`: it has no ring
        (cycle) penalty and is not normalised, so it is **not** the target
        of the benchmark (JT-VAE's normalised penalised logP). Compute that
        with :func:`penalized_logp`, *e.g.*
        :obj:`penalized_logp(data.smiles, data.y[0, 0], data.y[0, 1])`
        (training split: mean -0.006, std 2.05). The cycle term, like
        JT-VAE's, depends on the atom order of the SMILES string
        (:func:`networkx.cycle_basis` is not canonical): on the canonical
        :obj:`data.smiles` it differs from the raw SMILES for 2 of the
        10,000 training molecules. Whether the row order matches
        :class:`torch_geometric.datasets.ZINC` (:obj:`subset=True`) was not
        checked.

    **Raw files** (in :obj:`root/raw`, downloaded from the GitHub history
    of datamol-io/graphium, commit ``2573628b``, folder ``ZINC_bench_gnn``,
    if missing): ``smiles_score.csv`` (columns ``SMILES, SA, logp, score``)
    and ``indexes_train_val_test.csv`` (columns ``train, val, test`` of
    row indices; every index must be a row of ``smiles_score.csv``, no row
    may be listed twice, no split may be empty, else a :class:`ValueError`
    names the file and line). Processed into ``root/processed/zinc12k.pt``
    (and ``zinc12k_meta.pt``) in a few seconds.

    Args:
        root (str): Root directory where the dataset should be saved.
        split (str, optional): :obj:`"train"`, :obj:`"val"`, :obj:`"test"`
            or :obj:`"all"`. (default: :obj:`"train"`)
        chem_features (bool, optional): See :class:`QM9Molecules`.
            (default: :obj:`False`)
        transform (callable, optional): See :class:`QM9Molecules`.
        pre_transform (callable, optional): See :class:`QM9Molecules`.
        pre_filter (callable, optional): See :class:`QM9Molecules`.
        force_reload (bool, optional): Whether to re-process the dataset.
            (default: :obj:`False`)
        kekulize (bool, optional): See :class:`QM9Molecules`.
            (default: :obj:`True`)

    **STATS:**

    .. list-table::
        :widths: 10 10 10 10
        :header-rows: 1

        * - #molecules
          - #atoms (heavy)
          - #bonds
          - split (train/val/test)
        * - 12,000
          - 8-37 (mean 23.2)
          - mean 24.9
          - 10,000/1,000/1,000
    """
    splits = ('train', 'val', 'test', 'all')
    atoms = ZINC_ATOMS
    targets = ZINC12K_TARGETS
    raw_help = (f'Download them from {GRAPHIUM_URL}/<file name> (GitHub '
                f'history of datamol-io/graphium).')

    def __init__(
        self,
        root: str,
        split: str = 'train',
        chem_features: bool = False,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        pre_filter: Optional[Callable] = None,
        force_reload: bool = False,
        kekulize: bool = True,
    ) -> None:
        super().__init__(root, split, chem_features, transform,
                         pre_transform, pre_filter, force_reload,
                         kekulize=kekulize)

    def _stem(self) -> str:
        return 'zinc12k'

    def raw_sources(self) -> Dict[str, Optional[str]]:
        names = ['smiles_score.csv', 'indexes_train_val_test.csv']
        return {name: f'{GRAPHIUM_URL}/{name}' for name in names}

    def process(self) -> None:
        start = time.perf_counter()
        columns: Dict[str, Callable[[str], Any]] = {'SMILES': str}
        columns.update({name: _finite_float for name in self.targets})
        ids, smiles, attrs, bad = [], [], [], []
        num_rows = 0
        for row in _read_table(self.raw_paths[0], columns):
            num_rows += 1
            if row.values is None:
                bad.append((row.line, row.error))
                continue
            ids.append(row.index)
            smiles.append(row.values[0])
            y = row.values[1:]
            attrs.append({'y': torch.tensor([y], dtype=torch.float)})
        splits = _read_split_index(self.raw_paths[1], ['train', 'val', 'test'],
                                   num_rows, self.raw_file_names[0])
        self._convert(smiles, ids, attrs, splits, None, start, bad,
                      self.raw_file_names[0])


class MOSES(_MoleculeDataset):
    r"""The MOSES benchmark (Polykovskiy *et al.*, 2020): drug-like
    molecules from ZINC Clean Leads, 1,584,663 training and 176,074 test
    SMILES, with the ZINC atom vocabulary :const:`ZINC_ATOMS`.

    MOSES molecules contain only neutral C, N, O, F, S, Cl, Br (and H), so
    all of them convert. Each graph carries :obj:`x`, :obj:`edge_index`,
    :obj:`edge_attr`, :obj:`smiles` (see :class:`QM9Molecules`) and
    :obj:`idx` (the 0-based data row of the raw file); there are no
    properties.

    **Raw files** (in :obj:`root/raw`): ``<split>.csv.gz`` (a ``SMILES``
    column; the files of the PyPI package ``molsets``,
    ``moses/dataset/data``), or an uncompressed ``<split>.csv``;
    downloaded from GitHub molecularsets/moses if missing. Only the raw
    file of the requested split is needed.

    Processing runs per split (about 2 ms of CPU time per molecule, so
    about an hour for the full training set; the processed test split takes
    474 MB, the training split about 4.3 GB). :obj:`max_molecules` keeps
    only the first rows of the raw file; the processed file name records it:
    ``root/processed/<split>_<max_molecules or "all">.pt``.

    Args:
        root (str): Root directory where the dataset should be saved.
        split (str, optional): :obj:`"train"`, :obj:`"test"` or
            :obj:`"test_scaffolds"` (the scaffold test set).
            (default: :obj:`"train"`)
        max_molecules (int, optional): Converts only the first
            :obj:`max_molecules` rows. (default: :obj:`None`: all)
        chem_features (bool, optional): See :class:`QM9Molecules`.
            (default: :obj:`False`)
        transform (callable, optional): See :class:`QM9Molecules`.
        pre_transform (callable, optional): See :class:`QM9Molecules`.
        pre_filter (callable, optional): See :class:`QM9Molecules`.
        force_reload (bool, optional): Whether to re-process the dataset.
            (default: :obj:`False`)
        kekulize (bool, optional): See :class:`QM9Molecules`.
            (default: :obj:`True`)

    **STATS** (test split; all 176,074 molecules convert):

    .. list-table::
        :widths: 10 10 10
        :header-rows: 1

        * - #molecules (train/test)
          - #atoms (heavy)
          - #bonds
        * - 1,584,663/176,074
          - 8-26 (mean 21.6)
          - mean 23.2
    """
    splits = ('train', 'test', 'test_scaffolds')
    atoms = ZINC_ATOMS
    raw_help = (f'Get them from the PyPI package molsets '
                f'(moses/dataset/data/<split>.csv.gz) or from '
                f'{MOSES_URL}/<split>.csv.gz.')

    def __init__(
        self,
        root: str,
        split: str = 'train',
        max_molecules: Optional[int] = None,
        chem_features: bool = False,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        pre_filter: Optional[Callable] = None,
        force_reload: bool = False,
        kekulize: bool = True,
    ) -> None:
        if max_molecules is not None and int(max_molecules) < 1:
            raise ValueError(f"'max_molecules' must be positive or None, "
                             f"got {max_molecules}")
        self.max_molecules = (None if max_molecules is None else
                              int(max_molecules))
        super().__init__(root, split, chem_features, transform,
                         pre_transform, pre_filter, force_reload,
                         kekulize=kekulize)

    def _stem(self) -> str:
        n = 'all' if self.max_molecules is None else self.max_molecules
        return f'{self.split}_{n}'

    def raw_sources(self) -> Dict[str, Optional[str]]:
        name = f'{self.split}.csv'
        if osp.exists(osp.join(self.raw_dir, name)):
            return {name: None}
        return {f'{name}.gz': f'{MOSES_URL}/{name}.gz'}

    def process(self) -> None:
        start = time.perf_counter()
        smiles, ids = [], []
        for row in _read_table(self.raw_paths[0], {'SMILES': str}):
            if self.max_molecules is not None and \
                    len(smiles) >= self.max_molecules:
                break
            smiles.append(row.values[0])
            ids.append(row.index)
        self._convert(smiles, ids, start=start)


def molecule_dataset_stats(
    dataset: Union[InMemoryDataset, Sequence[Data]],
    atoms: Optional[Sequence[AtomType]] = None,
) -> Dict[str, Any]:
    r"""Summary statistics of a molecule dataset (one-hot :obj:`x` and
    :obj:`edge_attr` as produced by
    :func:`~torch_geometric_mgvae.chem.smiles_to_data`).

    Args:
        dataset (InMemoryDataset or list): The molecules. For an
            :class:`~torch_geometric.data.InMemoryDataset` without
            :obj:`transform` (a split view included) the statistics are
            computed from the collated tensors, otherwise graph by graph.
        atoms (list, optional): The atom types naming the columns of
            :obj:`x`. (default: :obj:`dataset.atoms` if present)

    Returns:
        A dictionary with :obj:`num_molecules`, :obj:`num_atoms_mean`,
        :obj:`num_atoms_min`, :obj:`num_atoms_max`, :obj:`num_bonds_mean`
        (undirected bonds), :obj:`atom_type_counts` (atom label, *e.g.*
        :obj:`"N+"`, -> number of atoms) and :obj:`bond_type_counts`
        (:obj:`"single"`, :obj:`"double"`, :obj:`"triple"`, and
        :obj:`"aromatic"` for a fourth column -> number of bonds).
    """
    if atoms is None:
        atoms = getattr(dataset, 'atoms', None)
    if isinstance(dataset, InMemoryDataset) and dataset.transform is None:
        data, slices = dataset._data, dataset.slices
        idx = torch.tensor(list(dataset.indices()), dtype=torch.long)
        node_ptr, edge_ptr = slices['x'], slices['edge_index']
        num_nodes = (node_ptr[1:] - node_ptr[:-1])[idx]
        num_edges = (edge_ptr[1:] - edge_ptr[:-1])[idx]
        graph = torch.zeros(node_ptr.numel() - 1, dtype=torch.bool)
        graph[idx] = True
        counts = node_ptr[1:] - node_ptr[:-1]
        node_mask = graph.repeat_interleave(counts)
        counts = edge_ptr[1:] - edge_ptr[:-1]
        edge_mask = graph.repeat_interleave(counts)
        atom_counts = data.x[node_mask].sum(dim=0)
        bond_counts = data.edge_attr[edge_mask].sum(dim=0)
    else:
        graphs = list(dataset)
        num_nodes = torch.tensor([g.num_nodes for g in graphs])
        num_edges = torch.tensor([g.edge_index.size(1) for g in graphs])
        atom_counts = sum(g.x.sum(dim=0) for g in graphs)
        bond_counts = sum(g.edge_attr.sum(dim=0) for g in graphs)
    if num_nodes.numel() == 0:
        raise ValueError('The dataset is empty')
    num_bonds = num_edges.float() / 2
    atom_counts = atom_counts.round().long().tolist()
    bond_counts = (bond_counts / 2).round().long().tolist()
    if atoms is None:
        atom_names = [str(i) for i in range(len(atom_counts))]
    else:
        atom_names = [_atom_label(tuple(a)) for a in atoms]
    bond_names = ['single', 'double', 'triple', 'aromatic']
    return {
        'num_molecules': int(num_nodes.numel()),
        'num_atoms_mean': float(num_nodes.float().mean()),
        'num_atoms_min': int(num_nodes.min()),
        'num_atoms_max': int(num_nodes.max()),
        'num_bonds_mean': float(num_bonds.mean()),
        'atom_type_counts': dict(zip(atom_names, atom_counts)),
        'bond_type_counts': dict(zip(bond_names, bond_counts)),
    }


def penalized_logp(
    mol: Union[str, 'Chem.Mol'],  # noqa: F821
    logp: Optional[float] = None,
    sa: Optional[float] = None,
    normalize: bool = True,
) -> Optional[float]:
    r"""The penalised logP of JT-VAE (the ZINC molecule-optimisation target):

    .. math::
        \frac{\log P - 2.4571}{1.4343} - \frac{SA - 3.0526}{0.8335}
        - \frac{\mathrm{cycle} - 0.0486}{0.2860}

    with :math:`\mathrm{cycle} = \max(L - 6, 0)`, :math:`L` the length of
    the longest cycle of a cycle basis of the molecular graph
    (:func:`networkx.cycle_basis`, as JT-VAE; :obj:`0` without rings).
    With :obj:`normalize=False`: :math:`\log P - SA - \mathrm{cycle}`.

    Args:
        mol (str or rdkit.Chem.Mol): The molecule or its SMILES.
        logp (float, optional): Its logP; computed with RDKit's Crippen
            :obj:`MolLogP` if :obj:`None`.
        sa (float, optional): Its synthetic accessibility score; computed
            with RDKit's contributed :obj:`sascorer` if :obj:`None`.
        normalize (bool, optional): Whether to standardise the three terms
            with the ZINC-250k statistics of JT-VAE. (default: :obj:`True`)

    Returns:
        The score, or :obj:`None` for an invalid SMILES string.
    """
    import networkx as nx
    from rdkit import Chem, RDLogger

    if isinstance(mol, str):
        RDLogger.DisableLog('rdApp.*')
        try:
            mol = Chem.MolFromSmiles(mol)
        finally:
            RDLogger.EnableLog('rdApp.*')
        if mol is None:
            return None
    if logp is None:
        from rdkit.Chem import Crippen
        logp = Crippen.MolLogP(mol)
    if sa is None:
        from rdkit.Contrib.SA_Score import sascorer
        sa = sascorer.calculateScore(mol)
    graph = nx.Graph(Chem.rdmolops.GetAdjacencyMatrix(mol))
    cycles = nx.cycle_basis(graph)
    longest = max((len(c) for c in cycles), default=0)
    cycle = max(longest - 6, 0)
    logp, sa = float(logp), float(sa)
    if not normalize:
        return logp - sa - cycle
    return ((logp - _LOGP_MEAN) / _LOGP_STD + (-sa - _SA_MEAN) / _SA_STD +
            (-cycle - _CYCLE_MEAN) / _CYCLE_STD)
