"""Several people talking at once to one ASR process: what happens to finals,
interim cadence, CPU and memory. A client of the wire protocol only.

Each of ``--streams`` users speaks real clips (tests/data/speech) at real-time
pace with interims on, force_eou after each clip, pauses, speaks the next one;
users start ``--stagger`` s apart so one user's final overlaps the others'
interims, as in a conversation. Each ``--variant NAME:ENV=V,ENV=V`` starts
its own service (optionally from another code tree, ``--root``, to compare
with an older commit) and prints:

    force_eou -> final (median / max), interim cadence in speech (median / p90
    / max ms), interim lag (speech sent but not yet in the interim shown, when
    it arrives: median / p90 ms), interims per utterance, service CPU seconds,
    peak RSS (VmHWM).

    PYTHONPATH=.:gen .venv/bin/python scripts/asr_concurrency.py --streams 3 \\
        --variant nice19: --variant nice0:ASR_INTERIM_NICE=0
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common.audio import read_wav
from common.stubs import asr_pb2
from services.asr.client import SAMPLE_RATE, recognize
from tests.procs import clips, free_port, health

ROOT = Path(__file__).resolve().parent.parent


def start(root: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    full = dict(os.environ) | {"PYTHONPATH": f"{root}:{root / 'gen'}", "HF_HUB_OFFLINE": "1",
                               "ASR_PORT": str(port), "ASR_METRICS_PORT": "0"} | env
    proc = subprocess.Popen([sys.executable, "-m", "services.asr"], cwd=root, env=full,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"service exited: {proc.stderr.read()[-2000:]}")
        if asyncio.run(health.grpc_serving(address)):
            return proc, address
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("service not ready in 120 s")


def proc_figures(pid: int) -> tuple[float, int]:
    """(CPU seconds, peak RSS MB) of the process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmHWM"))
    return cpu, hwm // 1024


async def user(address: str, utterances: list[bytes], delay: float, pause: float, beam: int):
    await asyncio.sleep(delay)
    cfg = asr_pb2.RecognitionConfig(language="en", interim_results=True, sample_rate_hz=SAMPLE_RATE,
                                    beam_size=beam)
    records = []
    for pcm in utterances:
        records.append(await recognize(address, [pcm], config=cfg, chunk_ms=20, realtime=True))
        await asyncio.sleep(pause)
    return records


async def measure(address: str, speech: list[bytes], streams: int, stagger: float, beam: int):
    jobs = []
    for i in range(streams):
        mine = [speech[(i + k) % len(speech)] for k in range(2)]
        jobs.append(user(address, mine, i * stagger, 1.0, beam))
    finals, gaps, lags, counts = [], [], [], []
    for records in await asyncio.gather(*jobs):
        for rec in records:
            finals += rec.eou_to_final()
            covered = [r.response.audio_processed_ms for r in rec.interims(0) if r.at < rec.eou_at[0]]
            gaps += [b - a for a, b in zip([0] + covered, covered)]
            lags += [r.sent_ms - r.response.audio_processed_ms for r in rec.interims(0)
                     if r.at < rec.eou_at[0]]
            counts.append(len(covered))
    return finals, gaps, sorted(lags), counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=3, help="users talking at once (default 3)")
    p.add_argument("--stagger", type=float, default=0.7, help="seconds between users' starts (default 0.7)")
    p.add_argument("--beam", type=int, default=1, help="beam size of finals (default 1, as the gateway)")
    p.add_argument("--root", default=str(ROOT), help="code tree the service runs from (default this one)")
    p.add_argument("--variant", action="append", default=[],
                   help="NAME:ENV=V,ENV=V service settings to compare (default one run, as configured)")
    a = p.parse_args()
    speech = []
    for wav, _ in clips():
        pcm, rate = read_wav(wav)
        assert rate == SAMPLE_RATE
        speech.append(pcm)
    for variant in a.variant or ["default:"]:
        name, _, spec = variant.partition(":")
        env = dict(kv.split("=", 1) for kv in spec.split(",") if kv)
        proc, address = start(Path(a.root), env)
        try:
            cpu0, _ = proc_figures(proc.pid)
            finals, gaps, lags, counts = asyncio.run(measure(address, speech, a.streams, a.stagger, a.beam))
            cpu1, hwm = proc_figures(proc.pid)
        finally:
            proc.terminate()
            proc.wait(20)
        gaps.sort()
        print(f"{name}: {a.streams} streams, {len(finals)} utterances, beam {a.beam}: "
              f"force_eou -> final median {statistics.median(finals) * 1000:.0f} ms, "
              f"max {max(finals) * 1000:.0f} ms; interim every {statistics.median(gaps):.0f} ms of speech "
              f"(p90 {gaps[int(0.9 * (len(gaps) - 1))]}, max {gaps[-1]}), lag median "
              f"{statistics.median(lags):.0f} ms (p90 {lags[int(0.9 * (len(lags) - 1))]}), "
              f"{statistics.mean(counts):.1f} interims per utterance; "
              f"CPU {cpu1 - cpu0:.1f} s; peak RSS {hwm} MB", flush=True)


if __name__ == "__main__":
    main()
