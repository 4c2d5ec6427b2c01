"""Legacy field names and types of the commerce tables (Keap's table documentation).

One string per table: ``Name:t`` per field, ``t`` one of ``i`` int, ``s`` string, ``f`` double,
``d`` dateTime; a trailing ``-`` marks a field the legacy API never let scripts write. The
simulator's schema reads these; keyshim's translator keeps its own table (shim/rest/commerce_map.py)
so that a shared mistake would show up in the equivalence tests.
"""

from __future__ import annotations

TABLE_SPECS: dict[str, str] = {
    "Product": (
        "Id:i- ProductName:s ProductPrice:f Sku:s ShortDescription:s Description:s "
        "Taxable:i Shippable:i Weight:f Status:i HideInStore:i IsPackage:i "
        "NeedsDigitalDelivery:i CountryTaxable:i StateTaxable:i CityTaxable:i TopHTML:s "
        "BottomHTML:s"
    ),
    "ProductCategory": ("Id:i- CategoryDisplayName:s CategoryOrder:i ParentId:i"),
    # Which product is in which category (REST: /productCategories/assignedProducts).
    "ProductCategoryAssign": "Id:i- ProductCategoryId:i ProductId:i",
    "Job": (
        "Id:i- JobTitle:s ContactId:i StartDate:d DueDate:d JobNotes:s ProductId:i "
        "JobStatus:s DateCreated:d OrderType:s OrderStatus:i JobRecurringId:i "
        "LastUpdated:d-"
    ),
    "Invoice": (
        "Id:i- ContactId:i- JobId:i- DateCreated:d- InvoiceTotal:f- TotalPaid:f- "
        "TotalDue:f- PayStatus:i- CreditStatus:i- RefundStatus:i- PayPlanStatus:i- "
        "AffiliateId:i- LeadAffiliateId:i- PromoCode:s- InvoiceType:s- Description:s- "
        "ProductSold:s- Synced:i- LastUpdated:d-"
    ),
    "OrderItem": (
        "Id:i- OrderId:i ProductId:i SubscriptionPlanId:i ItemName:s Qty:i CPU:f PPU:f "
        "ItemDescription:s ItemType:i Notes:s"
    ),
    "InvoiceItem": (
        "Id:i- InvoiceId:i- OrderItemId:i- InvoiceAmt:f- Discount:f- DateCreated:d- "
        "Description:s- CommissionStatus:i-"
    ),
    "Payment": (
        "Id:i- PayDate:d- UserId:i- PayAmt:f- PayType:s- ContactId:i- PayNote:s- "
        "InvoiceId:i- RefundId:i- ChargeId:i- Commission:f- Synced:i- LastUpdated:d-"
    ),
    "InvoicePayment": (
        "Id:i- InvoiceId:i- Amt:f- PayDate:d- PayStatus:s- PaymentId:i- "
        "SkipCommission:i- LastUpdated:d-"
    ),
    "Affiliate": (
        "Id:i- ContactId:i ParentId:i AffName:s AffCode:s Status:i NotifyLead:i "
        "NotifySale:i LeadCookieFor:i LeadAmt:f LeadPercent:f SaleAmt:f SalePercent:f "
        "PayoutType:i"
    ),
    "Referral": (
        "Id:i- ContactId:i AffiliateId:i DateSet:d DateExpires:d IPAddress:s Source:s Info:s Type:i"
    ),
    "SubscriptionPlan": (
        "Id:i- ProductId:i Cycle:i Frequency:i PreAuthorizeAmount:f Prorate:i Active:i "
        "PlanPrice:f NumberOfCycles:i"
    ),
    "RecurringOrder": (
        "Id:i- ContactId:i OriginatingOrderId:i ProgramId:i SubscriptionPlanId:i "
        "ProductId:i StartDate:d EndDate:d LastBillDate:d NextBillDate:d PaidThruDate:d "
        "BillingCycle:s Frequency:i BillingAmt:f Status:s ReasonStopped:s AutoCharge:i "
        "CC1:i CC2:i NumDaysBetweenRetry:i MaxRetry:i MerchantAccountId:i AffiliateId:i "
        "PromoCode:s Qty:i LastUpdated:d-"
    ),
    # One row per card charge attempt, approved or declined (what REST lists as transactions).
    "CCharge": (
        "Id:i- CCId:i- PaymentId:i- MerchantId:i- OrderNum:s- RefNum:s- ApprCode:s- Amt:f-"
    ),
    # What legacy let scripts read of a card: never the number or the CVV.
    "CreditCard": (
        "Id:i- ContactId:i NameOnCard:s FirstName:s LastName:s Email:s Last4:s "
        "CardType:s ExpirationMonth:s ExpirationYear:s Status:i BillAddress1:s "
        "BillCity:s BillState:s BillZip:s BillCountry:s"
    ),
}
#: Tables scripts read but the legacy API wrote only through InvoiceService/OrderService.
READ_ONLY = frozenset({"Invoice", "InvoiceItem", "Payment", "InvoicePayment", "CCharge"})
