"""Subprocess output and job logs stay bounded whatever a command prints, and a command
never outlives the wait for it (Host.run_streaming runs keadm init and keadm join)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from cloud_api.jobs import HEAD_LINES, STREAM_BACKLOG, TAIL_LINES, Job, Jobs
from kedge.errors import CommandError
from kedge.host import MAX_LINE, Host
from tests.harness.wait import wait_for

pytestmark = pytest.mark.faults
PY = sys.executable


def host() -> Host:
    return Host("/", search_path=[str(Path(PY).parent), "/usr/bin", "/bin"])


async def test_a_line_without_end_is_cut_and_marked() -> None:
    lines: list[str] = []
    script = "import sys; sys.stdout.write('x' * 200_000); sys.stdout.write('\\nnext\\n')"
    code = await host().run_streaming(
        [PY.rsplit("/", 1)[1], "-c", script], timeout=30, on_line=lines.append
    )
    assert code == 0
    assert lines == ["x" * MAX_LINE + f" [line cut: {200_000 - MAX_LINE} more bytes]", "next"]


async def test_an_unterminated_last_line_is_still_delivered() -> None:
    lines: list[str] = []
    await host().run_streaming(
        [PY.rsplit("/", 1)[1], "-c", "print('a'); print('b', end='')"],
        timeout=30,
        on_line=lines.append,
    )
    assert lines == ["a", "b"]


def _children_of_group(pgid: int) -> list[int]:
    found = []
    for p in psutil.process_iter(["pid", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(p.pid) == pgid:
                found.append(p.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


async def test_a_failing_reader_kills_and_reaps_the_whole_group() -> None:
    """on_line raising (as a full job log or a crash would) must not leave the command
    blocked on a pipe: it and its children are killed before the error propagates."""
    started: list[int] = []
    script = (
        "import os, subprocess, sys\n"
        "subprocess.Popen(['sleep', '300'])\n"
        "print(os.getpid(), flush=True)\n"
        "while True: sys.stdout.write('y' * 1000 + '\\n')\n"
    )

    def on_line(line: str) -> None:
        if not started:
            started.append(int(line))
            return
        raise RuntimeError("reader failed")

    with pytest.raises(RuntimeError, match="reader failed"):
        await host().run_streaming(
            [PY.rsplit("/", 1)[1], "-c", script], timeout=30, on_line=on_line
        )
    assert not psutil.pid_exists(started[0]) or psutil.Process(started[0]).status() == "zombie"
    assert _children_of_group(started[0]) == []


async def test_the_deadline_kills_the_group() -> None:
    pids: list[str] = []
    with pytest.raises(CommandError, match=r"no result within 0\.5 s"):
        await host().run_streaming(
            [
                PY.rsplit("/", 1)[1],
                "-c",
                "import os, time; print(os.getpid(), flush=True); time.sleep(60)",
            ],
            timeout=0.5,
            on_line=pids.append,
        )
    assert _children_of_group(int(pids[0])) == []


def test_a_job_keeps_its_head_and_tail_and_says_how_much_it_dropped() -> None:
    job = Job(id="j", kind="demo")
    for n in range(300_000):
        job.log(f"line {n}")
    job.log("z" * 100_000)
    view = job.view()
    assert view["lines_dropped"] == 300_001 - HEAD_LINES - TAIL_LINES
    assert len(view["lines"]) == HEAD_LINES + 1 + TAIL_LINES
    assert view["lines"][HEAD_LINES]["line"] == f"[{view['lines_dropped']} lines not kept]"
    assert view["lines"][-1]["line"].endswith("[line cut: 95904 more characters]")
    assert len(json.dumps(view)) < 1_000_000


async def _follow(job: Job, start: int | None) -> list[tuple[str, Any]]:
    async with asyncio.timeout(5):
        return [item async for item in job.follow(start)]


async def test_a_stream_starts_at_the_tail_or_resumes_across_the_gap() -> None:
    jobs = Jobs()

    async def work(job: Job) -> dict[str, Any]:
        for n in range(5000):
            job.log(f"line {n}")
        return {}

    job = jobs.start("demo", work)
    await _follow(job, 10**9)  # nothing from there on: returns at the job's end
    tail = await _follow(job, None)
    assert [n for kind, (n, _) in (e for e in tail if e[0] == "line")] == list(
        range(5000 - STREAM_BACKLOG, 5000)
    )
    resumed = await _follow(job, 150)
    numbers = [data[0] for kind, data in resumed if kind == "line"]
    texts = [data[1]["line"] for kind, data in resumed if kind == "line"]
    assert numbers[:50] == list(range(150, 200))
    assert texts[50] == f"[{5000 - HEAD_LINES - TAIL_LINES} lines not kept]"
    assert numbers[51:] == list(range(5000 - TAIL_LINES, 5000))
    assert resumed[-1][0] == "end"


def test_a_killed_parent_takes_its_long_command_with_it(tmp_path: Path) -> None:
    """SIGKILL of kedge (the cloud API during `keadm init`, the agent during `keadm
    join`) must not leave keadm running with nobody reading it."""
    import signal
    import subprocess

    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen(
        [PY, "-c",
         "import asyncio, sys; from kedge.host import Host\n"
         f"h = Host('/', search_path=['/usr/bin', '/bin'])\n"
         f"asyncio.run(h.run_streaming(['sh', '-c', 'echo $$ > {pid_file}; exec sleep 300'],"
         " timeout=600, on_line=print))"],
    )  # fmt: skip
    try:
        written = wait_for(
            lambda: pid_file.read_text().strip() if pid_file.exists() else None,
            timeout=30,
            what="the child",
        )
        child = int(written)
        assert psutil.pid_exists(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(30)

        def gone() -> bool:
            try:
                return psutil.Process(child).status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

        wait_for(gone, timeout=30, what="the child to die with its parent")
    finally:
        if parent.poll() is None:
            parent.kill()


def test_jobs_of_a_killed_service_are_reported_interrupted(tmp_path: Path) -> None:
    from cloud_api.store import INTERRUPTED, Store

    async def scenario() -> str:
        store = Store(tmp_path / "kedge.db")
        jobs = Jobs(store.record_job)
        gate = asyncio.Event()

        async def work(job: Job) -> dict[str, Any]:
            await gate.wait()
            return {}

        job = jobs.start("install", work)
        await asyncio.sleep(0)
        store.close()  # the process dies here: no finish is ever recorded
        return job.id

    job_id = asyncio.run(scenario())
    again = Store(tmp_path / "kedge.db")
    assert again.interrupt_running_jobs() == [job_id]
    kept = again.job(job_id)
    assert kept is not None
    assert (kept["state"], kept["error"]["message"]) == ("interrupted", INTERRUPTED)
    assert again.interrupt_running_jobs() == []
