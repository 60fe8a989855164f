"""Install transxnet_mm: ``pip install -e .`` (see docs/get_started.md for the
full stack).

As mmdet, mmseg and mmpretrain do, the configs, tools and model index are
shipped inside the package as ``transxnet_mm/.mim/``: copied when a wheel or
sdist is built, linked to the repository's files in an editable install. That
is where ``mim search`` and MMEngine's ``transxnet_mm::`` config lookup find
them.
"""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

ROOT = osp.dirname(osp.abspath(__file__))
MIM_FILES = ['configs', 'tools', 'model-index.yml']


def read_version() -> str:
    scope: dict = {}
    with open(osp.join(ROOT, 'transxnet_mm', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_requirements(name: str) -> list:
    path = osp.join(ROOT, 'requirements', name)
    with open(path) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line]


def add_mim_extension() -> None:
    """Put MIM_FILES under transxnet_mm/.mim: symbolic links for an editable
    install (``develop`` or PEP 660's ``editable_wheel``), copies for a wheel
    or sdist; nothing for other commands."""
    if {'develop', 'editable_wheel'} & set(sys.argv) and os.name != 'nt':
        mode = 'symlink'
    elif {'sdist', 'bdist_wheel', 'build', 'install', 'editable_wheel',
          'develop'} & set(sys.argv):
        mode = 'copy'
    else:
        return
    mim_path = osp.join(ROOT, 'transxnet_mm', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in MIM_FILES:
        src, dst = osp.join(ROOT, name), osp.join(mim_path, name)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_path), dst)
        elif osp.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns(
                '__pycache__', '*.pyc'))
        else:
            shutil.copyfile(src, dst)


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='transxnet_mm',
        version=read_version(),
        description='TransXNet backbone for MMEngine, mmdet 3.x, mmseg 1.x '
        'and mmpretrain 1.x',
        long_description=open(osp.join(ROOT, 'README.md')).read(),
        long_description_content_type='text/markdown',
        license='Apache License 2.0',
        packages=find_packages(include=['transxnet_mm', 'transxnet_mm.*']),
        include_package_data=True,
        python_requires='>=3.8',
        install_requires=read_requirements('runtime.txt'),
        extras_require={
            'mim': read_requirements('mminstall.txt'),
            'tests': read_requirements('tests.txt'),
        },
        zip_safe=False,
    )
