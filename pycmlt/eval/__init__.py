"""Deprecated alias of pycmlt.evaluation, kept for one release: the package was renamed because
`eval` shadowed the builtin, and its longtail.py is now classification_metrics.py (pycmlt/data has
its own longtail.py). `import pycmlt.eval` and `pycmlt.eval.<module>` warn, then give the objects
of pycmlt.evaluation."""
from pycmlt.evaluation import __all__  # noqa: F401 (what `from pycmlt.eval import *` gives)
from pycmlt.ops._deprecation import moved_package

__getattr__ = moved_package(__name__, "pycmlt.evaluation", {"longtail": "classification_metrics"})
