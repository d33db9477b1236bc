"""The data layer: where a dataset's files are (the data dir, else the download cache, downloaded and
checksum-checked when absent), the datasets as arrays with a validation split drawn from the seed, and the
training and evaluation input pipelines.

May import: the base modules.
"""
