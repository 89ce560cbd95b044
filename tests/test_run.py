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


def tiny_dcgan():
    import keras
    from conftest import TINY
    from model import DCGAN
    dcgan = DCGAN(**TINY)
    dcgan.compile(d_optimizer=keras.optimizers.Adam(), g_optimizer=keras.optimizers.Adam())
    return dcgan


def test_the_best_step_and_its_fid_are_one_checkpoint_and_another_reference_starts_afresh(tmp_path, capsys,
                                                                                         monkeypatch):
    dcgan = tiny_dcgan()
    manager = run.best_manager(dcgan, str(tmp_path), record=True)
    assert run.best_record(manager.directory) is None
    assert run.save_best(manager, 5, 3.0, "folder A")
    assert not run.save_best(manager, 9, 4.0, "folder A")  # worse: the step-5 checkpoint stays
    assert run.best_record(manager.directory) == {"step": 5, "fid": 3.0, "reference": "folder A"}

    # A kill after the checkpoint is published and before best.json: the checkpoint holds its own FID.
    def killed(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(run, "save_json", killed)
    with pytest.raises(KeyboardInterrupt):
        run.save_best(manager, 12, 2.5, "folder A")
    monkeypatch.undo()
    assert run.best_record(manager.directory) == {"step": 12, "fid": 2.5, "reference": "folder A"}
    assert not run.save_best(manager, 14, 2.7, "folder A")

    # Scored against another reference, FIDs do not compare: the next step is kept whatever its FID, and said so.
    capsys.readouterr()
    assert run.save_best(manager, 20, 9.0, "folder B")
    assert capsys.readouterr().err.strip() == (
        f"Warning: the best step kept in {tmp_path}/best (step 12, FID 2.500) was scored against folder A, not folder B: "
        "its FID does not compare, so the best step is chosen afresh")
    assert run.best_record(manager.directory) == {"step": 20, "fid": 9.0, "reference": "folder B"}
    restored = tiny_dcgan()
    assert run.restore(run.best_manager(restored, str(tmp_path)), required=True)  # --step best, without the record
    assert int(restored.step) == int(dcgan.step)
