"""Kept for panet.reproduce, which imports the table's data from here: they live in
`panet.report.render` (remove this module once panet.reproduce imports them from there)."""

from panet.report.render import MISSING, Entry, Measured, Number, Report  # noqa: F401
