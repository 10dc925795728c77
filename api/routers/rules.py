"""The rule catalog, as JSON and as HTML pages that the report links to."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

import rules
from api import html
from api.schemas import ErrorOut, RuleList, RuleOut

router = APIRouter(tags=["rules"])


def rule_out(rule: rules.Rule, full: bool) -> RuleOut:
    return RuleOut(id=rule.id, name=rule.name, condition=rule.condition.value, severity=rule.severity.value,
                   confidence=rule.confidence.value, summary=rule.summary, references=list(rule.references),
                   doc=rule.doc if full else None, html_url=f"/rules/{rule.id}")


def _get(rule_id: str) -> rules.Rule:
    try:
        return rules.get(rule_id.upper())
    except KeyError:
        raise HTTPException(404, detail=f"unknown rule {rule_id!r}") from None


@router.get("/v1/rules", response_model=RuleList)
def list_rules() -> RuleList:
    return RuleList(rules=[rule_out(r, full=False) for r in rules.catalog().values()])


@router.get("/v1/rules/{rule_id}", response_model=RuleOut, responses={404: {"model": ErrorOut}})
def get_rule(rule_id: str) -> RuleOut:
    return rule_out(_get(rule_id), full=True)


@router.get("/rules", response_class=HTMLResponse, include_in_schema=False)
def rules_page(request: Request) -> HTMLResponse:
    return HTMLResponse(html.rules_page(request, list(rules.catalog().values())))


@router.get("/rules/{rule_id}", response_class=HTMLResponse, include_in_schema=False)
def rule_page(rule_id: str, request: Request) -> HTMLResponse:
    return HTMLResponse(html.rule_page(request, _get(rule_id)))
