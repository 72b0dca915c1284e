"""The user's path: the wheel installed outside the checkout, used from another directory.

Builds the sdist and, from it, the wheel (as ``python -m build`` does), installs the wheel
with ``pip install --no-deps --target SITE`` into an interpreter that sees the pinned
OpenMMLab stack but not the checkout (a fresh venv whose ``.pth`` points at the stack; the
checkout's editable install is not on its path), and from a project directory elsewhere:
writes the README's own-project config (word for word), trains it with
``mim train mmrepghost`` on a generated set with non-COCO class names, tests it with
``mim test mmrepghost``, runs the README's ``DetInferencer`` snippet on the deploy checkpoint
the hook wrote, and trains + tests a shipped classification config by its name.
"""
import json
import os
import os.path as osp
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

import pytest

from mmrepghost.version import __version__
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow
CLASSES = ['disc', 'triangle', 'rectangle']
IN_PROCESS_LOADING = [f'{loader}.{key}' for loader in (
    'train_dataloader', 'val_dataloader', 'test_dataloader') for key in (
        'num_workers=0', 'persistent_workers=False')]


def readme_block(marker: str) -> str:
    """The fenced code block that follows ``<!-- marker: ... -->`` in README.md."""
    with open(osp.join(REPO_ROOT, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    match = re.search(rf'<!-- {marker}:[^>]*-->\s*```\w*\n(.*?)```', text, re.S)
    assert match, f'README.md has no code block after <!-- {marker}: ... -->'
    return match.group(1)


def run(cmd, cwd, env, returncode=0):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=900, check=False)
    output = result.stdout + result.stderr
    failed = returncode == 'fails' and result.returncode != 0
    assert failed or result.returncode == returncode, (
        f'{cmd} exit {result.returncode}\n{output[-4000:]}')
    return output


def git_status():
    return subprocess.run(['git', 'status', '--porcelain', '--untracked-files=all'],
                          cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope='module')
def dist(tmp_path_factory):
    """sdist and wheel built from the checkout; the checkout is left as git saw it."""
    out = tmp_path_factory.mktemp('dist')
    before = git_status()
    run([sys.executable, '-c', 'import sys, setuptools.build_meta as b; '
         'b.build_sdist(sys.argv[1])', str(out)], REPO_ROOT, None)
    sdist = [osp.join(out, f) for f in os.listdir(out) if f.endswith('.tar.gz')]
    assert len(sdist) == 1, os.listdir(out)
    sdist = sdist[0]
    run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
         '-w', str(out), sdist], str(out), None)
    assert git_status() == before, 'building left files that git would pick up'
    wheel = [osp.join(out, f) for f in os.listdir(out) if f.endswith('.whl')]
    assert len(wheel) == 1, os.listdir(out)
    return sdist, wheel[0]


def test_sdist_and_wheel_carry_configs_tools_and_model_index(dist):
    sdist, wheel = dist
    with tarfile.open(sdist) as tar:
        sdist_names = {name.split('/', 1)[1] for name in tar.getnames() if '/' in name}
    with zipfile.ZipFile(wheel) as whl:
        wheel_names = set(whl.namelist())
        metadata = whl.read(f'mmrepghost-{__version__}.dist-info/METADATA').decode()
    for name in ('configs/retinanet/repghost_1_3x.py', 'configs/mask_rcnn/repghost_1_3x.py',
                 'configs/cls/repghost_1_0x.py', 'configs/retinanet/metafile.yml',
                 'configs/_base_/models/repghostnet_1.0x_fpn_backbone.py',
                 'configs/_base_/repghost_runtime.py', 'tools/train.py',
                 'tools/test.py', 'tools/make_tiny_coco.py', 'model-index.yml'):
        assert name in sdist_names, name
        assert f'mmrepghost/.mim/{name}' in wheel_names, name
    # only mmrepghost and its PyTorch-free runtime are installed: no stray package (tests)
    tops = {name.split('/')[0] for name in wheel_names}
    assert tops == {'mmrepghost', 'mmrepghost_runtime',
                    f'mmrepghost-{__version__}.dist-info'}, tops
    assert 'mmrepghost_runtime/sidecar.py' in wheel_names
    assert 'mmrepghost/.mim/tools/deploy_infer.py' in wheel_names
    assert not any('__pycache__' in name for name in wheel_names)
    # a short description, not the whole README
    description = metadata.split('\n\n', 1)[1]
    assert 'mim train mmrepghost' in description and len(description) < 1500, len(description)


@pytest.fixture(scope='module')
def user(dist, tmp_path_factory):
    """A project directory and the environment of a user who installed the wheel."""
    root = tmp_path_factory.mktemp('user')
    site = root / 'site'
    run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--target', str(site),
         dist[1]], str(root), None)
    # a fresh interpreter that sees the pinned stack, not the checkout's editable install
    venv = root / 'venv'
    run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], str(root), None)
    python = str(venv / 'bin' / 'python')
    venv_site = run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                    str(root), None).strip()
    with open(osp.join(venv_site, 'openmmlab_stack.pth'), 'w') as f:
        f.write(sysconfig.get_paths()['purelib'] + '\n')
    project = root / 'project'
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.update(PYTHONPATH=str(site), PATH=f'{venv / "bin"}{os.pathsep}{env["PATH"]}')
    found = json.loads(run([python, '-c', 'import json, sys, mmrepghost; print(json.dumps(['
                            'mmrepghost.__file__, sys.path, sorted(sys.modules)]))'],
                           str(project), env))
    assert found[0] == str(site / 'mmrepghost' / '__init__.py'), found[0]
    assert REPO_ROOT not in found[1], found[1]
    assert not any('editable' in name for name in found[2])
    return dict(python=python, env=env, project=str(project), site=str(site),
                tools=str(site / 'mmrepghost' / '.mim' / 'tools'))


