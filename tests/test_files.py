"""panet.base.files.writable_problem: the output-folder check that train.py and test.py run before
any work, on every torchrun rank at once."""

import threading

from panet.base.files import writable_problem


def test_a_writable_folder_passes_and_is_left_as_it_was(tmp_path):
    (tmp_path / "kept.txt").write_text("x")
    assert writable_problem(tmp_path) is None
    assert writable_problem(tmp_path / "a" / "b") is None
    assert [p.name for p in tmp_path.iterdir()] == ["kept.txt"]


def test_a_folder_below_a_file_is_refused_with_the_reason(tmp_path):
    (tmp_path / "file").write_text("x")
    assert writable_problem(tmp_path / "file") == "cannot write there (Not a directory)"
    assert writable_problem(tmp_path / "file" / "run") == "cannot write there (Not a directory)"


def test_processes_checking_the_same_missing_folder_at_once_all_pass(tmp_path):
    """Two checkers of one missing folder, started together many times (as torchrun's ranks
    do): neither may find the folder removed by the other's check."""
    target, rounds = tmp_path / "runs" / "fold0", 300
    start = threading.Barrier(2)
    problems = []

    def check():
        for _ in range(rounds):
            start.wait()
            why = writable_problem(target)
            if why is not None:
                problems.append(why)

    threads = [threading.Thread(target=check) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert problems == []
    assert list(tmp_path.iterdir()) == []
