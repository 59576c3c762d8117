"""The `update(epoch)` hook shared by the pycmlt loss modules (see pycmlt.schedules)."""
from __future__ import annotations

import torch


class EpochScheduled:
    """Mixin of nn.Modules whose class weights may follow a schedule.

    `_init_schedule` registers the buffer `buffer_name` with the schedule's epoch-0 weights;
    `update(epoch)` copies `schedule.weights(epoch)` into it in place (the buffer keeps its device
    and identity, so optimisers, `.to()`, state dicts and compiled graphs see the new values).
    Without a schedule `update` only records the epoch.
    """

    _pycmlt_epoch_hook = True

    def _init_schedule(self, schedule, buffer_name: str, num_classes: int | None, conflicts: dict) -> None:
        self.schedule = schedule
        self.epoch: int | None = None
        self._scheduled_buffer = buffer_name
        if schedule is None:
            return
        if not callable(getattr(schedule, "weights", None)):
            raise TypeError(f"schedule must have a weights(epoch) method returning class weights [C], got "
                            f"{type(schedule).__name__}")
        given = [name for name, used in conflicts.items() if used]
        if given:
            raise ValueError(f"schedule sets the class weights, so {', '.join(given)} cannot be given as well")
        first = self._schedule_weights(0, num_classes)
        self.register_buffer(buffer_name, first.clone())

    def _schedule_weights(self, epoch: int, num_classes: int | None) -> torch.Tensor:
        w = torch.as_tensor(self.schedule.weights(epoch)).detach().to(torch.float32)
        if w.dim() != 1 or (num_classes is not None and w.numel() != num_classes):
            raise ValueError(f"schedule.weights({epoch}) must have shape [{num_classes}], got {tuple(w.shape)}")
        return w

    def update(self, epoch: int):
        """Sets the class weights of `epoch` from the schedule (no-op without one); returns self."""
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise TypeError(f"epoch must be an int, got {type(epoch).__name__}")
        self.epoch = epoch
        if self.schedule is not None:
            buf = getattr(self, self._scheduled_buffer)
            w = self._schedule_weights(epoch, buf.numel())
            with torch.no_grad():
                buf.copy_(w.to(device=buf.device, dtype=buf.dtype))
        return self
