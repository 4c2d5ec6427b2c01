"""The method names of Keap's legacy XML-RPC API (its published service reference), so that
``--allow`` can warn about a name no script could ever call and suggest the closest one."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Sequence

_SERVICES: dict[str, str] = {
    "AffiliateProgramService": "getAffiliatePrograms getAffiliatesByProgram "
    "getProgramsForAffiliate getResourcesForAffiliateProgram",
    "AffiliateService": "affClawbacks affCommissions affPayouts affRunningTotals affSummary "
    "getRedirectLinksForAffiliate",
    "APIEmailService": "addEmailTemplate attachEmail getAvailableMergeFields getEmailTemplate "
    "getOptStatus optIn optOut sendEmail updateEmailTemplate",
    "ContactService": "add addToCampaign addToGroup addWithDupCheck "
    "applyActivityHistoryTemplate findByEmail getActivityHistoryTemplateMap "
    "getNextCampaignStep linkContacts listLinkedContacts load merge pauseCampaign "
    "removeFromCampaign removeFromGroup rescheduleCampaignStep resumeCampaignForContact "
    "runActionSequence unlinkContacts update",
    "CreditCardSubmissionService": "requestCreditCardId requestSubmissionToken",
    "DataService": "add addCustomField authenticateUser count delete echo findByField "
    "getAppSetting getAppointmentICal getTemporaryKey getUserInfo load query "
    "queryWithOrderBy update updateCustomField",
    "DiscountService": "addCategoryAssignmentToCategoryDiscount addCategoryDiscount "
    "addFreeTrial addOrderTotalDiscount addProductTotalDiscount addShippingTotalDiscount "
    "getCategoryAssignmentsForCategoryDiscount getCategoryDiscount getFreeTrial "
    "getOrderTotalDiscount getProductTotalDiscount getShippingTotalDiscount",
    "FileService": "getDownloadUrl getFile renameFile replaceFile uploadFile",
    "FunnelService": "achieveGoal",
    "InvoiceService": "addManualPayment addOrderCommissionOverride addOrderItem "
    "addPaymentPlan addRecurringCommissionOverride addRecurringOrder calculateAmountOwed "
    "chargeInvoice createBlankOrder createInvoiceForRecurring deleteInvoice "
    "deleteSubscription getAllPaymentOptions getOrderId getPayments getPluginStatus "
    "locateExistingCard recalculateTax updateJobRecurringNextBillDate validateCreditCard",
    "OrderService": "placeOrder",
    "ProductService": "deactivateCreditCard decreaseInventory decrementInventory "
    "getInventory increaseInventory incrementInventory",
    "SearchService": "getAllReportColumns getAvailableQuickSearches getDefaultQuickSearch "
    "getSavedSearchResults getSavedSearchResultsAllFields quickSearch",
    "ShippingService": "getAllShippingOptions getFlatRateShippingOption "
    "getOrderQuantityShippingOption getOrderTotalShippingOption "
    "getProductBasedShippingOption getUpsShippingOption getWeightBasedShippingOption",
    "WebFormService": "getHTML getMap",
}

#: Every ``Service.method`` name of the legacy API.
METHODS: frozenset[str] = frozenset(
    f"{service}.{name}" for service, names in _SERVICES.items() for name in names.split()
)


def unknown_patterns(patterns: Sequence[str]) -> list[tuple[str, str | None]]:
    """The allowlist patterns that match no legacy method, each with the closest known name
    (or ``Service.*``) to suggest, if any is close."""
    out: list[tuple[str, str | None]] = []
    candidates = sorted(METHODS | {f"{s}.*" for s in _SERVICES})
    for pattern in patterns:
        if " " in pattern:  # a REST pattern (``GET /contacts*``), not a legacy method
            continue
        if any(fnmatch.fnmatchcase(m, pattern) for m in METHODS):
            continue
        close = difflib.get_close_matches(pattern, candidates, n=1, cutoff=0.6)
        out.append((pattern, close[0] if close else None))
    return out
