"""The one error type users see: a one-line message naming what was wrong and what is allowed."""


class LrnoiseError(ValueError):
    pass
