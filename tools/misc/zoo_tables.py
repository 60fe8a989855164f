"""Write the model-zoo tables of README.md and docs/model_zoo.md from
configs/metafile.yml.

    python tools/misc/zoo_tables.py            # print the tables
    python tools/misc/zoo_tables.py --update   # rewrite them in DOCS
    python tools/misc/zoo_tables.py --check    # exit 1 if a file differs

A table sits between ``<!-- zoo:NAME -->`` and ``<!-- /zoo:NAME -->``; NAME is
a key of ``TABLES``, and a file may hold any of them. The metafile is the one
place for these facts (tests/test_zoo.py checks the files against it).
"""
import argparse
import os.path as osp
import re
import sys
from typing import Dict, List

import yaml

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
METAFILE = osp.join(ROOT, 'configs', 'metafile.yml')
# The files holding tables, relative to the repository.
DOCS = ['README.md', 'docs/model_zoo.md']

# table name -> the metafile collections it lists
TABLES = {
    'detection': ['TransXNet RetinaNet', 'TransXNet Mask R-CNN'],
    'segmentation': ['TransXNet Semantic FPN'],
    'standard': ['TransXNet Cascade Mask R-CNN', 'TransXNet UperNet'],
    'classification': ['TransXNet'],
}
METRICS = ('Top 1 Accuracy', 'box AP', 'mask AP', 'mIoU')


def load_models(path: str = METAFILE) -> List[dict]:
    with open(path) as f:
        return yaml.safe_load(f)['Models']


def paper_results(model: dict) -> str:
    """'box AP 44.5, mask AP 40.6', or '-' when the paper has none."""
    metrics = {}
    for result in model.get('Results') or []:
        metrics.update(result['Metrics'])
    return ', '.join(f'{k} {metrics[k]}' for k in METRICS
                     if k in metrics) or '- (not in the paper)'


def weights_link(model: dict) -> str:
    url = model.get('Weights') or model['Metadata'].get('Backbone Weights')
    return f'[{osp.basename(url)}]({url})' if url else '-'


def table(models: List[dict], collections: List[str]) -> str:
    rows = ['| config | paper result | params (M) | FLOPs (G) | '
            "the authors' weights |", '|---|---|---|---|---|']
    for coll in collections:
        for m in models:
            if m['In Collection'] != coll:
                continue
            meta = m['Metadata']
            rows.append(
                f"| `{m['Config']}` | {paper_results(m)} | "
                f"{meta['Parameters (M)']:.2f} | {meta['FLOPs (G)']} "
                f"({meta['FLOPs input']}) | {weights_link(m)} |")
    return '\n'.join(rows)


def render(models: List[dict]) -> Dict[str, str]:
    return {name: table(models, colls) for name, colls in TABLES.items()}


def replace_tables(text: str, tables: Dict[str, str]) -> str:
    """``text`` with each table block it holds written anew."""
    for name, body in tables.items():
        pattern = re.compile(
            rf'(<!-- zoo:{name} -->\n).*?(<!-- /zoo:{name} -->)', re.S)
        text = pattern.sub(lambda m: m.group(1) + body + '\n' + m.group(2),
                           text)
    return text


def stale_files(tables: Dict[str, str], update: bool = False) -> List[str]:
    """The files of DOCS whose tables differ from ``tables`` (rewritten when
    ``update``). Every table must appear in some file."""
    stale, found = [], set()
    for rel in DOCS:
        with open(osp.join(ROOT, rel)) as f:
            text = f.read()
        found |= {n for n in tables if f'<!-- zoo:{n} -->' in text}
        new = replace_tables(text, tables)
        if new != text:
            stale.append(rel)
            if update:
                with open(osp.join(ROOT, rel), 'w') as f:
                    f.write(new)
    missing = sorted(set(tables) - found)
    if missing:
        raise ValueError(f'no <!-- zoo:NAME --> ... <!-- /zoo:NAME --> block '
                         f'for {missing} in {DOCS}; add one.')
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--update', action='store_true',
                       help='rewrite the tables in ' + ', '.join(DOCS))
    group.add_argument('--check', action='store_true',
                       help='exit 1 if a file differs from the metafile')
    args = parser.parse_args()
    tables = render(load_models())
    if not (args.update or args.check):
        for name, body in tables.items():
            print(f'{name}:\n{body}\n')
        return 0
    stale = stale_files(tables, update=args.update)
    if args.check and stale:
        print(f'{", ".join(stale)}: tables differ from configs/metafile.yml; '
              f'run python tools/misc/zoo_tables.py --update')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
