"""The lease store on Postgres: claims never overlap (SKIP LOCKED), a lease is free only once it
expired or was released, a renewal keeps only what is still ours, and a worker that leaves
gives everything back at once."""

from __future__ import annotations

import asyncio

from bridge.storage.leases import LeaseStore, workers_and_leases

ROOMS = [f"dest:telegram:{n}" for n in range(20)]


async def _worker(seconds: float, pid: int) -> LeaseStore:
    store = LeaseStore(seconds)
    await store.register("host-a", pid)
    return store


async def test_claims_made_at_once_never_overlap_and_respect_the_limit(pg: str) -> None:
    workers = [await _worker(30, pid) for pid in (1, 2, 3)]
    won = await asyncio.gather(*(w.claim(ROOMS, 8) for w in workers))
    assert all(len(w) <= 8 for w in won)
    names = [n for w in won for n in w]
    assert len(names) == len(set(names)) == len(ROOMS)  # each room once, none left out (3 x 8 >= 20)
    # held rooms are not free for anyone, however much they ask
    assert await workers[0].claim(ROOMS, 100) == {}
    assert await workers[0].unheld(ROOMS) == []


async def test_an_expired_lease_goes_to_another_worker_with_a_new_token_and_is_lost_to_the_old(pg: str) -> None:
    a, b = await _worker(1.0, 1), await _worker(1.0, 2)
    [(name, token)] = (await a.claim(ROOMS[:1], 1)).items()
    assert await b.claim(ROOMS[:1], 1) == {}
    assert await a.renew() == {name: token}  # renewed, same token
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    won: dict[str, int] = {}
    while not won:
        assert loop.time() < deadline, "the lease never expired"
        await asyncio.sleep(0.2)
        won = await b.claim(ROOMS[:1], 1)
    assert won == {name: token + 1}
    assert await a.renew() == {}  # a's renewal does not take it back


async def test_a_released_lease_is_free_at_once_and_an_orphan_only_after_min_age(pg: str) -> None:
    a, b = await _worker(30, 1), await _worker(30, 2)
    await a.claim(ROOMS[:2], 2)
    await a.release(ROOMS[:1])
    assert await b.claim(ROOMS[:2], 2, min_age=5) == {}  # released just now: not an orphan yet
    assert set(await b.claim(ROOMS[:2], 2)) == {ROOMS[0]}  # but free
    assert set(await a.renew()) == {ROOMS[1]}


async def test_workers_are_listed_with_what_they_hold_and_leaving_frees_everything(pg: str) -> None:
    a, b = await _worker(30, 11), await _worker(30, 22)
    await a.claim(["listen:telegram:updates", *ROOMS[:2]], 3)
    await b.claim(ROOMS[2:3], 1)
    assert await a.live_workers() == 2
    listed = {w.pid: w for w in await workers_and_leases()}
    assert set(listed) == {11, 22}
    assert listed[11].holds == ("dest:telegram:0", "dest:telegram:1", "listen:telegram:updates")
    assert listed[22].holds == ("dest:telegram:2",)
    assert 0 <= listed[11].heartbeat_age < 5 and listed[11].host == "host-a"
    await a.leave()
    assert {w.pid for w in await workers_and_leases()} == {22}
    assert await b.live_workers() == 1
    assert set(await b.claim(["listen:telegram:updates", *ROOMS[:2]], 3)) == {"listen:telegram:updates", *ROOMS[:2]}
