"""Provider assignment and route order (pure), with hypothesis properties."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectflow.core.breaker import BreakerPolicy
from detectflow.core.models import ProviderConfig
from detectflow.core.routing import (
    DEFAULT_PRIORITY,
    MAX_ASSIGNED_CAMERAS,
    Assignment,
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


def short(value: object) -> str:
    """A test id that stays readable for a 1000-camera list."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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


def test_of_two_active_configs_read_mid_change_the_newest_leads() -> None:
    """Only one config can be stored active, but a refresh may read two while the
    switch commits: the one updated last is the one the operator just chose."""
    older = replace(config("older", active=True, age=0, priority=1), updated_at=T0)
    newer = replace(config("newer", active=True, age=5), updated_at=T0 + timedelta(hours=1))
    spare = config("spare", age=2, priority=0)
    for configs in ([older, newer, spare], [newer, spare, older]):
        assert names(RouteTable.build(configs).for_camera("cam-1")) == ["newer", "spare", "older"]


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
    only = config("only", cameras=["elsewhere"], breaker_failures=2)
    table = RouteTable.single(only)
    assert table.for_camera("cam-9") == (only,)
    assert table.policy(only.id) == BreakerPolicy(2, 30.0)


def test_single_with_no_config_serves_nothing() -> None:
    table = RouteTable.single(None)
    assert table.for_camera("cam-9") == ()
    assert not table.serves_any
    assert table.policy("anything") == BreakerPolicy()


def test_single_with_invalid_options_still_serves_with_the_default_breaker() -> None:
    odd = config("odd", priority="first", breaker_failures=0)
    table = RouteTable.single(odd)
    assert table.for_camera("cam-1") == (odd,)
    assert table.assignments == {odd.id: Assignment()}  # the defaults, not nothing
    assert table.policy(odd.id) == BreakerPolicy()


def test_each_provider_gets_its_own_breaker_policy_and_strangers_the_default() -> None:
    table = RouteTable.build(
        [
            config("tuned", active=True, breaker_failures=2, breaker_cooldown_seconds=4),
            config("plain"),
            config("broken", breaker_failures="many"),
        ]
    )
    assert table.policy("id-tuned") == BreakerPolicy(2, 4.0)
    assert table.policy("id-plain") == BreakerPolicy(5, 30.0)
    assert table.policy("id-broken") == BreakerPolicy()  # left out as invalid
    assert table.policy("id-unknown") == BreakerPolicy()
    assert table.assignments == {
        "id-tuned": Assignment(None, 100, BreakerPolicy(2, 4.0)),
        "id-plain": Assignment(None, 100, BreakerPolicy(5, 30.0)),
    }


def test_parse_assignment_defaults_and_breaker_options() -> None:
    assert parse_assignment({}) == Assignment(None, 100, BreakerPolicy(5, 30.0))
    assert DEFAULT_PRIORITY == 100  # the documented default
    assert parse_assignment({}).priority == DEFAULT_PRIORITY
    assert parse_assignment({}).cameras is None
    parsed = parse_assignment(
        {"cameras": ["a"], "priority": 0, "breaker_failures": 2, "breaker_cooldown_seconds": 0.5}
    )
    assert parsed.cameras == frozenset({"a"})
    assert parsed.breaker == BreakerPolicy(2, 0.5)


def test_a_config_without_a_priority_sorts_as_priority_100() -> None:
    table = RouteTable.build(
        [
            config("p101", age=0, cameras=["cam-1"], priority=101),
            config("default", age=1, cameras=["cam-1"]),
            config("p99", age=2, cameras=["cam-1"], priority=99),
        ]
    )
    assert names(table.for_camera("cam-1")) == ["p99", "default", "p101"]


@pytest.mark.parametrize(
    "options",
    [
        {"priority": 0},
        {"priority": 1000},
        {"breaker_failures": 1},
        {"breaker_failures": 1000},
        {"breaker_cooldown_seconds": 0},
        {"breaker_cooldown_seconds": 0.0},
        {"breaker_cooldown_seconds": 86400},
        {"breaker_cooldown_seconds": 86400.0},
        {"cameras": []},
        {"cameras": [f"c{i}" for i in range(1000)]},
        {"cameras": ["a" * 128, "A-Z_0.9:x"]},
    ],
    ids=short,
)
def test_the_documented_ranges_are_inclusive(options: dict[str, Any]) -> None:
    """The module docs say priority 0-1000, breaker_failures 1-1000, cool-down 0-86400 s,
    at most 1000 cameras: both ends of each are accepted."""
    assert assignment_errors(options) == []
    parse_assignment(options)


def test_at_most_1000_cameras() -> None:
    assert MAX_ASSIGNED_CAMERAS == 1000
    assert assignment_errors({"cameras": [f"c{i}" for i in range(1001)]}) == [
        "options.cameras may name at most 1000 cameras"
    ]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"cameras": "cam-1"}, "options.cameras must be a list of camera ids"),
        ({"cameras": ("a",)}, "options.cameras must be a list of camera ids"),
        (
            {"cameras": ["ok", 5]},
            "options.cameras entries must be camera ids (1-128 of [A-Za-z0-9_.:-]); got 5",
        ),
        (
            {"cameras": ["a" * 129]},
            "options.cameras entries must be camera ids (1-128 of [A-Za-z0-9_.:-]); "
            f"got {'a' * 129!r}",
        ),
        ({"cameras": ["a", "b", "a"]}, "options.cameras must not repeat a camera id"),
        ({"priority": 1001}, "options.priority must be an integer from 0 to 1000"),
        ({"priority": -1}, "options.priority must be an integer from 0 to 1000"),
        ({"priority": 5.0}, "options.priority must be an integer from 0 to 1000"),
        ({"breaker_failures": 0}, "options.breaker_failures must be an integer from 1 to 1000"),
        ({"breaker_failures": 1001}, "options.breaker_failures must be an integer from 1 to 1000"),
        ({"breaker_failures": True}, "options.breaker_failures must be an integer from 1 to 1000"),
        (
            {"breaker_cooldown_seconds": 86400.5},
            "options.breaker_cooldown_seconds must be a number from 0 to 86400",
        ),
        (
            {"breaker_cooldown_seconds": -0.5},
            "options.breaker_cooldown_seconds must be a number from 0 to 86400",
        ),
        (
            {"breaker_cooldown_seconds": True},
            "options.breaker_cooldown_seconds must be a number from 0 to 86400",
        ),
        (
            {"breaker_cooldown_seconds": float("inf")},
            "options.breaker_cooldown_seconds must be a number from 0 to 86400",
        ),
    ],
    ids=short,
)
def test_just_outside_a_range_is_refused_with_the_range_named(
    options: dict[str, Any], error: str
) -> None:
    assert assignment_errors(options) == [error]


def test_every_bad_option_is_named_at_once() -> None:
    options = {"cameras": "x", "priority": -1, "breaker_failures": 0}
    with pytest.raises(ValueError, match=r"^[^;]+; [^;]+; [^;]+$") as caught:
        parse_assignment(options)
    assert str(caught.value) == "; ".join(assignment_errors(options))
    assert len(assignment_errors(options)) == 3


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
