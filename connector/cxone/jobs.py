"""Job tracking state machine: which jobs are pending, which to poll, which to report. Pure.

The monitor feeds it events and poll results with the current monotonic time and acts on
what it returns; it never touches a socket itself, so it is unit-tested with frames.

Rules:
- an update for a job not watched is ignored; a terminal update ends the job;
- IN_PROGRESS is reported at most once per ``progress_interval_s`` per job, and only when
  the status or progress changed;
- "news" is a change of status or progress; it resets the job's poll interval and deadline;
- with the push channel up a job is polled only as a safety net, after ``poll_interval_max_s``
  without news or poll (an event may be lost in a reconnect); with it down (or without one)
  each job is polled on an interval that backs off from ``poll_interval_s`` to
  ``poll_interval_max_s``; after a reconnect every job is polled once (:meth:`poll_all_soon`);
- a job without news past ``deadline_s`` is polled once more; if that poll brings no news
  (or fails), the job ends as UNKNOWN.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from connector.cxone.protocol import IN_PROGRESS, QUEUED, UNKNOWN, JobUpdate


@dataclass(slots=True)
class _Job:
    job_id: str
    status: str
    progress: int | None
    last_news: float
    next_poll: float
    interval: float
    last_poll: float
    last_reported: float | None = None
    reported: tuple[str, int | None] | None = None
    overdue: bool = False
    forced: bool = False


@dataclass(slots=True)
class JobTracker:
    """Pending jobs and their poll schedule.

    Args:
        deadline_s: silence after which a job is polled and, failing news, reported UNKNOWN.
        poll_interval_s: first poll interval; also the interval after news.
        poll_interval_max_s: the cap of the backing-off poll interval.
        progress_interval_s: minimum time between two IN_PROGRESS reports of one job.
        poll_factor: how much the poll interval grows after a poll without news.
    """

    deadline_s: float
    poll_interval_s: float
    poll_interval_max_s: float
    progress_interval_s: float = 1.0
    poll_factor: float = 2.0
    _jobs: dict[str, _Job] = field(default_factory=dict)

    def watch(self, job_id: str, now: float) -> None:
        """Start following ``job_id`` (no-op when already followed)."""
        if job_id not in self._jobs:
            self._jobs[job_id] = _Job(job_id, QUEUED, None, now, now + self.poll_interval_s,
                                      self.poll_interval_s, now)

    def forget(self, job_id: str) -> None:
        """Stop following ``job_id``."""
        self._jobs.pop(job_id, None)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)

    @property
    def pending(self) -> list[str]:
        """The followed job ids, oldest first."""
        return list(self._jobs)

    def on_update(self, update: JobUpdate, now: float) -> list[JobUpdate]:
        """Apply an event or poll result; return the updates worth reporting (0 or 1)."""
        job = self._jobs.get(update.job_id)
        if job is None:
            return []
        if update.terminal:
            del self._jobs[update.job_id]
            return [update]
        news = (update.status, update.progress) != (job.status, job.progress)
        if news:
            job.status, job.progress = update.status, update.progress
            job.last_news = now
            job.interval = self.poll_interval_s
            job.overdue = False
        job.next_poll = now + job.interval
        if job.overdue:  # the deadline poll brought nothing new
            del self._jobs[update.job_id]
            return [JobUpdate(job.job_id, UNKNOWN, job.progress,
                              f"no news for {self.deadline_s:g}s; last status {job.status}")]
        if update.status != IN_PROGRESS or (update.status, update.progress) == job.reported:
            return []
        if job.last_reported is not None and now - job.last_reported < self.progress_interval_s:
            return []
        job.last_reported, job.reported = now, (update.status, update.progress)
        return [update]

    def on_poll_failed(self, job_id: str, now: float, reason: str) -> list[JobUpdate]:
        """A poll of ``job_id`` failed; an overdue job then ends UNKNOWN, others back off."""
        job = self._jobs.get(job_id)
        if job is None:
            return []
        if job.overdue:
            del self._jobs[job_id]
            return [JobUpdate(job_id, UNKNOWN, job.progress,
                              f"no news for {self.deadline_s:g}s and poll failed: {reason}")]
        job.next_poll = now + job.interval
        return []

    def due_polls(self, now: float, *, push_up: bool) -> list[str]:
        """Jobs to poll now; advances their schedule (the caller must poll them).

        Args:
            now: monotonic time.
            push_up: True while the push channel (WebSocket) is connected and subscribed.
        """
        due: list[str] = []
        for job in self._jobs.values():
            if not job.overdue and now - job.last_news >= self.deadline_s:
                job.overdue = True
            elif job.forced or (not push_up and now >= job.next_poll):
                pass
            elif not (push_up and now - max(job.last_news, job.last_poll) >= self.poll_interval_max_s):
                continue
            due.append(job.job_id)
            job.forced = False
            job.last_poll = now
            job.next_poll = now + job.interval
            job.interval = min(job.interval * self.poll_factor, self.poll_interval_max_s)
        return due

    def poll_all_soon(self, now: float) -> None:
        """Make every job due at once (after a reconnect: news may have been missed)."""
        for job in self._jobs.values():
            job.forced = True
            job.next_poll = now
            job.interval = self.poll_interval_s

    def next_wakeup(self, now: float, *, push_up: bool) -> float | None:
        """Seconds until :meth:`due_polls` may return something, or None with nothing pending."""
        if not self._jobs:
            return None
        jobs = self._jobs.values()
        times = [job.last_news + self.deadline_s for job in jobs if not job.overdue]
        times += [now for job in jobs if job.forced]
        if push_up:
            times += [max(job.last_news, job.last_poll) + self.poll_interval_max_s for job in jobs]
        else:
            times += [job.next_poll for job in jobs]
        if not times:
            return self.poll_interval_s
        return max(0.0, min(times) - now)
