"""benchmarks.step_report on a locust log and a Serve controller log in their real line formats (deployment
names as ray_config.yaml gives them, hyphens included)."""

from __future__ import annotations

import pytest

from benchmarks.step_report import rises, steps

LOCUST = """\
[2026-12-02 15:53:09,280] vm/INFO/locust.runners: Shape test starting.
[2026-12-02 15:53:09,281] vm/INFO/locust.runners: Shape test updating to 1 users at 8.00 spawn rate
[2026-12-02 15:53:39,314] vm/INFO/locust.runners: Shape test updating to 16 users at 8.00 spawn rate
[2026-12-02 15:54:39,400] vm/INFO/locust.runners: Shape test updating to 64 users at 8.00 spawn rate
[2026-12-02 15:55:40,000] vm/INFO/locust.runners: Shape test updating to 0 users at 8.00 spawn rate
"""

_PREFIX = "INFO 2026-12-02 {} controller 4350 -- "
CONTROLLER = "\n".join(
    _PREFIX.format(stamp) + text
    for stamp, text in [
        ("15:53:00,000", "Upscaling Deployment(name='pneumonia-cnn', app='pneumonia-cnn') from 1 to 2 replicas. "
         "Current ongoing requests: 9.00, current running replicas: 1."),  # before locust: ignored
        ("15:53:42,714", "Upscaling Deployment(name='sepsis-transformer', app='sepsis-transformer') from 1 to 2 "
         "replicas. Current ongoing requests: 2.00, current running replicas: 1."),
        ("15:53:43,250", "Adding 1 replica to Deployment(name='sepsis-transformer', app='sepsis-transformer')."),
        ("15:53:49,314", "Replica(id='9fqtmyfm', deployment='sepsis-transformer', app='sepsis-transformer') started "
         "successfully on node 'e4e3' after 6.2s (PID: 1). Replica constructor, reconfigure method took 0.2s."),
        ("15:54:43,900", "Upscaling Deployment(name='pneumonia-cnn', app='pneumonia-cnn') from 1 to 2 replicas. "
         "Current ongoing requests: 6.00, current running replicas: 1."),
        ("15:56:50,000", "Downscaling Deployment(name='sepsis-transformer', app='sepsis-transformer') from 2 to 1 "
         "replicas. Current ongoing requests: 0.00, current running replicas: 2."),
    ]
)  # fmt: skip


def test_each_rise_is_timed_from_the_step_before_it() -> None:
    stages = steps(LOCUST)
    assert [users for _, users in stages] == [1, 16, 64, 0]
    found, down = rises(stages, CONTROLLER)
    assert [(r.deployment, r.users) for r in found] == [("sepsis-transformer", 16), ("pneumonia-cnn", 64)]
    transformer, xray = found
    assert transformer.decided_s == pytest.approx(3.4)
    assert transformer.in_flight == 2.0
    assert transformer.serving_s == pytest.approx(10.0)
    assert transformer.startup_s == 6.2
    assert xray.decided_s == pytest.approx(4.5)
    assert xray.serving_s is None, "no 'started successfully' yet: not serving"
    assert down == {"sepsis-transformer": pytest.approx(70.0)}


def test_a_log_holding_several_runs_is_read_from_its_last() -> None:
    """locust appends to --logfile: the stages, and the end of the load, are the last run's."""
    earlier = LOCUST.replace("2026-12-02 15:5", "2026-12-01 15:5")
    stages = steps(earlier + LOCUST)
    assert [users for _, users in stages] == [1, 16, 64, 0]
    assert stages == steps(LOCUST)
    _, down = rises(stages, CONTROLLER)
    assert down == {"sepsis-transformer": pytest.approx(70.0)}
