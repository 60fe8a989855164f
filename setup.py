"""Install transxnet_mm: ``pip install -e .`` (see README.md for the full stack)."""
import os.path as osp

from setuptools import find_packages, setup


def read_version() -> str:
    scope: dict = {}
    with open(osp.join(osp.dirname(__file__), 'transxnet_mm', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_requirements(name: str) -> list:
    path = osp.join(osp.dirname(__file__), 'requirements', name)
    with open(path) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line]


setup(
    name='transxnet_mm',
    version=read_version(),
    description='TransXNet backbone for MMEngine, mmdet 3.x, mmseg 1.x and mmpretrain 1.x',
    long_description=open('README.md').read() if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    packages=find_packages(include=['transxnet_mm', 'transxnet_mm.*']),
    python_requires='>=3.8',
    install_requires=read_requirements('runtime.txt'),
    extras_require={
        'mim': read_requirements('mminstall.txt'),
        'tests': read_requirements('tests.txt'),
    },
    zip_safe=False,
)
