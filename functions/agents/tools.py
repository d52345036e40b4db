"""In-memory fakes of the services the support agent calls: CRM, refund policy, payments and mail.

Each fake behaves like the API it stands in for — the payments service refuses a second refund under
an idempotency key it has already seen and reverses a refund once per key, the mail service delivers
one message per key however often it is asked and hard-bounces an address it was told to reject —
and counts every call it receives per service and idempotency key in the module-level ``registry``.
The demo and the tests read those counts to prove that crashes and retries never duplicated an
effect, inject faults through it (``fail_next`` on the CRM and mail, ``registry.mail.reject``, observers),
and call ``registry.reset()`` between runs. Steps must reach the fakes through ``registry`` at call
time, never keep a reference: ``reset()`` replaces them.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from aetheris import NonRetryableError

Observer = Callable[[str, str, int], None]
"""Called as ``observer(service, idempotency_key, nth_call_with_that_key)`` when a fake is called."""


class Order(BaseModel):
    model_config = ConfigDict(frozen=True)

    order_id: str
    customer_id: str
    customer_email: str
    item: str
    amount_cents: int
    status: Literal["delivered", "in_transit", "cancelled"]
    final_sale: bool = False


class PolicyVerdict(BaseModel):
    model_config = ConfigDict(frozen=True)

    eligible: bool
    rule: str
    max_refund_cents: int
    explanation: str


class Refund(BaseModel):
    model_config = ConfigDict(frozen=True)

    refund_id: str
    order_id: str
    amount_cents: int


class Reversal(BaseModel):
    """Refunds of one order taken back (a saga's compensation); empty when none was left to reverse."""

    model_config = ConfigDict(frozen=True)

    reversal_id: str
    order_id: str
    refund_ids: tuple[str, ...]
    amount_cents: int


class MailReceipt(BaseModel):
    model_config = ConfigDict(frozen=True)

    message_id: str
    to: str


class UnknownOrder(NonRetryableError):
    def __init__(self, order_id: str) -> None:
        self.order_id = order_id
        super().__init__(f"the CRM has no order {order_id!r}; check the ticket's order id")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.order_id,))


class DuplicateRefund(NonRetryableError):
    """The payments service already refunded under this idempotency key: a second refund is refused."""

    def __init__(self, idempotency_key: str, refund_id: str) -> None:
        self.idempotency_key, self.refund_id = idempotency_key, refund_id
        super().__init__(f"refund {refund_id} was already issued under idempotency key {idempotency_key}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.idempotency_key, self.refund_id))


class MailRejected(NonRetryableError):
    """The mail service refused the recipient for good (a hard bounce): sending again cannot help."""

    def __init__(self, to: str) -> None:
        self.to = to
        super().__init__(f"mail to {to} was rejected permanently (550 mailbox unavailable); fix the address")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.to,))


SEED_ORDERS = (
    Order(
        order_id="ord-1001",
        customer_id="cus-42",
        customer_email="ada@example.com",
        item="Noise-cancelling headphones",
        amount_cents=12_900,
        status="delivered",
    ),
    Order(
        order_id="ord-1002",
        customer_id="cus-42",
        customer_email="ada@example.com",
        item="Clearance desk lamp",
        amount_cents=3_400,
        status="delivered",
        final_sale=True,
    ),
    Order(
        order_id="ord-1003",
        customer_id="cus-7",
        customer_email="grace@example.com",
        item="Espresso machine",
        amount_cents=74_900,
        status="in_transit",
    ),
    Order(
        order_id="ord-1004",
        customer_id="cus-7",
        customer_email="grace@example.com",
        item="USB-C charging cable",
        amount_cents=1_900,
        status="delivered",
    ),
)


