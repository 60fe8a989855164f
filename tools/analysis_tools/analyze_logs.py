"""Plot the curves of a training run, or time it, from its json log: an
MMEngine run's, or an mmdet 2 / mmseg 0.x run's (the authors' released
``*.log.json``), so that a reproduction is plotted against theirs.

    python tools/analysis_tools/analyze_logs.py plot_curve LOG [LOG ...]
        --keys loss [lr coco/bbox_mAP ...] [--legend A B] [--title T]
        [--out curves.png]
    python tools/analysis_tools/analyze_logs.py cal_train_time LOG [LOG ...]

The arguments are those of mmdet's ``tools/analysis_tools/analyze_logs.py``.
LOG is the scalars log MMEngine writes for every run
(``WORK_DIR/<timestamp>/vis_data/scalars.json``, one json object a line), or a
work dir / run dir, in which case its newest ``vis_data/scalars.json`` is
used. Training lines (``loss``, ``lr``, ...) are plotted against the training
iteration; evaluation lines (keys with a ``/``: ``coco/bbox_mAP``,
``mIoU``'s ``aAcc`` ...) against the epoch or iteration they were evaluated
at. Each key gets its own panel; several logs share the panels.

An mmcv 1.x log (``"mode": "train"`` / ``"val"`` lines: the authors' mmdet
2.28 and mmseg 0.30 runs) is read into the same names: its training lines
at the global iteration (mmdet 2 counts iterations within each epoch), its
COCO metrics as MMEngine's (``bbox_mAP`` -> ``coco/bbox_mAP``), mmseg's
(``mIoU``, ``aAcc``) as they are, at the epoch or iteration evaluated.
"""
import argparse
import glob
import json
import os.path as osp
from collections import defaultdict
from typing import Dict, List, Tuple

import numpy as np

# Keys of MMEngine's training lines that are bookkeeping, not curves.
BOOKKEEPING = ('epoch', 'iter', 'step', 'memory', 'data_time', 'time')
# mmcv 1.x logs (the authors' runs): their evaluation lines repeat the lr;
# MMEngine's CocoMetric names the COCO metrics with a 'coco/' prefix.
MMCV1_VAL_BOOKKEEPING = BOOKKEEPING + ('lr', )
COCO_METRICS, COCO_PREFIX = ('bbox_', 'segm_'), 'coco/'


def find_log(path: str) -> str:
    """The scalars json of ``path``: the file itself, or the newest
    ``vis_data/scalars.json`` under a work dir or run dir."""
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise SystemExit(f'{path} is neither a json log nor a work dir')
    logs = sorted(
        glob.glob(osp.join(path, 'vis_data', 'scalars.json')) +
        glob.glob(osp.join(path, '*', 'vis_data', 'scalars.json')))
    if not logs:
        raise SystemExit(
            f'No vis_data/scalars.json under {path}: pass the run dir '
            f'(WORK_DIR/<timestamp>/) of an MMEngine run or its json log')
    return logs[-1]  # the run dirs are timestamps: the newest sorts last


