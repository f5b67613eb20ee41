"""Provider assignment and route order (pure), with hypothesis properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow.core.breaker import BreakerPolicy
from detectflow.core.models import ProviderConfig
from detectflow.core.routing import (
    DEFAULT_PRIORITY,
    RouteTable,
    assignment_errors,
    parse_assignment,
    route,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def config(name: str, *, active: bool = False, age: int = 0, **options: Any) -> ProviderConfig:
    return ProviderConfig(
        id=f"id-{name}",
        provider_name=name,
        provider_type="http_api",
        endpoint_url="http://127.0.0.1:1/detect",
        is_active=active,
        options=options,
        created_at=T0 + timedelta(seconds=age),
        updated_at=T0 + timedelta(seconds=age),
    )


def names(configs: tuple[ProviderConfig, ...]) -> list[str]:
    return [c.provider_name for c in configs]


def test_unassigned_cameras_get_the_active_config_then_the_other_unassigned_ones() -> None:
    table = RouteTable.build(
        [
            config("old", age=0),
            config("main", active=True, age=5, priority=500),
            config("spare", age=1, priority=1),
            config("parked", cameras=[]),
            config("lobby", cameras=["lobby"]),
        ]
    )
    assert names(table.for_camera("cam-1")) == ["main", "spare", "old"]
    assert names(table.for_camera("lobby")) == ["lobby"]
    assert table.serves_any


def test_assigned_cameras_are_ordered_by_priority_then_active_then_age() -> None:
    table = RouteTable.build(
        [
            config("b", age=2, cameras=["cam-1"], priority=2),
            config("a", age=3, cameras=["cam-1", "cam-2"], priority=1),
            config("c", age=1, cameras=["cam-1"], priority=2, active=True),
        ]
    )
    assert names(table.for_camera("cam-1")) == ["a", "c", "b"]
    assert names(table.for_camera("cam-2")) == ["a"]
    assert table.for_camera("cam-3") == ()  # no active unassigned config


def test_no_active_config_and_no_assignment_serves_nothing() -> None:
    table = RouteTable.build([config("idle")])
    assert table.for_camera("cam-1") == ()
    assert not table.serves_any


def test_invalid_options_leave_the_config_out_with_the_reason() -> None:
    table = RouteTable.build([config("bad", active=True, cameras="cam-1"), config("ok")])
    assert table.for_camera("cam-1") == ()
    ((bad, reason),) = table.invalid
    assert bad.provider_name == "bad" and "options.cameras must be a list" in reason


def test_single_serves_every_camera_whatever_it_says() -> None:
    only = config("only", cameras=["elsewhere"])
    assert RouteTable.single(only).for_camera("cam-9") == (only,)
    assert not RouteTable.single(None).serves_any


def test_parse_assignment_defaults_and_breaker_options() -> None:
    assert parse_assignment({}).priority == DEFAULT_PRIORITY
    assert parse_assignment({}).cameras is None
    parsed = parse_assignment(
        {"cameras": ["a"], "priority": 0, "breaker_failures": 2, "breaker_cooldown_seconds": 0.5}
    )
    assert parsed.cameras == frozenset({"a"})
    assert parsed.breaker == BreakerPolicy(2, 0.5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cameras": "cam-1"}, "options.cameras must be a list"),
        ({"cameras": ["ok", "bad id"]}, "options.cameras entries must be camera ids"),
        ({"cameras": ["a", "a"]}, "must not repeat"),
        ({"cameras": ["c"] * 1001}, "at most 1000"),
        ({"priority": True}, "options.priority must be an integer"),
        ({"priority": -1}, "options.priority must be an integer"),
        ({"breaker_failures": 0}, "options.breaker_failures"),
        ({"breaker_cooldown_seconds": float("nan")}, "options.breaker_cooldown_seconds"),
        ({"breaker_cooldown_seconds": "30"}, "options.breaker_cooldown_seconds"),
    ],
)
def test_bad_options_are_named(options: dict[str, Any], message: str) -> None:
    errors = assignment_errors(options)
    assert any(message in e for e in errors), errors
    with pytest.raises(ValueError, match=message.split(" ")[0]):
        parse_assignment(options)


camera_ids = st.sampled_from(["cam-1", "cam-2", "cam-3"])
configs_strategy = st.lists(
    st.tuples(
        st.booleans(),
        st.integers(0, 3),
        st.one_of(st.none(), st.lists(camera_ids, unique=True, max_size=3)),
    ),
    min_size=1,
    max_size=6,
).map(
    lambda rows: [
        config(
            f"p{i}",
            active=active and i == 0,
            age=i,
            priority=priority,
            **({} if cameras is None else {"cameras": cameras}),
        )
        for i, (active, priority, cameras) in enumerate(rows)
    ]
)


@given(configs=configs_strategy, camera=camera_ids, data=st.data())
def test_route_never_picks_a_refusing_breaker_and_keeps_group_order(
    configs: list[ProviderConfig], camera: str, data: st.DataObject
) -> None:
    group = RouteTable.build(configs).for_camera(camera)
    routable = {c.id: data.draw(st.booleans(), label=c.id) for c in group}
    chosen = route(group, routable.__getitem__)
    assert all(routable[c.id] for c in chosen)
    assert [c for c in group if routable[c.id]] == list(chosen)  # order kept, none skipped
    if any(routable.values()):
        assert chosen  # a closed (routable) breaker always gets the frame
    if chosen:
        assert chosen[0] == next(c for c in group if routable[c.id])


@given(configs=configs_strategy, camera=camera_ids)
def test_groups_hold_each_config_once_and_only_configs_that_serve_the_camera(
    configs: list[ProviderConfig], camera: str
) -> None:
    group = RouteTable.build(configs).for_camera(camera)
    assert len({c.id for c in group}) == len(group)
    assigned = [c for c in configs if camera in c.options.get("cameras", [])]
    if assigned:
        assert {c.id for c in group} == {c.id for c in assigned}
        priorities = [c.options["priority"] for c in group]
        assert priorities == sorted(priorities)
    else:
        assert all("cameras" not in c.options for c in group)
        if group:
            assert group[0].is_active
