"""Crash recovery: a ``flow run`` process SIGKILLed mid-stream and restarted loses nothing.

Acceptance tests of the issue "Production dataflow": 3 cameras x 300 frames
go through Redis Streams, then MQTT, into 2 worker processes writing to
PostgreSQL; one process is killed with SIGKILL while frames are in flight
and started again. Every frame must end with exactly one completed or
failed event (Redis and MQTT frames have no queue row), and no detection
may be written twice. Plus the unit behaviour of
:mod:`detectflow.flows.recovery` on real databases.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from detectflow.flows.recovery import (
    is_lost_connection,
    recovery_config,
    recovery_partitions,
    retry_lost_connection,
)
from detectflow.samples import sample_frame
from detectflow.store import Database
from detectflow.store.live import camera_key
from detectflow.store.redis_backend import DEFAULT_PREFIX
from tests import services
from tests.flows.flow_processes import (
    FlowProcess,
    finished_frames,
    flow_env,
    provider,
    unique_detections,
    wait_for,
)

FRAMES_PER_CAMERA = 300


def _frames(tag: str) -> list[tuple[str, str, int, bytes]]:
    """(camera, frame id, number, PNG) interleaved over 3 cameras, as cameras send them."""
    cameras = [f"cam-{tag}-{c}" for c in range(3)]
    return [
        (cam, f"{cam}-{i:04d}", i, sample_frame(cam, i, 32, 24))
        for i in range(FRAMES_PER_CAMERA)
        for cam in cameras
    ]


def _assert_every_frame_once(pg: Database, frame_ids: list[str]) -> None:
    done = finished_frames(pg, frame_ids)
    missing = [f for f in frame_ids if f not in done]
    assert not missing, f"{len(missing)} frame(s) never finished, e.g. {missing[:3]}"
    twice = {f: kinds for f, kinds in done.items() if len(kinds) != 1}
    assert not twice, f"frames with both outcomes: {list(twice.items())[:3]}"
    total, distinct = unique_detections(pg)
    assert total > 0
    assert total == distinct


def _kill_and_restart(victim: FlowProcess, pg: Database, frame_ids: list[str]) -> None:
    assert victim.kill() == -9
    assert len(finished_frames(pg, frame_ids)) < len(frame_ids), "killed after the run ended"
    time.sleep(0.3)
    victim.start()


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
def test_redis_frames_survive_a_sigkilled_worker_process(
    pg: Database, postgres_url: str, secret_key: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    stream, group = f"frames:{tag}", f"df-{tag}"
    frames = _frames(tag)
    frame_ids = [f for _, f, _, _ in frames]
    client = redis.Redis.from_url(services.REDIS_URL)
    env = flow_env(postgres_url, secret_key, tmp_path, DETECTFLOW_REDIS_URL=services.REDIS_URL)
    processes = tuple(
        FlowProcess(
            f"p{n}",
            [
                "--source",
                f"{services.REDIS_URL}?stream={stream}&group={group}&consumer=p{n}",
                "--recovery-dir",
                str(tmp_path / f"recovery-p{n}"),
                "--snapshot-interval",
                "0.5",
            ],
            env,
            tmp_path,
        )
        for n in range(2)
    )
    try:
        with provider(pg, latency=0.05):
            for p in processes:
                p.start()

            def consumers() -> dict[str, int]:
                try:
                    info = client.xinfo_consumers(stream, group)
                except redis.ResponseError:
                    return {}
                return {c["name"].decode(): int(c["pending"]) for c in info}

            wait_for(
                lambda: {"p0-0", "p1-0"} <= set(consumers()),
                timeout=30,
                what="both processes to join the consumer group",
                processes=processes,
            )
            with client.pipeline(transaction=False) as pipe:
                for cam, fid, number, image in frames:
                    fields: dict[Any, Any] = {
                        "camera_id": cam,
                        "image": image,
                        "frame_id": fid,
                        "frame_number": number,
                    }
                    pipe.xadd(stream, fields)
                pipe.execute()
            wait_for(
                lambda: len(finished_frames(pg, frame_ids)) >= 150 and consumers()["p1-0"] > 0,
                timeout=30,
                what="frames in flight in the second process",
                processes=processes,
            )
            _kill_and_restart(processes[1], pg, frame_ids)
            wait_for(
                lambda: len(finished_frames(pg, frame_ids)) == len(frame_ids),
                timeout=45,
                what="every frame to finish",
                processes=processes,
            )
            # Acknowledged only after the write: once done, nothing is left pending.
            wait_for(
                lambda: sum(consumers().values()) == 0,
                timeout=10,
                what="every entry to be acknowledged",
                processes=processes,
            )
            for p in processes:
                assert p.stop() == 0, p.output()
        _assert_every_frame_once(pg, frame_ids)
        # DETECTFLOW_REDIS_URL set: the flow published each camera's state live.
        cameras = sorted({cam for cam, _, _, _ in frames})
        assert all(client.exists(DEFAULT_PREFIX + camera_key(cam)) for cam in cameras)
    finally:
        for p in processes:
            p.cleanup()
        client.delete(stream)
        client.close()


def _publish(topic_root: str, frames: list[tuple[str, str, int, bytes]]) -> None:
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.connect(services.MQTT_HOST, services.MQTT_PORT)
    publisher.loop_start()
    try:
        infos = []
        for cam, fid, number, image in frames:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.UserProperty = [("frame_id", fid), ("frame_number", str(number))]
            infos.append(publisher.publish(f"{topic_root}/{cam}", image, qos=1, properties=props))
        for info in infos:
            info.wait_for_publish(10)
    finally:
        publisher.disconnect()
        publisher.loop_stop()


def _forget_sessions(client_ids: list[str]) -> None:
    """Connect each client id with a clean start, so the broker drops its stored session."""
    for client_id in client_ids:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        client.connect(services.MQTT_HOST, services.MQTT_PORT, clean_start=True)
        client.disconnect()


@pytest.mark.slow
@pytest.mark.mqtt
@pytest.mark.postgres
def test_mqtt_frames_survive_a_sigkilled_worker_process(
    pg: Database, postgres_url: str, secret_key: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    topic_root = f"detectflow-test/{tag}/frames"
    frames = _frames(tag)
    frame_ids = [f for _, f, _, _ in frames]
    env = flow_env(postgres_url, secret_key, tmp_path)
    # A fixed client id and a session that outlives the connection: the broker
    # keeps a killed worker's unacknowledged frames and resends them on restart.
    client_ids = [f"df-{tag}-p{n}" for n in range(2)]
    processes = tuple(
        FlowProcess(
            f"p{n}",
            [
                "--source",
                f"mqtt://{services.MQTT_HOST}:{services.MQTT_PORT}/{topic_root}/+"
                f"?group=g{tag}&client_id={client_ids[n]}&session_expiry=120",
                "--recovery-dir",
                str(tmp_path / f"recovery-p{n}"),
                "--snapshot-interval",
                "0.5",
                "--log-level",
                "info",
            ],
            env,
            tmp_path,
        )
        for n in range(2)
    )
    try:
        with provider(pg, latency=0.05):
            for p in processes:
                p.start()
            wait_for(
                lambda: all("subscribed to $share" in p.output() for p in processes),
                timeout=30,
                what="both processes to subscribe",
                processes=processes,
            )
            _publish(topic_root, frames)
            wait_for(
                lambda: len(finished_frames(pg, frame_ids)) >= 150,
                timeout=30,
                what="the run to get going",
                processes=processes,
            )
            _kill_and_restart(processes[1], pg, frame_ids)
            wait_for(
                lambda: len(finished_frames(pg, frame_ids)) == len(frame_ids),
                timeout=45,
                what="every frame to finish",
                processes=processes,
            )
            for p in processes:
                assert p.stop() == 0, p.output()
        _assert_every_frame_once(pg, frame_ids)
    finally:
        for p in processes:
            p.cleanup()
        _forget_sessions([f"{c}-0" for c in client_ids])


# -- the building blocks -------------------------------------------------------


def test_recovery_partitions_are_created_once_and_kept(tmp_path: Path) -> None:
    directory = tmp_path / "recovery"
    recovery_config(directory, 3)
    assert recovery_partitions(directory) == 3
    # A restart with another worker count keeps the snapshots it has.
    recovery_config(directory, 5)
    assert recovery_partitions(directory) == 3


def test_recovery_needs_a_partition(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one partition"):
        recovery_config(tmp_path, 0)


def test_unreachable_database_is_a_lost_connection_but_bad_sql_is_not(sqlite_url: str) -> None:
    refused = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")
    with pytest.raises(OperationalError) as caught:
        refused.connect()
    refused.dispose()
    assert is_lost_connection(caught.value)
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    with pytest.raises(IntegrityError) as dup, engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
    engine.dispose()
    assert not is_lost_connection(dup.value)


def test_lost_connection_is_retried_until_the_database_answers() -> None:
    calls: list[float] = []
    sleeps: list[float] = []
    engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")

    def write() -> str:
        calls.append(time.monotonic())
        if len(calls) < 4:
            engine.connect()  # refused: a real lost connection
        return "written"

    try:
        assert retry_lost_connection(write, what="test", give_up_after=30, sleep=sleeps.append) == (
            "written"
        )
    finally:
        engine.dispose()
    assert len(calls) == 4
    assert len(sleeps) == 3
    assert sleeps[0] < sleeps[2]  # backing off


def test_lost_connection_gives_up_after_the_deadline() -> None:
    engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")

    def write() -> None:
        engine.connect()

    try:
        with pytest.raises(OperationalError):
            retry_lost_connection(write, what="test", give_up_after=0.2, base=0.05)
    finally:
        engine.dispose()


def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    def write() -> None:
        calls.append(1)
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        retry_lost_connection(write, what="test", give_up_after=30)
    assert calls == [1]
