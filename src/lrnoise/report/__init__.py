"""The report: the tracking store's runs read into frames, the paper's tables and the figures per noise
configuration, the claims in words, one HTML page, the files written and logged as a `report` run.

May import: the base modules, store, noise, analysis.
"""
