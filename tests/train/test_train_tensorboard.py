"""With TensorBoard installed (`smile[tensorboard]`, part of the test extra) the training logs
also write TensorBoard scalars, named and stepped as in metrics.jsonl."""

from __future__ import annotations

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from smile_train.loop.runtime import MetricsLog


def test_metrics_are_tensorboard_scalars(tmp_path):
    log = MetricsLog(tmp_path, enabled=True)
    for step, loss in ((10, 0.875), (20, 0.625)):
        log.write(step, {"loss": loss, "lr": 1e-4})
    log.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"loss", "lr"}
    assert [(s.step, s.value) for s in events.Scalars("loss")] == [(10, 0.875), (20, 0.625)]
    assert [row["loss"] for row in log.read()] == [0.875, 0.625]
