"""What ``tools/train.py`` and ``tools/test.py`` share: mmdet's common
arguments, the config read with them, and the runner."""
import argparse
import os
import os.path as osp
from contextlib import contextmanager
from typing import Iterator, List, Optional, Tuple

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner


def tool_parser(description: str) -> argparse.ArgumentParser:
    """A parser with the arguments both tools take."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--work-dir',
        help='the dir for logs, checkpoints and metrics (default: '
        'work_dirs/CONFIG_NAME, or the config\'s work_dir)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, e.g. '
        'train_dataloader.batch_size=1 (key=value, lists as [a,b])')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def parse_tool_args(parser: argparse.ArgumentParser,
                    argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse ``argv``; ``--local-rank`` (``torch.distributed.launch``)
    becomes ``LOCAL_RANK`` unless set."""
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def parse_config(
        parser: argparse.ArgumentParser,
        argv: Optional[List[str]] = None) -> Tuple[argparse.Namespace, Config]:
    """The parsed arguments and the config they select."""
    args = parse_tool_args(parser, argv)
    return args, load_config(args)


def load_config(args: argparse.Namespace) -> Config:
    """The config with the common arguments applied."""
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


@contextmanager
def missing_files_exit() -> Iterator[None]:
    """A FileNotFoundError (:mod:`.checks`) ends the tool with its message."""
    try:
        yield
    except FileNotFoundError as e:
        raise SystemExit(f'error: {e}')


def build_runner(cfg: Config) -> Runner:
    """MMEngine's runner, or the config's ``runner_type``."""
    return (Runner.from_cfg(cfg) if 'runner_type' not in cfg else
            RUNNERS.build(cfg))


@contextmanager
def tool_errors() -> Iterator[None]:
    """A FileNotFoundError or ValueError ends the tool with its message,
    without a traceback."""
    try:
        yield
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f'error: {e}') from None
