"""Legacy (APScheduler 3) schedules translated to Prefect 3 schedules, and proven equivalent.

- :func:`translate` -> :class:`Translation` (``to_prefect_schedule()`` for deployments);
- :func:`verify` -> :class:`VerifyResult`: both sides' real fire times compared over a horizon.

Neither module imports prefect at import time.
"""

from cutover.core.schedule.translate import Translation, translate
from cutover.core.schedule.verify import Difference, VerifyResult, verify

__all__ = ["Difference", "Translation", "VerifyResult", "translate", "verify"]