class RunLog:
    """The curves of one run: ``train[key]`` and ``val[key]`` are
    ``(x, y)`` arrays, x the iteration of a training line and the step
    (epoch or iteration) of an evaluation line."""

    def __init__(self, path: str):
        self.path = find_log(path)
        train: Dict[str, List[Tuple[float, float]]] = defaultdict(list)
        val: Dict[str, List[Tuple[float, float]]] = defaultdict(list)
        self.times: Dict[int, List[float]] = defaultdict(list)
        self.by_epoch = False
        mmcv1: List[dict] = []
        with open(self.path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise SystemExit(f'{self.path}:{n} is not a json line '
                                     f'({e}); is this an MMEngine scalars '
                                     f'log (vis_data/scalars.json)?')
                if 'mode' in rec:  # an mmcv 1.x line (mmdet 2, mmseg 0.x)
                    mmcv1.append(rec)
                    continue
                step = rec.get('step', rec.get('iter'))
                if step is None:
                    continue
                if any('/' in k for k in rec):  # an evaluation
                    for k, v in rec.items():
                        if '/' in k and isinstance(v, (int, float)):
                            val[k].append((step, v))
                    continue
                self.by_epoch |= 'epoch' in rec
                if 'time' in rec:
                    self.times[rec.get('epoch', 0)].append(rec['time'])
                for k, v in rec.items():
                    if k not in BOOKKEEPING and isinstance(v, (int, float)):
                        train[k].append((step, v))
        if mmcv1:
            self._read_mmcv1(mmcv1, train, val)
        self.train = {k: np.array(v) for k, v in train.items()}
        self.val = {k: np.array(v) for k, v in val.items()}

    def _read_mmcv1(self, records: List[dict], train: dict,
                    val: dict) -> None:
        """The lines of an mmcv 1.x runner's log in MMEngine's names."""
        epochs = [r for r in records if r['mode'] == 'train']
        # mmdet 2 counts iterations within each epoch; mmseg 0.x globally
        self.by_epoch = any(
            b['iter'] < a['iter'] for a, b in zip(epochs, epochs[1:]))
        per_epoch = max((r['iter'] for r in records if r['mode'] == 'val'),
                        default=max((r['iter'] for r in epochs), default=0))
        for rec in records:
            if rec['mode'] == 'val':
                step = rec['epoch'] if self.by_epoch else rec['iter']
                for k, v in rec.items():
                    if k not in MMCV1_VAL_BOOKKEEPING and isinstance(
                            v, (int, float)):
                        val[COCO_PREFIX + k if k.startswith(
                            COCO_METRICS) else k].append((step, v))
                continue
            step = (rec['epoch'] - 1) * per_epoch + rec['iter'] \
                if self.by_epoch else rec['iter']
            if 'time' in rec:
                self.times[rec['epoch']].append(rec['time'])
            for k, v in rec.items():
                if k not in BOOKKEEPING and isinstance(v, (int, float)):
                    train[k].append((step, v))

    def curve(self, key: str) -> Tuple[np.ndarray, str]:
        """The (N, 2) points of ``key`` and the name of their x axis."""
        if key in self.train:
            return self.train[key], 'iteration'
        if key in self.val:
            return self.val[key], 'epoch' if self.by_epoch else 'iteration'
        raise SystemExit(
            f'{self.path} has no key {key!r}; it has: '
            f'{", ".join(sorted(self.train) + sorted(self.val))}')


def plot_curve(logs: List[RunLog], args) -> None:
    import matplotlib
    if args.out:
        matplotlib.use('Agg')  # writing a file needs no display
    import matplotlib.pyplot as plt

    legend = args.legend or [
        osp.basename(osp.dirname(osp.dirname(log.path))) for log in logs]
    if len(legend) != len(logs):
        raise SystemExit(f'--legend has {len(legend)} names for '
                         f'{len(logs)} logs')
    fig, axes = plt.subplots(
        len(args.keys), 1, figsize=(7, 2.6 * len(args.keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], args.keys):
        for log, name in zip(logs, legend):
            points, xlabel = log.curve(key)
            marker = 'o' if len(points) <= 30 else None
            ax.plot(points[:, 0], points[:, 1], marker=marker,
                    label=name if len(logs) > 1 else key)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        if key.startswith('lr'):
            ax.ticklabel_format(axis='y', style='sci', scilimits=(-2, 2))
        ax.legend(loc='best', fontsize='small')
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    if args.out:
        fig.savefig(args.out, dpi=100)
        print(f'{", ".join(args.keys)} -> {args.out}')
    else:
        plt.show()
    plt.close(fig)


def cal_train_time(logs: List[RunLog], args) -> None:
    for log in logs:
        if not log.times:
            raise SystemExit(f'{log.path} has no training lines with a time')
        print(f'{log.path}')
        if log.by_epoch:
            means = {e: float(np.mean(t)) for e, t in log.times.items()}
            slow, fast = max(means, key=means.get), min(means, key=means.get)
            print(f'  slowest epoch {slow}: {means[slow]:.3f} s/iter')
            print(f'  fastest epoch {fast}: {means[fast]:.3f} s/iter')
        times = np.concatenate([np.array(t) for t in log.times.values()])
        print(f'  time std over logged iterations: {times.std():.3f} s')
        print(f'  average iteration time: {times.mean():.3f} s/iter')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='task', required=True)
    plot = sub.add_parser('plot_curve', help='plot keys of the log(s)')
    plot.add_argument('json_logs', nargs='+',
                      help='vis_data/scalars.json files or work dirs')
    plot.add_argument('--keys', nargs='+', default=['loss'],
                      help='the keys to plot, one panel each')
    plot.add_argument('--legend', nargs='+', help='one name per log')
    plot.add_argument('--title', help='title of the figure')
    plot.add_argument('--out', help='write the figure to this file (.png, '
                      '.pdf, ...) instead of showing it')
    time = sub.add_parser('cal_train_time',
                          help='average time of a training iteration')
    time.add_argument('json_logs', nargs='+',
                      help='vis_data/scalars.json files or work dirs')
    return parser.parse_args()


def main():
    args = parse_args()
    logs = [RunLog(path) for path in args.json_logs]
    {'plot_curve': plot_curve, 'cal_train_time': cal_train_time}[args.task](
        logs, args)


if __name__ == '__main__':
    main()
