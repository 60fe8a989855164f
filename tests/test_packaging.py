"""The package as a user installs it: the wheel ships configs, tools and the
model index under transxnet_mm/.mim/, a user's own config in another folder
inherits ours through ``transxnet_mm::`` (from a wheel installed with
--no-deps and from the editable install), and ``mim search`` lists the zoo."""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import zipfile

import pytest
import yaml
from helpers import CONFIGS, ROOT
from mmengine.config import Config

import transxnet_mm
from transxnet_mm.utils import config_lookup

DOWNSTREAM = """_base_ = 'transxnet_mm::retinanet_transxnet_t.py'
model = dict(bbox_head=dict(num_classes=3))
"""
# Run in a fresh interpreter from the user's folder: reads the downstream
# config, builds the model and prints what it is.
BUILD = """
import json
import transxnet_mm
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
cfg = Config.fromfile('my_retinanet.py')
init_default_scope(cfg.default_scope)
cfg.model.backbone.pop('init_cfg')
model = MODELS.build(cfg.model)
print(json.dumps(dict(package=transxnet_mm.__file__, scope=cfg.default_scope,
                      detector=type(model).__name__,
                      backbone=type(model.backbone).__name__,
                      arch=cfg.model.backbone.arch,
                      num_classes=model.bbox_head.num_classes)))
"""
MIM_SITE = osp.join(osp.dirname(osp.dirname(sys.executable)), 'mim-site')


def repo_configs() -> set:
    """Every config file of the repository, relative to configs/."""
    found = set()
    for folder, _, files in os.walk(CONFIGS):
        found |= {osp.relpath(osp.join(folder, f), CONFIGS) for f in files
                  if f.endswith(('.py', '.yml'))}
    return found


def metafile_models() -> set:
    with open(osp.join(CONFIGS, 'metafile.yml')) as f:
        return {m['Name'] for m in yaml.safe_load(f)['Models']}


@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> dict:
    """The wheel built from a copy of the repository's files (a build in
    place would replace the editable install's .mim links by copies),
    installed with --no-deps into a folder of its own."""
    tmp = tmp_path_factory.mktemp('wheel')
    files = subprocess.run(
        ['git', 'ls-files', '-co', '--exclude-standard'], cwd=ROOT,
        check=True, capture_output=True, text=True).stdout.split()
    src = tmp / 'src'
    for rel in files:
        if osp.isfile(osp.join(ROOT, rel)):
            os.makedirs(src / osp.dirname(rel), exist_ok=True)
            shutil.copy2(osp.join(ROOT, rel), src / rel)
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check']
    subprocess.run(pip + ['wheel', '-q', '--no-deps', '--no-build-isolation',
                          '-w', str(tmp / 'dist'), str(src)],
                   check=True, capture_output=True)
    (path, ) = (tmp / 'dist').glob('transxnet_mm-*.whl')
    site = tmp / 'site'
    subprocess.run(pip + ['install', '-q', '--no-deps', '--target', str(site),
                          str(path)], check=True, capture_output=True)
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
    return dict(names=names, site=str(site), tmp=tmp)


@pytest.mark.slow
def test_wheel_ships_every_config_the_tools_and_the_model_index(wheel):
    mim = 'transxnet_mm/.mim/'
    shipped = {n[len(mim + 'configs/'):] for n in wheel['names']
               if n.startswith(mim + 'configs/')}
    assert shipped == repo_configs()
    assert mim + 'model-index.yml' in wheel['names']
    for tool in ('train.py', 'test.py', 'dist_train.sh',
                 'analysis_tools/get_flops.py'):
        assert mim + 'tools/' + tool in wheel['names']


@pytest.mark.slow
def test_downstream_config_builds_from_the_wheel(wheel):
    user = wheel['tmp'] / 'user_project'
    user.mkdir()
    (user / 'my_retinanet.py').write_text(DOWNSTREAM)
    env = dict(os.environ, PYTHONPATH=wheel['site'])
    out = subprocess.run([sys.executable, '-c', BUILD], cwd=user, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    built = json.loads(out.stdout.strip().splitlines()[-1])
    assert built['package'].startswith(wheel['site'])  # not the repo's
    assert (built['scope'], built['detector'], built['backbone'],
            built['arch'], built['num_classes']) == \
        ('mmdet', 'RetinaNet', 'TransXNet', 't', 3)


@pytest.mark.slow
@pytest.mark.skipif(not osp.isdir(osp.join(MIM_SITE, 'mim')),
                    reason='openmim is installed by tools/setup_env.sh into '
                    f'{MIM_SITE}')
def test_mim_search_lists_every_model_of_the_installed_wheel(wheel):
    env = dict(os.environ,
               PYTHONPATH=os.pathsep.join([wheel['site'], MIM_SITE]))
    out = subprocess.run([sys.executable, '-m', 'mim', 'search',
                          'transxnet_mm'], cwd=wheel['tmp'], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    listed = {line.split(':', 1)[1].strip()
              for line in out.stdout.splitlines()
              if line.startswith('config id:')}
    assert listed == metafile_models()


def test_editable_install_links_the_repository():
    """setup.py links configs/, tools/ and model-index.yml into .mim."""
    mim = config_lookup.mim_dir()
    assert osp.dirname(mim) == osp.dirname(transxnet_mm.__file__)
    for name in ('configs', 'tools', 'model-index.yml'):
        assert osp.samefile(osp.join(mim, name), osp.join(ROOT, name))


def scopes(cfg) -> set:
    """The registry scopes (``_scope_``) marked on a config's dicts."""
    found = set()

    def walk(node):
        if isinstance(node, dict):
            found.add(node.get('_scope_'))
            for value in node.values():
                walk(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value)

    walk(cfg._cfg_dict.to_dict())
    return found - {None}


@pytest.mark.parametrize('base,override,model_type', [
    ('retinanet_transxnet_t.py',
     'model = dict(bbox_head=dict(num_classes=3))', 'RetinaNet'),
    ('transxnet-t_in1k.py',
     'model = dict(head=dict(num_classes=10))', 'ImageClassifier'),
])
def test_downstream_config_builds_from_the_editable_install(
        base, override, model_type, tmp_path):
    """Built as MMEngine's Runner builds it: through the root registry in
    the config's default scope. Inherited dicts keep the toolbox's scope;
    none is scoped to the package (which has no registries)."""
    path = tmp_path / 'downstream.py'
    path.write_text(f"_base_ = 'transxnet_mm::{base}'\n{override}\n")
    cfg = Config.fromfile(str(path))
    assert scopes(cfg) <= {cfg.default_scope}
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.default_scope)
    cfg.model.backbone.pop('init_cfg')
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == model_type
    assert type(model.backbone).__name__ == 'TransXNet'
    head = getattr(model, 'bbox_head', None) or model.head
    assert head.num_classes in (3, 10)


def test_unknown_downstream_base_names_the_close_ones(tmp_path):
    path = tmp_path / 'typo.py'
    path.write_text("_base_ = 'transxnet_mm::retinanet_transxnet"
                    "_x.py'\n")
    with pytest.raises(FileNotFoundError,
                       match='Did you mean transxnet_mm::'
                       'retinanet_transxnet_t.py'):
        Config.fromfile(str(path))


def test_version_is_cited_once(tmp_path):
    """CITATION.cff carries the package's version."""
    with open(osp.join(ROOT, 'CITATION.cff')) as f:
        assert yaml.safe_load(f)['version'] == transxnet_mm.__version__
