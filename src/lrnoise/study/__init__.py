"""A whole grid as one resumable command: a `StudySpec` planned into jobs, each job's work in any process, the
dispatcher, local worker processes and Ray, GPU placement, then the report.

May import: the base modules, data, store, noise, training, report.
"""
