"""One detector module per family; each exposes ``detect(analysis) -> list[Finding]``."""

from __future__ import annotations

from auditor.static.detectors import bos_smear, network, ordering, selection, target, valdata

DETECTORS = (target, bos_smear, ordering, valdata, selection, network)

# rule id -> detector module (for the docs and tests)
RULES = {
    "C101": target,
    "C102": target,
    "C201": target,
    "C103": bos_smear,
    "C301": ordering,
    "C302": ordering,
    "C401": ordering,
    "C303": valdata,
    "C402": selection,
    "HYG008": network,
}
