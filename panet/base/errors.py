"""Errors whose message says everything: train.py and test.py print them alone, on one line,
without a traceback (`panet.run.experiments.PanetExperiment` hands them to sacred as its one-line error;
this module imports no sacred, so that the code raising them does not either)."""


class OneLineError(Exception):
    """An error whose message says everything: printed alone, without a traceback."""
