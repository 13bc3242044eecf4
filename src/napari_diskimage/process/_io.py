"""What processing takes from the rest of the package's streaming and steps.

Each name is imported here once, so that moving it elsewhere in the
package is one edit.
"""

from .._diskimage import ProgressCallback, Steps, run_steps
from .._io import _kernel_copy, _read_box, _Source

__all__ = [
    "ProgressCallback",
    "Steps",
    "_Source",
    "_kernel_copy",
    "_read_box",
    "run_steps",
]
