"""Email opt-in status as REST v2 serves it (``/emailAddresses/{email}/status``).

An address is known if it is on a contact or has a status record. Addresses on a contact
that never opted in are NON_MARKETABLE. An API opt-out makes an address MANUAL (a bounced or
otherwise blocked one keeps its status). An API opt-in moves only NON_MARKETABLE,
UNENGAGED_NON_MARKETABLE and MANUAL addresses back (to SINGLE_OPT_IN). Any other status
stays, and the PATCH answers 200 with ``opted_in: false``, the REST form of legacy ``optIn``
answering false.
"""

from __future__ import annotations

from typing import Any

from shim.simulator.asgi import Answer, json_answer
from shim.simulator.data import to_datetime
from shim.simulator.rest.http import Call, bad, check_keys, iso, missing
from shim.simulator.rest.store import EmailStatus, known_status, opt_in, opt_out


def get_email_status(call: Call) -> Answer:
    email = call.params["email"]
    return json_answer(200, _status_json(email, _email_status(call, email)))


def update_email_status(call: Call) -> Answer:
    email = call.params["email"]
    data = call.body()
    check_keys(data, {"opted_in", "reason"}, "email status")
    opted_in, reason = data.get("opted_in"), data.get("reason")
    if not isinstance(opted_in, bool) or not isinstance(reason, str) or not reason:
        raise bad("opted_in (boolean) and reason (string) are required", "email", email)
    _email_status(call, email)  # 404 for an unknown address
    change = opt_in if opted_in else opt_out
    status = change(call.db, email, reason, to_datetime(call.now))
    return json_answer(200, _status_json(email, status))


def _email_status(call: Call, email: str) -> EmailStatus:
    """The address's record, made NON_MARKETABLE on first look; 404 for an unknown address."""
    status = known_status(call.db, email, to_datetime(call.now))
    if status is None:
        raise missing("email address", email)
    return status


def _status_json(email: str, status: EmailStatus) -> dict[str, Any]:
    return {
        "email": email,
        "opted_in": status.opted_in,
        "status": status.status,
        "create_time": iso(status.create_time),
    }
