"""Progress off a terminal (panet.base.monitor): a line every `every` steps, at the last step,
and after a silence of QUIET_SECONDS, never a line per step."""

from panet.base.monitor import QUIET_SECONDS, Progress


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def printed_steps(capsys, total: int, every: int, step_seconds: float) -> list:
    clock = Clock()
    with Progress(total, desc="test run", every=every, interactive=False, clock=clock) as bar:
        for _ in range(total):
            clock.now += step_seconds
            bar.update({"loss": 0.5})
    lines = capsys.readouterr().out.splitlines()
    assert all(line.startswith("test run ") for line in lines)
    return [int(line.split()[2].split("/")[0]) for line in lines]


def test_fast_steps_print_every_tenth_and_the_last(capsys):
    assert printed_steps(capsys, total=1000, every=100, step_seconds=0.01) == list(
        range(100, 1001, 100))
    assert printed_steps(capsys, total=25, every=10, step_seconds=0.01) == [10, 20, 25]


def test_slow_steps_print_after_each_quiet_minute(capsys):
    step_seconds = 25.0  # a line after the third step of silence
    lines, last = [], 0  # the rule, written out: the silence restarts at every line
    for step in range(1, 21):
        if step % 10 == 0 or step == 20 or (step - last) * step_seconds >= QUIET_SECONDS:
            lines.append(step)
            last = step
    assert lines == [3, 6, 9, 10, 13, 16, 19, 20]
    assert printed_steps(capsys, total=20, every=10, step_seconds=step_seconds) == lines


def test_the_line_states_the_rate_and_the_remaining_time(capsys):
    assert printed_steps(capsys, total=4, every=2, step_seconds=1.5) == [2, 4]
    clock = Clock()
    bar = Progress(10, desc="train step", every=5, interactive=False, clock=clock)
    for _ in range(4):
        clock.now += 2.0
        bar.update()
    assert bar.line({"loss": 0.41214}).split() == [
        "train", "step", "4/10", "loss", "0.4121", "2", "s/step", "ETA", "0:00:12"]
