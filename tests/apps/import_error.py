"""A fal app whose file fails to import."""

import fal
import falweb_test_module_that_does_not_exist  # noqa: F401


class ImportError_(fal.App, name="import-error"):
    pass