class CallLog:
    """Every call each fake received, counted per ``(service, idempotency_key)``."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self.observers: list[Observer] = []

    def record(self, service: str, idempotency_key: str) -> int:
        with self._lock:
            self._counts[(service, idempotency_key)] += 1
            nth = self._counts[(service, idempotency_key)]
        for observer in list(self.observers):
            observer(service, idempotency_key, nth)
        return nth

    def count(self, service: str, idempotency_key: str | None = None) -> int:
        """Calls ``service`` received under ``idempotency_key`` (under any key when it is None)."""
        with self._lock:
            return sum(
                n for (s, k), n in self._counts.items() if s == service and idempotency_key in (None, k)
            )

    def by_service(self) -> dict[str, dict[str, int]]:
        with self._lock:
            table: dict[str, dict[str, int]] = {}
            for (service, key), n in self._counts.items():
                table.setdefault(service, {})[key] = n
            return table


class CrmService:
    def __init__(self, calls: CallLog) -> None:
        self._calls = calls
        self.orders = {order.order_id: order for order in SEED_ORDERS}
        self.fail_next = 0  # how many coming calls fail with a ConnectionError, as a flaky network does

    def get_order(self, order_id: str, *, idempotency_key: str) -> Order:
        self._calls.record("crm.get_order", idempotency_key)
        if self.fail_next > 0:
            self.fail_next -= 1
            raise ConnectionError("crm: connection reset by peer")
        order = self.orders.get(order_id)
        if order is None:
            raise UnknownOrder(order_id)
        return order


class PolicyService:
    AUTO_REFUND_LIMIT_CENTS = 50_000

    def __init__(self, calls: CallLog) -> None:
        self._calls = calls

    def check_refund(self, order: Order, customer_id: str, *, idempotency_key: str) -> PolicyVerdict:
        self._calls.record("policy.check_refund", idempotency_key)

        def deny(rule: str, explanation: str) -> PolicyVerdict:
            return PolicyVerdict(eligible=False, rule=rule, max_refund_cents=0, explanation=explanation)

        if order.customer_id != customer_id:
            return deny("wrong_customer", "The order belongs to a different customer.")
        if order.status != "delivered":
            return deny("not_delivered", f"The order is {order.status.replace('_', ' ')}, not delivered yet.")
        if order.final_sale:
            return deny("final_sale", f"{order.item} was a final-sale item, which cannot be refunded.")
        if order.amount_cents > self.AUTO_REFUND_LIMIT_CENTS:
            return deny("over_auto_limit", "Refunds of this size need a human agent's review.")
        return PolicyVerdict(
            eligible=True,
            rule="standard_return",
            max_refund_cents=order.amount_cents,
            explanation="Delivered, not final sale, within the automatic refund limit.",
        )


class PaymentsService:
    def __init__(self, calls: CallLog) -> None:
        self._calls = calls
        self.refunds: dict[str, Refund] = {}  # by idempotency key
        self.reversals: dict[str, Reversal] = {}  # by idempotency key
        self._lock = threading.Lock()

    def refund(self, order_id: str, amount_cents: int, *, idempotency_key: str) -> Refund:
        self._calls.record("payments.refund", idempotency_key)
        with self._lock:
            issued = self.refunds.get(idempotency_key)
            if issued is not None:
                raise DuplicateRefund(idempotency_key, issued.refund_id)
            refund = Refund(
                refund_id=f"re_{len(self.refunds) + 1:04d}", order_id=order_id, amount_cents=amount_cents
            )
            self.refunds[idempotency_key] = refund
            return refund

    def reverse(self, order_id: str, *, idempotency_key: str) -> Reversal:
        """Take back every refund of ``order_id`` not reversed yet; a repeated key returns the first
        reversal and takes nothing back again."""
        self._calls.record("payments.reverse", idempotency_key)
        with self._lock:
            done = self.reversals.get(idempotency_key)
            if done is not None:
                return done
            gone = {refund_id for r in self.reversals.values() for refund_id in r.refund_ids}
            taken = [r for r in self.refunds.values() if r.order_id == order_id and r.refund_id not in gone]
            reversal = Reversal(
                reversal_id=f"rv_{len(self.reversals) + 1:04d}",
                order_id=order_id,
                refund_ids=tuple(r.refund_id for r in taken),
                amount_cents=sum(r.amount_cents for r in taken),
            )
            self.reversals[idempotency_key] = reversal
            return reversal

    def outstanding_cents(self, order_id: str) -> int:
        """What the customer of ``order_id`` holds now: refunded minus reversed."""
        with self._lock:
            refunded = sum(r.amount_cents for r in self.refunds.values() if r.order_id == order_id)
            reversed_ = sum(r.amount_cents for r in self.reversals.values() if r.order_id == order_id)
            return refunded - reversed_


class MailService:
    def __init__(self, calls: CallLog) -> None:
        self._calls = calls
        self.outbox: dict[str, tuple[MailReceipt, str, str]] = {}  # key -> (receipt, subject, body)
        self.rejected: set[str] = set()  # addresses that hard-bounce
        self.fail_next = 0  # how many coming calls fail with a ConnectionError (the service is down)
        self._lock = threading.Lock()

    def reject(self, address: str) -> None:
        """From now on, mail to ``address`` bounces for good (``MailRejected``)."""
        with self._lock:
            self.rejected.add(address)

    def send(self, to: str, subject: str, body: str, *, idempotency_key: str) -> MailReceipt:
        """Deliver once per idempotency key; a repeated key returns the first delivery's receipt."""
        self._calls.record("mail.send", idempotency_key)
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                raise ConnectionError("mail: connection timed out")
            if to in self.rejected:
                raise MailRejected(to)
            if idempotency_key not in self.outbox:
                receipt = MailReceipt(message_id=f"msg_{len(self.outbox) + 1:04d}", to=to)
                self.outbox[idempotency_key] = (receipt, subject, body)
            return self.outbox[idempotency_key][0]


class ServiceRegistry:
    """The fakes and their shared call log; ``reset()`` starts them all afresh."""

    calls: CallLog
    crm: CrmService
    policy: PolicyService
    payments: PaymentsService
    mail: MailService

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls = CallLog()
        self.crm = CrmService(self.calls)
        self.policy = PolicyService(self.calls)
        self.payments = PaymentsService(self.calls)
        self.mail = MailService(self.calls)


registry = ServiceRegistry()
