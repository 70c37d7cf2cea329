"""What following N X accounts costs a month, and how many requests it makes per 15 minutes:
the bridge's planned polling (``since_id``, ``adapters.x.cost.plan_polls``) vs the filtered
stream vs a naive poll of every account every minute without ``since_id``.

Posting rates are drawn per account from a heavy-tailed mix (most prospects post rarely, a few
a lot): 60% at 0.5 posts a day, 30% at 3, 10% at 15 (mean 2.7). Prices are X's published
defaults (``DEFAULT_PRICES_USD``). Run: ``python -m bench.xcost``.
"""

from __future__ import annotations

import random

from adapters.x.cost import DEFAULT_PRICES_USD, MICRO, Account, Prices, plan_polls, worst_case

DAYS = 30
WINDOW = 900.0
MIX = ((0.6, 0.5), (0.3, 3.0), (0.1, 15.0))
EXPANSIONS = "attachments.media_keys,referenced_tweets.id,referenced_tweets.id.author_id"


def rates(n: int, seed: int = 7) -> list[float]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        r, acc = rnd.random(), 0.0
        for share, rate in MIX:
            acc += share
            if r <= acc:
                out.append(rate)
                break
        else:
            out.append(MIX[-1][1])
    return out


def row(n: int) -> str:
    prices = Prices.from_config()
    rs = rates(n)
    posts_month = sum(rs) * DAYS
    # Polling with since_id: only new posts are returned and billed, once each (plus, on
    # average, one quoted post in ten).
    unit = DEFAULT_PRICES_USD["post_read"] * 1.1
    plan = plan_polls(
        [Account(str(i), r) for i, r in enumerate(rs)],
        remaining=10**12,
        days=DAYS,
        unit=round(unit * MICRO),
        worst_unit=worst_case(prices, "post_read", 1, EXPANSIONS),
    )
    poll_usd = posts_month * unit
    # Filtered stream: the same posts, each billed as a Post read; one connection, no polls.
    stream_usd = posts_month * unit
    # Naive: every account every minute, no since_id, a page of 10: the newest 10 posts are
    # re-read each UTC day (deduped within the day only), and 15 requests per account per 15 min.
    naive_usd = sum(max(r, 10.0) for r in rs) * DAYS * DEFAULT_PRICES_USD["post_read"]
    naive_req = 15 * n
    over = " (over the 10,000/15 min app limit: 429s)" if naive_req > 10_000 else ""
    return (
        f"| {n:,} | {posts_month:,.0f} | ${poll_usd:,.2f} | {plan.requests_per_window:,.0f} | "
        f"${stream_usd:,.2f} | 0 (1 connection) | ${naive_usd:,.2f} | {naive_req:,}{over} |"
    )


def main() -> None:
    print("X cost per month, 30 days, X's published prices; posting mix 60% 0.5/day, 30% 3/day, 10% 15/day\n")
    print(
        "| accounts | posts / month | planned polling $ | polling requests / 15 min | filtered stream $ | "
        "stream requests / 15 min | naive per-minute poll $ | naive requests / 15 min |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n in (10, 100, 1000):
        print(row(n))


if __name__ == "__main__":
    main()
