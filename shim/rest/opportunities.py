"""Opportunities: ``Lead`` over ``/opportunities`` and ``Stage`` over
``/opportunities/stages`` (SDK models ``RestV2Opportunity``, ``RestOpportunityStage``)."""

from __future__ import annotations

from shim.rest.spec import Column, TableSpec, rest_only

LEAD = TableSpec(
    "Lead",
    "/opportunities",
    "opportunities",
    {
        "Id": rest_only("int", "id", filter="opportunity_id", compare=True),
        "OpportunityTitle": Column("str", "opportunity_title", filter="opportunity_title",
                                   wildcard=True),
        "ContactID": Column("int", "contact.id", write="contact_id", text_id=True,
                            filter="contact_id"),
        "StageID": Column("int", "stage.id", write="stage_id", text_id=True, filter="stage_id"),
        "UserID": Column("int", "user.id", write="user_id", text_id=True, filter="user_id"),
        "AffiliateId": Column("int", "affiliate_id", text_id=True, filter="affiliate_id"),
        "NextActionDate": Column("date", "next_action_time"),
        "NextActionNotes": Column("str", "next_action_notes"),
        "OpportunityNotes": Column("str", "opportunity_notes"),
        "EstimatedCloseDate": Column("date", "estimated_close_time"),
        "ProjectedRevenueLow": Column("float", "projected_revenue_low"),
        "ProjectedRevenueHigh": Column("float", "projected_revenue_high"),
    },
    fidelity="approximate",
    notes="REST requires OpportunityTitle, ContactID and StageID on add (legacy did not); "
    "MonthlyRevenue, OrderRevenue, Objection and DateInStage are not translated",
)  # fmt: skip

STAGE = TableSpec(
    "Stage",
    "/opportunities/stages",
    "stages",
    {
        "Id": rest_only("int", "id"),
        "StageName": Column("str", "name"),
        "StageOrder": Column("int", "order"),
        "TargetNumDays": Column("int", "target_number_days"),
    },
    add_defaults={"order": 0, "target_number_days": 0, "probability": 0},
    fidelity="approximate",
    notes="read whole and filtered by keyshim (REST has no stage filters); REST requires a "
    "name, order, target days and probability on add: missing ones are sent as 0 "
    "(probability has no legacy field)",
)
