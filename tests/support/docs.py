"""What docs/tracking.md names: every `backticked` token of the page, and which store names of a run it leaves
out (a per-level metric counts as its documented pattern, a configuration's prefix as `<name>/`)."""

import re

from support import ROOT

TRACKING = ROOT / "docs" / "tracking.md"
LEVEL = re.compile(r"^(?P<column>[a-z_0-9]+?)_(?P<axis>eta|t)_[0-9a-z.]+$")  # normalized_accuracy_eta_10


def documented() -> set[str]:
    """Every token in backticks on the tracking page (a list like `a`, `b` gives each)."""
    return set(re.findall(r"`([^`\s]+)`", TRACKING.read_text()))


def undocumented(keys) -> list[str]:
    """The store names in `keys` the tracking page does not name (per-level metrics as
    `<column>_<axis>_<level>`, a configuration's metrics as `<name>/<metric>`)."""
    known, missing = documented(), []
    for key in keys:
        bare = key.split("/", 1)[1] if "/" in key else key
        level = LEVEL.match(bare)
        if bare in known or (level and f"{level['column']}_<axis>_<level>" in known):
            continue
        missing.append(key)
    return sorted(missing)
