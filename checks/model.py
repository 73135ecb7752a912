"""The structured results every check returns, and the finding kinds of the JSON report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from cutover.core.state.waivers import CHECKS  # noqa: F401 - defined with the waiver store that checks names

PASS, FAIL, ERROR = "pass", "fail", "error"

FINDING_KINDS = (
    "file_missing_in_shadow",
    "file_missing_in_legacy",
    "file_processed_twice",
    "status_mismatch",
    "records_mismatch",
    "row_count_mismatch",
    "run_failed",
    "run_missing",
    "duration_regression",
    "quality_failed",
    "schema_mismatch",
    "values_mismatch",
    "row_missing_in_shadow",
    "row_missing_in_legacy",
    "duplicate_key",
    "stale_claim",
    "shadow_write_on_main",
    "run_crashed",
    "fire_time_mismatch",  # an observe-only job ran off the translated schedule (checks.jobparity)
)


@dataclass(frozen=True)
class Finding:
    kind: str
    file: str | None = None
    legacy: Any = None
    shadow: Any = None
    detail: str = ""

    def __post_init__(self):
        if self.kind not in FINDING_KINDS:
            raise ValueError(f"unknown finding kind {self.kind}")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class CheckResult:
    name: str
    verdict: str
    findings: list[Finding] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    waiver: dict | None = None  # set when a failing check is waived
    seconds: float | None = None  # how long the check took (reports: JUnit time attributes)

    @classmethod
    def from_findings(cls, name: str, findings: list[Finding], metrics: dict | None = None) -> "CheckResult":
        return cls(name, FAIL if findings else PASS, findings, metrics or {})

    @classmethod
    def errored(cls, name: str, message: str) -> "CheckResult":
        return cls(name, ERROR, [], {}, message)

    @property
    def effective(self) -> str:
        """The verdict that counts for the ingestion: a waived failure passes."""
        if self.verdict == FAIL and self.waiver is not None:
            return PASS
        return self.verdict

    def as_dict(self) -> dict:
        d = {"name": self.name, "verdict": self.verdict, "findings": [f.as_dict() for f in self.findings],
             "metrics": self.metrics}
        if self.error:
            d["error"] = self.error
        if self.waiver:
            d["waiver"] = self.waiver
        if self.seconds is not None:
            d["seconds"] = round(self.seconds, 3)
        return d


def combine(results: list[CheckResult]) -> str:
    eff = [r.effective for r in results]
    if ERROR in eff:
        return ERROR
    if FAIL in eff:
        return FAIL
    return PASS
