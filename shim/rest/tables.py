"""The registry of translated DataService tables: legacy table name -> its ``Table``.

One line per table. A flat table is a ``spec.TableSpec`` written next to its REST resource's
other translations; Contact and ContactGroupAssign implement ``spec.Table`` by hand.
"""

from __future__ import annotations

from shim.rest import (
    category_assign,
    contacts,
    forms,
    notes,
    opportunities,
    people,
    social,
    tags,
    transactions,
)
from shim.rest import commerce_tables as shop
from shim.rest.spec import Table, TableSpec

TABLES: dict[str, Table] = {
    "Contact": contacts.CONTACT_TABLE,
    "ContactGroup": tags.TAGS,
    "ContactGroupCategory": tags.CATEGORIES,
    "ContactGroupAssign": tags.ASSIGN_TABLE,
    "Product": shop.PRODUCT,
    "ProductCategory": shop.PRODUCT_CATEGORY,
    "Affiliate": shop.AFFILIATE,
    "Referral": shop.REFERRAL,
    "CreditCard": shop.CREDIT_CARD,
    "RecurringOrder": shop.RECURRING_ORDER,
    "Job": shop.JOB,
    "Invoice": shop.INVOICE,
    "OrderItem": shop.ORDER_ITEM,
    "InvoiceItem": shop.INVOICE_ITEM,
    "Payment": shop.PAYMENT,
    "SubscriptionPlan": shop.SUBSCRIPTION_PLAN,
    "InvoicePayment": shop.INVOICE_PAYMENT,
    "User": people.USER,
    "Company": people.COMPANY,
    "LeadSource": people.LEAD_SOURCE,
    "LeadSourceCategory": people.LEAD_SOURCE_CATEGORY,
    "Lead": opportunities.LEAD,
    "Stage": opportunities.STAGE,
    "ContactAction": notes.CONTACT_ACTION,
    "DataFormField": forms.DATA_FORM_FIELD,
    "DataFormGroup": forms.DATA_FORM_GROUP,
    "DataFormTab": forms.DATA_FORM_TAB,
    # -- charges (rest-commerce3) --
    "CCharge": transactions.CCHARGE,
    # -- joins and arrays REST keeps inside another resource --
    "ProductCategoryAssign": category_assign.PRODUCT_CATEGORY_ASSIGN,
    "SocialAccount": social.SOCIAL_ACCOUNT,
}


def specs() -> list[TableSpec]:
    """The ``TableSpec``s (for the docs and the spec tests): the tables declared by one, and
    the parts of hand-written tables that use them (``parts``)."""
    found: list[TableSpec] = []
    for t in TABLES.values():
        found += [t] if isinstance(t, TableSpec) else list(getattr(t, "parts", ()))
    return found
