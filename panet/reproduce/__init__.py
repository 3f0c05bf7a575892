"""The paper's Tables 1-6 reproduced: the jobs they need (`jobs`: planning and commands), which
settings each table evaluates (`specs`), the cells computed from the jobs' results (`grid`), and
the table as Markdown and LaTeX (`report`, `render`). `scripts/reproduce.py` drives them."""

from panet.reproduce.grid import (BOOTSTRAP_RESAMPLES, Provenance, cell, describe_results, read_result,
                   read_results, resampled_results, table_report)
from panet.reproduce.jobs import (FEATURE_CACHE_GB, FOLDS, PAPER_SEED, REPO_ROOT, Job, Scale, Setting, Variant,
                   changed_settings, composition, jobs_for, test_job, train_job)
from panet.report.render import format_number, markdown_table, render_latex, render_markdown
from panet.report.render import MISSING, Measured, Number, Report
from panet.reproduce.specs import (PAPER_RESULTS, PROTOTYPE_DISTANCE_MODELS, PROTOTYPE_DISTANCE_PAPER_KEY, TABLES,
                    Column, Method, TableSpec, encoder_parameters, load_paper_results,
                    loss_curve_models, paper_value)

__all__ = ["BOOTSTRAP_RESAMPLES", "Column", "FEATURE_CACHE_GB", "FOLDS", "Job", "MISSING",
           "Measured", "Method", "Number", "PAPER_RESULTS", "PAPER_SEED",
           "PROTOTYPE_DISTANCE_MODELS", "PROTOTYPE_DISTANCE_PAPER_KEY", "Provenance", "REPO_ROOT",
           "Report", "Scale", "Setting", "TABLES", "TableSpec", "Variant", "cell",
           "changed_settings", "composition",
           "describe_results", "encoder_parameters", "format_number", "jobs_for",
           "load_paper_results", "loss_curve_models", "markdown_table", "paper_value",
           "read_result", "read_results", "render_latex", "render_markdown",
           "resampled_results", "table_report", "test_job", "train_job"]
