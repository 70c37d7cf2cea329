"""What following N X accounts costs a month, and how many requests it makes per 15 minutes:
the bridge's planned polling (``since_id``, ``adapters.x.cost.plan_polls``) vs the filtered
stream vs a naive poll of every account every minute without ``since_id``.

Posting rates are drawn per account from a heavy-tailed mix (most prospects post rarely, a few
a lot): 60% at 0.5 posts a day, 30% at 3, 10% at 15 (mean 2.7). Prices are X's published
defaults (``DEFAULT_PRICES_USD``).

The second table compares the two intakes on what differs between them: the filtered stream's
rules (``adapters.x.stream.build_rules`` within pay-per-use's 1,000 rules of 1,024 characters,
15-character usernames), the requests each makes (the stream: none while connected, one REST
catch-up per carried feed after each reconnect, assumed 4 drops a day), how long a post waits
(polling: half the planned interval, weighted by posts; the stream: X's P99 of 6-7 s,
https://docs.x.com/x-api/posts/filtered-stream/introduction), and what asking the stream for
authors (``author_id``) would add: each author billed as a User read once per UTC day.

Run: ``python -m bench.xcost`` (``--no-save`` prints without appending to bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence

from adapters.x.cost import DEFAULT_PRICES_USD, MICRO, Account, Prices, plan_polls, worst_case
from adapters.x.stream import build_rules
from bench.report import publish

DAYS = 30
DROPS_PER_DAY = 4  # stream reconnects a day assumed for the catch-up requests
STREAM_P99 = "6-7 s"
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


def intake_row(n: int) -> str:
    prices = Prices.from_config()
    rs = rates(n)
    unit = DEFAULT_PRICES_USD["post_read"] * 1.1
    plan = plan_polls(
        [Account(str(i), r) for i, r in enumerate(rs)],
        remaining=10**12,
        days=DAYS,
        unit=round(unit * MICRO),
        worst_unit=worst_case(prices, "post_read", 1, EXPANSIONS),
    )
    rules = build_rules([(str(i), f"prospect{i:07d}", "") for i in range(n)], [])
    catch_up = n * DROPS_PER_DAY / 96  # requests per 15 minutes
    # Polling delay: a post waits half its account's interval on average; weight by posts.
    posts = sum(rs)
    delay = sum(r * plan.polls[str(i)].interval / 2 for i, r in enumerate(rs)) / posts
    # author_id on the stream: every account that posts on a day is billed once that day.
    active_days = sum(min(1.0, r) for r in rs) * DAYS
    authors_usd = active_days * DEFAULT_PRICES_USD["user_read"]
    return (
        f"| {n:,} | {len(rules.rules)} ({len(rules.covered):,} carried) | {plan.requests_per_window:,.0f} | "
        f"{catch_up:,.1f} | {delay / 60:,.1f} min | {STREAM_P99} | ${posts * DAYS * unit:,.2f} | +${authors_usd:,.2f} |"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-save", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args(argv)
    lines = [
        "Cost per month, 30 days, X's published prices; posting mix 60% 0.5/day, 30% 3/day, 10% 15/day.",
        "",
        "| accounts | posts / month | planned polling $ | polling requests / 15 min | filtered stream $ | "
        "stream requests / 15 min | naive per-minute poll $ | naive requests / 15 min |",
        "|---|---|---|---|---|---|---|---|",
        *(row(n) for n in (10, 100, 1000)),
        "",
        f"Stream vs polling on what differs (same mix; {DROPS_PER_DAY} stream drops a day, each followed by one "
        "REST catch-up read per carried account; pay-per-use: 1 connection, 1,000 rules of 1,024 characters).",
        "",
        "| accounts | stream rules | polling requests / 15 min | stream catch-up requests / 15 min | "
        "polling: mean wait for a post | stream: wait (X's P99) | $ either way | stream with author_id expanded |",
        "|---|---|---|---|---|---|---|---|",
        *(intake_row(n) for n in (10, 100, 1000)),
        "",
        "Both intakes bill each delivered post once a UTC day, so the dollars are the same; the stream saves requests "
        "(from about 100 accounts on) and delay (seconds instead of minutes), and the bridge leaves author_id off the "
        "stream so as not to pay a User read per active account per day.",
    ]
    publish("X cost: planned polling vs filtered stream vs a naive per-minute poll", lines, save=not args.no_save)


if __name__ == "__main__":
    main()
