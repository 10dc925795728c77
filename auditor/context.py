"""Everything the checks of one record folder may look at, gathered once by the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from auditor.models import Finding, Significance

if TYPE_CHECKING:
    from auditor.intake import RecordFolder
    from auditor.options import AuditOptions
    from auditor.parse.logs import ParsedLog
    from auditor.parse.readme import ReadmeInfo
    from auditor.parse.submission import Submission
    from auditor.unwrap import SourceFile


@dataclass
class RecordContext:
    record: RecordFolder
    options: AuditOptions
    sources: list[SourceFile] = field(default_factory=list)
    logs: list[ParsedLog] = field(default_factory=list)
    submission: Submission | None = None
    submission_file: str | None = None  # relative path of the metadata JSON that was parsed
    readme: ReadmeInfo | None = None
    intake_findings: list[Finding] = field(default_factory=list)
    significance: Significance | None = None  # set by the significance check
    # Logs that back the claimed score (set by the claims check; None = no claim explained)
    claim_logs: set[str] | None = None
    rerun_summary: dict | None = None  # set by the rerun check (`audit --rerun`)

    @property
    def entry_sources(self) -> list[SourceFile]:
        return [s for s in self.sources if s.is_entry]

    @property
    def unique_logs(self) -> list[ParsedLog]:
        """Logs with byte-identical duplicates removed (train.log is often a copy of a seed log)."""
        seen: set[str] = set()
        out = []
        for log in self.logs:
            if log.sha256 and log.sha256 in seen:  # "" = unreadable, never merged
                continue
            seen.add(log.sha256)
            out.append(log)
        return out
