"""A train.py / test.py run: its composed configuration, checks, run folder, identity and
sacred experiments."""
