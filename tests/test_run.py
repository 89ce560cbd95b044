import os

import pytest

import run
import utils


def test_a_folder_held_by_one_process_is_refused_to_another_until_that_one_dies(tmp_path):
    import subprocess
    import sys
    folder = str(tmp_path / "run")
    with run.held_alone(folder, "taken"):
        with pytest.raises(utils.DCGANError, match="^taken$"):  # a second hold, even in this process
            with run.held_alone(folder, "taken"):
                pass
    assert not os.path.exists(folder)  # made for the hold and left empty: removed
    code = (f"import sys, run\nwith run.held_alone({folder!r}, ''):\n"
            f"    open({os.path.join(folder, 'x')!r}, 'w').close()\n"
            "    print('held', flush=True)\n    sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=os.path.dirname(run.__file__),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(utils.DCGANError):
            with run.held_alone(folder, "taken"):
                pass
    finally:
        holder.kill()  # kill -9: nothing of it runs, the kernel drops the lock
        holder.wait()
    with run.held_alone(folder, "taken"):
        pass
    assert os.listdir(folder) == ["x"]  # a folder with something in it stays


def test_a_file_system_without_locks_runs_unlocked(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(fcntl, "flock", no_locks)
    with run.held_alone(str(tmp_path), "taken"):
        ran = True
    assert ran
