"""The paper's tables, analysis and figures reproduced (`scripts/reproduce.py` drives them):
`specs` (which settings each table evaluates, the paper's numbers), `jobs` (the train.py / test.py
jobs and their commands), `outputs` (when a job is done: its output's identity), `jobrun` (order,
records, where each job stands), `executors` and `slurm` (where jobs run), `grid` (the table's
cells from the results)."""

from panet.report.render import render_latex, render_markdown
from panet.reproduce.jobs import Job, Scale, Setting, Variant, jobs_for, test_job, train_job
from panet.reproduce.specs import TABLES

__all__ = ["Job", "Scale", "Setting", "TABLES", "Variant", "jobs_for", "render_latex",
           "render_markdown", "test_job", "train_job"]
