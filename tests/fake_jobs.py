"""A stand-in for train.py / test.py in the executor tests: a `fake` fixture making Jobs whose
script does what the test asks (fail until a file exists, need a file, meet another job, report
the GPU and threads it got, refuse to run beside another), then writes its output."""

import textwrap

import pytest

from panet.reproduce import Job

FAKE_JOB = textwrap.dedent('''
    """A stand-in for train.py / test.py: does what its options say, then writes --output."""
    import argparse, json, os, sys, time
    from pathlib import Path

    parser = argparse.ArgumentParser()
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--fail-unless", type=Path)  # fail while this file is missing
    parser.add_argument("--require", type=Path)  # must exist when the job starts
    parser.add_argument("--meet", nargs=3, metavar=("DIR", "ME", "PARTNER"))  # rendezvous
    parser.add_argument("--env-out", type=Path)  # where to write the GPU and threads it got
    parser.add_argument("--alone", type=Path)  # no other job holding this marker may run
    parser.add_argument("--order", type=Path)  # append the job's output folder name
    args, rest = parser.parse_known_args()
    if args.order:
        with open(args.order, "a") as file:
            file.write(args.output.parent.name + "\\n")
    if args.require and not args.require.exists():
        sys.exit(f"missing prerequisite {args.require}")
    if args.fail_unless and not args.fail_unless.exists():
        print("some output")
        sys.exit(f"boom: {args.fail_unless} is missing")
    if args.env_out:
        args.env_out.write_text(json.dumps({key: os.environ.get(key) for key in
                                            ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")}))
    if args.meet:  # both jobs of a pair only finish if they run at the same time
        folder, me, partner = map(Path, args.meet)
        (folder / me).touch()
        deadline = time.time() + 60
        while not (folder / partner).exists():
            if time.time() > deadline:
                sys.exit(f"{partner} never ran beside {me}")
            time.sleep(0.05)
    if args.alone:
        descriptor = os.open(args.alone, os.O_CREAT | os.O_EXCL)  # fails if another runs
        time.sleep(0.3)
        os.close(descriptor)
        os.unlink(args.alone)
    for arg in rest:
        if arg.startswith("test.cache_dir="):
            Path(arg.split("=", 1)[1]).mkdir(parents=True, exist_ok=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("done")
''')


@pytest.fixture
def fake(tmp_path):
    """fake(name, *options, needs=(), cleanup=()): a Job running the stand-in script, its
    output <tmp>/runs/<name>/results.json."""
    script = tmp_path / "job.py"
    script.write_text(FAKE_JOB)

    def make(name, *options, needs=(), cleanup=()):
        output = tmp_path / "runs" / name / "results.json"
        return Job(name, ("python", str(script), "--output", str(output), *map(str, options)),
                   output, tuple(needs), images=0, cleanup=tuple(cleanup))

    return make