def mim(user, *args, returncode=0):
    return run([user['python'], '-m', 'mim', *args], user['project'], user['env'], returncode)


def test_user_config_inherits_trains_tests_and_deploys(user):
    project = user['project']
    mim(user, 'run', 'mmrepghost', 'make_tiny_coco', '--out', 'data/shapes', '--train', '8',
        '--val', '4', '--categories', 'shapes')
    with open(osp.join(project, 'retinanet_shapes.py'), 'w') as f:
        f.write(readme_block('own-project-config'))
    epochs = ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1']
    log = mim(user, 'train', 'mmrepghost', 'retinanet_shapes.py', '--work-dir',
              'work_dirs/shapes', '--cfg-options', *epochs, *IN_PROCESS_LOADING)
    # mim ran the installed package's train.py, not the checkout's
    assert osp.join(user['tools'], 'train.py') in log
    assert 'RepGhostDeployHook: wrote' in log
    log = mim(user, 'test', 'mmrepghost', 'retinanet_shapes.py', '--checkpoint',
              'work_dirs/shapes/epoch_1.pth', '--cfg-options', *IN_PROCESS_LOADING,
              'model.test_cfg.score_thr=0')  # one iteration leaves every score under 0.05
    assert osp.join(user['tools'], 'test.py') in log
    assert 'test model deployed (backbone), no re-parameterization branches left' in log
    assert re.search(r'coco/bbox_mAP: [0-9.]+', log), log[-2000:]
    # the README's inference snippet on the deploy checkpoint the hook wrote
    first_val = sorted(os.listdir(osp.join(project, 'data/shapes/val2017')))[0]
    snippet = readme_block('own-project-inference')
    assert 'epoch_8_deploy' in snippet and '000000000001.jpg' in snippet
    snippet = snippet.replace('epoch_8_deploy', 'epoch_1_deploy').replace(
        '000000000001.jpg', first_val)
    snippet += ("import json\nprediction = result['predictions'][0]\n"
                "print('RESULT', json.dumps(dict(classes=list(inferencer.model.dataset_meta["
                "'classes']), n=[len(prediction[k]) for k in ('labels', 'scores', 'bboxes')])))\n")
    output = run([user['python'], '-c', snippet], project, user['env'])
    found = json.loads(output.split('RESULT ', 1)[1].splitlines()[0])
    assert found['classes'] == CLASSES and len(set(found['n'])) == 1, found
    assert 'mmrepghost' in [line.split()[0] for line in
                            mim(user, 'list').splitlines() if line.strip()]
    # the shipped export tool on the deploy checkpoint (end to end, checked in onnxruntime),
    # then the installed runtime's tool on it
    log = mim(user, 'run', 'mmrepghost', 'export_onnx', 'work_dirs/shapes/epoch_1_deploy.py',
              'work_dirs/shapes/epoch_1_deploy.pth', '--out', 'shapes.onnx', '--end2end',
              '--shape', '320', '320')
    assert osp.isfile(osp.join(project, 'shapes.json')), log[-2000:]
    log = mim(user, 'run', 'mmrepghost', 'deploy_infer', 'shapes.onnx',
              f'data/shapes/val2017/{first_val}', '--out-dir', 'drawn', '--score-thr', '0')
    assert re.search(rf'{first_val}: \d+ detections', log) and osp.isfile(
        osp.join(project, 'drawn', first_val)), log[-2000:]


def test_shipped_configs_by_name_through_mim(user):
    project = user['project']
    mim(user, 'run', 'mmrepghost', 'make_tiny_imagenet', '--out', 'data/tiny_imagenet',
        '--train', '4', '--val', '2')
    options = [f'{loader}.dataset.data_root=data/tiny_imagenet' for loader in (
        'train_dataloader', 'val_dataloader', 'test_dataloader')] + [
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', *IN_PROCESS_LOADING]
    mim(user, 'train', 'mmrepghost', 'repghost_1_0x_tiny-imagenet.py', '--work-dir',
        'work_dirs/cls', '--cfg-options', *options)
    log = mim(user, 'test', 'mmrepghost', 'repghost_1_0x_tiny-imagenet.py', '--checkpoint',
              'work_dirs/cls/epoch_1.pth', '--cfg-options', *options)
    assert re.search(r'accuracy/top1: [0-9.]+', log), log[-2000:]
    assert 'test model deployed (backbone)' in log
    # mim looks shipped configs up by file name alone: a name two folders share is refused
    log = mim(user, 'train', 'mmrepghost', 'retinanet/repghost_1_3x.py', returncode='fails')
    assert 'multiple config files with same name' in log
    assert 'retinanet/repghost_1_3x.py' in log and 'mask_rcnn/repghost_1_3x.py' in log
    # an unknown shipped base: one error naming where shipped configs live
    with open(osp.join(project, 'typo.py'), 'w') as f:
        f.write("_base_ = 'mmrepghost::retinanet/repghost_1_3.py'\n")
    log = mim(user, 'train', 'mmrepghost', 'typo.py', returncode='fails')
    assert ('mmrepghost::retinanet/repghost_1_3.py is not a shipped mmrepghost config: '
            f'shipped configs live in {user["site"]}/mmrepghost/.mim/configs') in log
    assert 'closest: retinanet/repghost_1_3x.py' in log
