"""API keys are verified against the database at most once per ttl, revocation still bites."""

from __future__ import annotations

import asyncio

from detectflow.server.state import VerifiedKeys
from detectflow.store import Database


class CountingDatabase:
    """The real store, counting its key lookups."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.lookups = 0

    def verify_api_key(self, token: str) -> object:
        self.lookups += 1
        return self.database.verify_api_key(token)


def test_a_verified_key_is_not_looked_up_again_within_the_ttl(sqlite_db: Database) -> None:
    _, token = sqlite_db.create_api_key("write", "camera gateway")
    counting = CountingDatabase(sqlite_db)
    keys = VerifiedKeys(counting, ttl=60)  # type: ignore[arg-type]

    async def main() -> None:
        for _ in range(50):
            key = await keys.verify(token)
            assert key is not None and key.name == "camera gateway"

    asyncio.run(main())
    assert counting.lookups == 1


def test_a_revoked_key_stops_working_once_the_ttl_has_passed(sqlite_db: Database) -> None:
    key, token = sqlite_db.create_api_key("write", "to revoke")
    keys = VerifiedKeys(sqlite_db, ttl=0.2)

    async def main() -> list[bool]:
        seen = [await keys.verify(token) is not None]
        sqlite_db.revoke_api_key(key.id)  # as `detectflow keys revoke` does from elsewhere
        await asyncio.sleep(0.25)
        seen.append(await keys.verify(token) is not None)
        return seen

    assert asyncio.run(main()) == [True, False]


def test_unknown_keys_are_never_remembered(sqlite_db: Database) -> None:
    counting = CountingDatabase(sqlite_db)
    keys = VerifiedKeys(counting, ttl=60)  # type: ignore[arg-type]

    async def main() -> None:
        assert await keys.verify("dfk_nope.nope") is None
        assert await keys.verify("dfk_nope.nope") is None

    asyncio.run(main())
    assert counting.lookups == 2
