"""The environment bootstrap's failure modes: each names the failing step and a hint."""
import os
import stat
import subprocess
import sys
import tarfile

from tests.conftest import REPO_ROOT


def run(script, *args, env=None, cwd=REPO_ROOT):
    return subprocess.run(['bash', os.path.join(REPO_ROOT, 'tools', script), *args],
                          capture_output=True, text=True, env={**os.environ, **(env or {})},
                          cwd=cwd, check=False, timeout=120)


def test_unsupported_python_is_refused(tmp_path):
    fake = tmp_path / 'python3.8'
    fake.write_text('#!/bin/sh\necho 3.8\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    result = run('bootstrap_env.sh', env=dict(PYTHON=str(fake),
                                              MMREPGHOST_VENV=str(tmp_path / 'venv'),
                                              MMREPGHOST_CACHE=str(tmp_path / 'cache')))
    assert result.returncode == 1
    assert 'FAILED during: choosing the Python interpreter' in result.stderr
    assert 'Python 3.8' in result.stderr and 'one of 3.10 3.11 3.12' in result.stderr
    assert not (tmp_path / 'venv').exists()


def test_missing_compiler_is_reported(tmp_path):
    result = run('build_mmcv.sh', sys.executable, str(tmp_path / 'wheels/key'),
                 str(tmp_path / 'build.log'),
                 env=dict(MMCV_VERSION='2.1.0', CXX=str(tmp_path / 'no-such-c++')))
    assert result.returncode == 1
    assert 'FAILED during: checking the mmcv build prerequisites' in result.stderr
    assert 'no C++ compiler found' in result.stderr and 'no-such-c++' in result.stderr


def test_mmcv_build_error_names_the_log(tmp_path):
    """A failing compile leaves no wheel in the cache and tells where the log is."""
    src = tmp_path / 'mmcv-2.1.0'
    src.mkdir()
    (src / 'setup.py').write_text(
        "extra = ['-std=c++17']\nraise SystemExit('simulated compiler error')\n")
    sdist = tmp_path / 'mmcv-2.1.0.tar.gz'
    with tarfile.open(sdist, 'w:gz') as tar:
        tar.add(src, arcname='mmcv-2.1.0')
    log = tmp_path / 'logs/build.log'
    wheel_dir = tmp_path / 'wheels/key'
    result = run('build_mmcv.sh', sys.executable, str(wheel_dir), str(log),
                 env=dict(MMCV_VERSION='2.1.0', MMREPGHOST_MMCV_SDIST=str(sdist)))
    assert result.returncode == 1
    assert 'FAILED during: compiling mmcv 2.1.0 ops' in result.stderr
    assert f'the full log is {log}' in result.stderr
    assert 'simulated compiler error' in log.read_text()
    assert not wheel_dir.exists()
    assert not [p for p in wheel_dir.parent.iterdir() if p.name.startswith('.build-')]


def test_sdist_without_the_flag_to_patch_is_refused(tmp_path):
    src = tmp_path / 'mmcv-2.1.0'
    src.mkdir()
    (src / 'setup.py').write_text("print('no std flag here')\n")
    sdist = tmp_path / 'mmcv-2.1.0.tar.gz'
    with tarfile.open(sdist, 'w:gz') as tar:
        tar.add(src, arcname='mmcv-2.1.0')
    result = run('build_mmcv.sh', sys.executable, str(tmp_path / 'w/k'), str(tmp_path / 'l.log'),
                 env=dict(MMCV_VERSION='2.1.0', MMREPGHOST_MMCV_SDIST=str(sdist)))
    assert result.returncode == 1
    assert 'no -std=c++17 flag to patch' in result.stderr


def test_successful_build_publishes_the_wheel_atomically(tmp_path):
    """The success path, with a stand-in source package that builds in seconds."""
    src = tmp_path / 'mmcv-2.1.0'
    src.mkdir()
    (src / 'setup.py').write_text(
        "import os\nfrom setuptools import setup\n"
        "assert '-std=c++20' in open(__file__).read().replace('c++17', '')\n"
        "assert os.environ['MMCV_WITH_OPS'] == '1' and os.environ['FORCE_CUDA'] == '0'\n"
        "extra_compile_args = ['-std=c++17']\n"
        "setup(name='mmcv', version='2.1.0', py_modules=[])\n")
    sdist = tmp_path / 'mmcv-2.1.0.tar.gz'
    with tarfile.open(sdist, 'w:gz') as tar:
        tar.add(src, arcname='mmcv-2.1.0')
    wheel_dir = tmp_path / 'wheels/mmcv-2.1.0-torch-x-py3.11-cpu'
    result = run('build_mmcv.sh', sys.executable, str(wheel_dir), str(tmp_path / 'build.log'),
                 env=dict(MMCV_VERSION='2.1.0', MMREPGHOST_MMCV_SDIST=str(sdist)))
    assert result.returncode == 0, result.stderr
    assert 'compiling mmcv ops, about 15 minutes on 2 cores' in result.stdout
    assert [p.name for p in wheel_dir.iterdir()] == ['mmcv-2.1.0-py3-none-any.whl']
    assert sorted(p.name for p in wheel_dir.parent.iterdir()) == [wheel_dir.name]  # no leftovers
