#!/usr/bin/env python3
"""The transcoder's quality-bar figures (scripts/bench-transcode.sh runs it; stdlib only).

usage: scripts/bench_transcode.py --flick BIN --multipart-put BIN

transcode  a 60 s 720p30 testsrc2 + sine clip (H.264/AAC, made once, cached) into the
           720/480/360/240 ladder three ways, wall and CPU (user+sys, children included):
             flick     `flick serve --services media,transcoder` on SQLite + in-process bus +
                       the S3 server: createVideo (GraphQL), tus upload, then from job pickup
                       (state PROCESSING) to READY (renditions in S3); CPU from /proc/<pid>/stat
                       (utime+stime+cutime+cstime: ffmpeg runs as flick's reaped child). Also
                       time to first playable (hls_url non-null) and a per-stage breakdown
                       from videoProgress over the transcoder's WebSocket.
             naive     one ffmpeg, split filter, the audio encoded again with every rung
             per-rung  one ffmpeg per rung, in sequence (sum)
           Same x264 settings as crates/transcoder/src/pipeline/encode.rs.
upload     a FLICK_BENCH_UPLOAD_MIB file (an MP4's first bytes + random bytes) with tus in
           8 MiB chunks into the transcoder on the S3 server (no worker), flick's RSS sampled
           every 50 ms and VmHWM; vs a direct multipart upload of the same file to the same
           server (crates/storage/examples/multipart_put.rs: put_stream, 8 MiB parts, 4 in
           flight). Then the same file as FLICK_BENCH_PARALLEL (4) partial uploads sent at
           once over a connection each, joined by a final upload (tus concatenation, as
           `flick upload --parallel` and tus-js-client's parallelUploads do), into the same
           flick: each partial as one streamed PATCH (tus-js-client's default chunkSize) and
           in 8 MiB PATCHes (`flick upload`); FLICK_BENCH_PARALLEL_PATCH=whole,chunks. Each
           way also prints the CPU-ms per MiB of the client, flick, the S3 server (`weed`)
           and the rest, and how busy the cores were: on a host where they are all busy,
           that split is the throughput.

scaling   a FLICK_BENCH_SCALING_SECONDS (600) 720p30 clip, the same ladder, through `flick serve`
           (media + transcoder, no worker) and separate `flick worker` processes sharing only
           PostgreSQL (5433), RabbitMQ and S3; job pickup -> READY for: today's single job on
           one worker pinned to core 0 (single-pinned, only if FLICK_BENCH_SCALING_CASES has it), the
           split job (60 s parts) on one pinned worker (split-1-pinned), on two workers pinned to
           cores 0 and 1 (split-2-pinned; bar <= 0.55x split-1-pinned), today's single job on
           one unpinned worker (single) and the split job on two unpinned workers (split-2; bar
           <= 1.02x single). Also the mean part time and the assembly (last part -> READY).

env: FLICK_BENCH_SOURCE (camera: High profile 8 Mbit/s + stereo AAC, like a phone's file;
     ultrafast: the cheapest H.264 to decode), FLICK_BENCH_TRANSCODE_RUNS (1), FLICK_BENCH_UPLOAD_RUNS (3), FLICK_BENCH_CLIP_SECONDS (60),
     FLICK_BENCH_UPLOAD_MIB (1024), FLICK_BENCH_CHUNK_MIB (8), FLICK_BENCH_PARALLEL (4), FLICK_BENCH_PRESET (veryfast),
     FLICK_BENCH_SECTIONS (transcode,upload; scaling is separate: about 30 min a round),
     FLICK_BENCH_SCALING_SECONDS (600), FLICK_BENCH_SCALING_RUNS (1), FLICK_BENCH_SCALING_CASES
     (split-1-pinned,split-2-pinned,single,split-2), FLICK_BENCH_PG (postgres://postgres@127.0.0.1:5433),
     FLICK_BENCH_AMQP (amqp://guest:guest@127.0.0.1:5672/%2f), FLICK_BENCH_PORT_BASE (18180: ports +1..+4),
     FLICK_BENCH_CACHE (/var/cache/flick/bench: the clip), FLICK_BENCH_KEEP=1 keeps the work dir,
     FLICK_BENCH_S3_ENDPOINT (http://127.0.0.1:9000), FLICK_BENCH_S3_BUCKET (flick-test),
     FLICK_BENCH_FLICK_ENV ("K=V K2=V2": extra environment of the flick processes only, e.g.
     GLIBC_TUNABLES to try allocator settings).
"""

import argparse
import base64
import http.client as http_client
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from graphql_ws import WebSocket

ENV = os.environ.get
TRANSCODE_RUNS = int(ENV("FLICK_BENCH_TRANSCODE_RUNS", "1"))
UPLOAD_RUNS = int(ENV("FLICK_BENCH_UPLOAD_RUNS", "3"))
CLIP_SECONDS = int(ENV("FLICK_BENCH_CLIP_SECONDS", "60"))
UPLOAD_MIB = int(ENV("FLICK_BENCH_UPLOAD_MIB", "1024"))
CHUNK = int(ENV("FLICK_BENCH_CHUNK_MIB", "8")) * 1024 * 1024
PARALLEL = int(ENV("FLICK_BENCH_PARALLEL", "4"))
# How each partial upload is sent: "whole" (one streamed PATCH, tus-js-client's default
# chunkSize), or "chunks" (CHUNK-sized PATCHes, as `flick upload` sends them).
PARALLEL_PATCH = ENV("FLICK_BENCH_PARALLEL_PATCH", "whole,chunks").split(",")
if not set(PARALLEL_PATCH) <= {"whole", "chunks"}:
    sys.exit("FLICK_BENCH_PARALLEL_PATCH lists whole and/or chunks")
PRESET = ENV("FLICK_BENCH_PRESET", "veryfast")
SOURCE = ENV("FLICK_BENCH_SOURCE", "camera")
if SOURCE not in ("camera", "ultrafast"):
    sys.exit("FLICK_BENCH_SOURCE is camera or ultrafast")
SECTIONS = set(ENV("FLICK_BENCH_SECTIONS", "transcode,upload").split(","))
SCALING_SECONDS = int(ENV("FLICK_BENCH_SCALING_SECONDS", "600"))
SCALING_RUNS = int(ENV("FLICK_BENCH_SCALING_RUNS", "1"))
SCALING_CASES = ENV("FLICK_BENCH_SCALING_CASES", "split-1-pinned,split-2-pinned,single,split-2").split(",")
PG = ENV("FLICK_BENCH_PG", "postgres://postgres@127.0.0.1:5433")
AMQP = ENV("FLICK_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672/%2f")
PORT_BASE = int(ENV("FLICK_BENCH_PORT_BASE", "18180"))
CACHE = ENV("FLICK_BENCH_CACHE", "/var/cache/flick/bench")
KEEP = ENV("FLICK_BENCH_KEEP", "0") == "1"
S3_ENDPOINT = ENV("FLICK_BENCH_S3_ENDPOINT", "http://127.0.0.1:9000")
S3_BUCKET = ENV("FLICK_BENCH_S3_BUCKET", "flick-test")
S3_KEY, S3_SECRET = "flick", "flicksecret"

PORTS = {"accounts": PORT_BASE + 1, "media": PORT_BASE + 2, "transcoder": PORT_BASE + 3, "recommender": PORT_BASE + 4}
# The ladder under test: TranscoderConfig's default rungs without 1080p (name, short side,
# average kbps, peak kbps), and Flick's encoder settings (pipeline/encode.rs).
RUNGS = [("720p", 720, 2800, 3000), ("480p", 480, 1400, 1500), ("360p", 360, 800, 856), ("240p", 240, 400, 428)]
SEGMENT = 4
AUDIO_KBPS = 128
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


def log(msg):
    print(f"bench-transcode: {msg}", flush=True)


NCPU = os.cpu_count() or 1
BUSY = []  # (what, wall s, CPU-s the rest of the machine used meanwhile)


def busy():
    """CPU-s the whole machine has been busy since boot (/proc/stat, every core)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / CLK_TCK  # all but idle and iowait


def others(what, wall, since, ours):
    """Records and describes what the rest of the machine used while we measured."""
    other = max(busy() - since - ours, 0.0)
    BUSY.append((what, wall, other))
    return f"other processes {other:.1f} CPU-s"


# ---------- sizes, as pipeline/ladder.rs computes them ----------

def even_round(x):
    return max(int(round(x / 2.0)) * 2, 2)


def ladder(width, height):
    short, long_ = min(width, height), max(width, height)
    out = []
    for name, h, kbps, peak in sorted(RUNGS, key=lambda r: -r[1]):
        if h > short:
            continue
        side = h & ~1
        other = min(even_round(side * long_ / short), long_ & ~1)
        w_, h_ = (side, other) if height > width else (other, side)
        out.append({"name": name, "w": w_, "h": h_, "kbps": kbps, "peak": peak})
    return out


def x264_args(k, r):
    """Per-rung video options exactly as Flick passes them (encode.rs `command`)."""
    profile = "high" if min(r["w"], r["h"]) >= 480 else "main"
    return [
        "-map", f"[v{k}]", f"-c:v:{k}", "libx264", f"-profile:v:{k}", profile,
        f"-b:v:{k}", f"{r['kbps']}k", f"-maxrate:v:{k}", f"{r['peak']}k", f"-bufsize:v:{k}", f"{2 * r['peak']}k",
    ]


def common_video_args(fps=30):
    gop = str(round(fps * SEGMENT))
    return [
        "-preset", PRESET, "-pix_fmt", "yuv420p", "-g", gop, "-keyint_min", gop, "-sc_threshold", "0",
        "-force_key_frames", f"expr:gte(t,n_forced*{SEGMENT})", "-fps_mode", "vfr",
    ]


def hls_args(out, var_stream_map, init):
    return [
        "-map_metadata", "-1", "-map_chapters", "-1", "-max_muxing_queue_size", "4096",
        "-f", "hls", "-hls_time", str(SEGMENT), "-hls_playlist_type", "vod", "-hls_segment_type", "fmp4",
        "-hls_fmp4_init_filename", init, "-hls_segment_filename", f"{out}/%v/seg_%05d.m4s",
        "-master_pl_name", "master.m3u8", "-var_stream_map", var_stream_map, f"{out}/%v/index.m3u8",
    ]


FF = ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y"]


def naive_command(src, rungs, out):
    """One decode, a split to every rung, and the audio encoded again with every rung."""
    graph = f"[0:v:0]split={len(rungs)}" + "".join(f"[s{k}]" for k in range(len(rungs)))
    graph += "".join(f";[s{k}]scale={r['w']}:{r['h']},setsar=1[v{k}]" for k, r in enumerate(rungs))
    cmd = FF + ["-i", src, "-filter_complex", graph]
    for k, r in enumerate(rungs):
        cmd += x264_args(k, r)
    cmd += common_video_args()
    for k in range(len(rungs)):
        cmd += ["-map", "0:a:0", f"-c:a:{k}", "aac", f"-b:a:{k}", f"{AUDIO_KBPS}k"]
    cmd += ["-ac", "2"]
    vsm = " ".join(f"v:{k},a:{k},name:{r['name']}" for k, r in enumerate(rungs))
    return cmd + hls_args(out, vsm, "init_%v.mp4")


def audio_once_command(src, rungs, out):
    """Flick's own ffmpeg command (encode.rs), bare: one decode, the audio once as its own rendition."""
    graph = f"[0:v:0]split={len(rungs)}" + "".join(f"[s{k}]" for k in range(len(rungs)))
    graph += "".join(f";[s{k}]scale={r['w']}:{r['h']},setsar=1[v{k}]" for k, r in enumerate(rungs))
    cmd = FF + ["-i", src, "-filter_complex", graph]
    for k, r in enumerate(rungs):
        cmd += x264_args(k, r)
    cmd += common_video_args() + ["-map", "0:a:0", "-c:a", "aac", "-b:a", f"{AUDIO_KBPS}k", "-ac", "2"]
    vsm = " ".join(f"v:{k},agroup:aud,name:{r['name']}" for k, r in enumerate(rungs)) + " a:0,agroup:aud,name:audio"
    args = hls_args(out, vsm, "init_%v.mp4")
    # Flick writes EVENT playlists with temp files (for early playback) and reads progress.
    args[args.index("vod")] = "event"
    return cmd + ["-hls_flags", "temp_file", "-progress", "pipe:1", "-stats_period", "0.5"] + args


def rung_command(src, r, out):
    """One rung: its own decode, its video and its own AAC."""
    cmd = FF + ["-i", src, "-filter_complex", f"[0:v:0]scale={r['w']}:{r['h']},setsar=1[v0]"]
    cmd += x264_args(0, r) + common_video_args()
    cmd += ["-map", "0:a:0", "-c:a", "aac", "-b:a", f"{AUDIO_KBPS}k", "-ac", "2"]
    # %v is the variant's name; with one variant ffmpeg does not substitute it in the init name.
    return cmd + hls_args(out, f"v:0,a:0,name:{r['name']}", f"init_{r['name']}.mp4")


def measured(cmd, stderr_path, what):
    """Runs cmd; returns (wall s, CPU s = user+sys of it and its children, max RSS MiB)."""
    with open(stderr_path, "ab") as err:
        b0 = busy()
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {p.returncode}; see {stderr_path}")
    cpu = ru.ru_utime + ru.ru_stime
    return wall, cpu, others(what, wall, b0, cpu)


def make_clip(path, seconds=None):
    seconds = seconds or CLIP_SECONDS
    if os.path.exists(path):
        return
    log(f"making the {seconds} s 720p30 test clip (once): {path}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.mp4"
    # "camera" (default) is encoded like a phone's recording: High profile with CABAC and
    # B-frames at 8 Mbit/s, stereo 48 kHz AAC. "ultrafast" is the cheapest source to decode.
    video = {
        "camera": ["-preset", "medium", "-profile:v", "high", "-b:v", "8M", "-maxrate", "10M", "-bufsize", "16M"],
        "ultrafast": ["-preset", "ultrafast"],
    }[SOURCE]
    subprocess.run(
        FF + ["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-f", "lavfi", "-i",
              "sine=frequency=440:sample_rate=48000", "-t", str(seconds), "-c:v", "libx264"] + video
        + ["-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2", "-b:a", "128k", "-movflags", "+faststart", tmp],
        check=True,
    )
    os.replace(tmp, path)


# ---------- flick ----------

def request(port, method, path, body=None, headers=None, timeout=120):
    conn = http_client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
    finally:
        conn.close()


def toml_str(s):
    return json.dumps(str(s))


def wait_ready(proc, port, what, log_tail):
    """Waits up to 60 s for GET /readyz on `port` to answer 200 while `proc` runs."""
    deadline = time.time() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}); log: {log_tail()}")
        try:
            if request(port, "GET", "/readyz", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        if time.time() > deadline:
            raise RuntimeError(f"{what} not ready after 60 s; log: {log_tail()}")
        time.sleep(0.1)


def process_cpu(pid):
    """CPU seconds of a process and its reaped children (ffmpeg, ffprobe) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # after the command: state ppid ... utime(14) stime(15) cutime(16) cstime(17)
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def stop_process(proc, log_file, what):
    """SIGTERM, then SIGKILL after 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            log(f"{what} (pid {proc.pid}) still running 30 s after TERM; KILL")
            proc.kill()
            proc.wait()
    log_file.close()


class Flick:
    """`flick serve` on its own data directory and ports, stopped by PID."""

    def __init__(self, binary, work, name, workers, services="media,transcoder", transcoder_extra="", extra=""):
        self.data = os.path.join(work, name)
        os.makedirs(self.data, exist_ok=True)
        cfg = os.path.join(self.data, "flick.toml")
        with open(cfg, "w") as f:
            f.write(f"data_dir = {toml_str(self.data)}\n")
            f.write("[server.ports]\n" + "".join(f"{k} = {v}\n" for k, v in PORTS.items()))
            f.write("[telemetry]\nlog_level = \"info\"\n")
            f.write(f"[storage]\nurl = {toml_str('s3://' + S3_BUCKET)}\n")
            f.write(f"[storage.s3]\nendpoint = {toml_str(S3_ENDPOINT)}\nregion = \"us-east-1\"\n"
                    f"access_key_id = {toml_str(S3_KEY)}\nsecret_access_key = {toml_str(S3_SECRET)}\n")
            f.write(f"[transcoder]\npreset = {toml_str(PRESET)}\nworkers = {workers}\n"
                    f"max_upload_bytes = {64 << 30}\nuser_quota_bytes = {256 << 30}\n"
                    f"work_dir = {toml_str(os.path.join(self.data, 'jobs'))}\n"
                    f"public_base_url = {toml_str('http://127.0.0.1:%d' % PORTS['transcoder'])}\n"
                    + transcoder_extra)
            for name_, h, kbps, peak in RUNGS:
                f.write(f"[[transcoder.rungs]]\nname = {toml_str(name_)}\nheight = {h}\n"
                        f"video_bitrate_kbps = {kbps}\nmax_bitrate_kbps = {peak}\n")
            f.write(extra)
        self.config = cfg
        # Only our configuration: flick refuses FLICK_* variables it does not know.
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLICK_") or k in ("FLICK_TOOLS_DIR",)}
        env.update(kv.split("=", 1) for kv in ENV("FLICK_BENCH_FLICK_ENV", "").split())
        for port in PORTS.values():
            if port_open(port):
                raise RuntimeError(f"port {port} is in use (set FLICK_BENCH_PORT_BASE)")
        self.log_path = os.path.join(self.data, "flick.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([binary, "--config", cfg, "serve", "--services", services], env=env,
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        for svc in services.split(","):
            wait_ready(self.proc, PORTS[svc], f"flick {svc}", self.tail)

    def tail(self, n=15):
        try:
            return "\n".join(open(self.log_path, errors="replace").read().splitlines()[-n:])
        except OSError:
            return ""

    def cpu(self):
        """CPU seconds of flick and its reaped children (ffmpeg, ffprobe) so far."""
        return process_cpu(self.pid)

    def status(self, key):
        """A /proc/<pid>/status value in MiB (VmRSS, VmHWM)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        stop_process(self.proc, self.log, "flick")


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def create_video(user, title):
    body = json.dumps({
        "query": "mutation($i: CreateVideoInput!) { createVideo(input: $i) { video { id } upload { id url } } }",
        "variables": {"i": {"title": title, "visibility": "PRIVATE"}},
    })
    status, _, data = request(PORTS["media"], "POST", "/graphql", body,
                           {"content-type": "application/json", "x-user-id": user})
    res = json.loads(data)
    try:
        created = res["data"]["createVideo"]
        url = created["upload"]["url"]
    except (KeyError, TypeError) as e:
        raise RuntimeError(f"createVideo: HTTP {status} {res}") from e
    # The URL names the configured public base; the path is what the transcoder serves.
    return created["video"]["id"], "/" + url.split("://", 1)[-1].split("/", 1)[1]


class FileRange:
    """`length` bytes of an open file from `start`, read in blocks as http.client sends a body."""

    def __init__(self, f, start, length):
        self.f, self.left = f, length
        f.seek(start)

    def read(self, n=-1):
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        return data


def tus_upload(user, path, file_path, size, start=0, chunk=CHUNK):
    """PATCHes the file's `size` bytes from `start` in `chunk`-sized bodies (None: one PATCH
    streamed from the file) over one keep-alive connection (the whole file: its length goes
    with the first PATCH, as createVideo's upload defers it)."""
    conn = http_client.HTTPConnection("127.0.0.1", PORTS["transcoder"], timeout=300, blocksize=MIB)
    offset = 0
    with open(file_path, "rb") as f:
        while offset < size:
            length = size - offset if chunk is None else min(chunk, size - offset)
            data = FileRange(f, start + offset, length)
            headers = {"x-user-id": user, "tus-resumable": "1.0.0", "upload-offset": str(offset),
                       "content-type": "application/offset+octet-stream", "content-length": str(length)}
            if offset == 0 and start == 0:
                headers["upload-length"] = str(size)
            conn.request("PATCH", path, body=data, headers=headers)
            res = conn.getresponse()
            body = res.read()
            if res.status != 204:
                raise RuntimeError(f"tus PATCH at {offset}: HTTP {res.status} {body[:300]!r}")
            offset = int(res.getheader("upload-offset"))
    conn.close()


def tus_parallel_upload(user, video_id, file_path, size, parts, chunk):
    """The file as `parts` partial uploads sent at once (one thread and connection each, in
    `chunk`-sized PATCHes or, None, one each), then the final upload joining them (tus
    concatenation); checks that the final is complete."""
    each = size // parts
    ranges = [(i * each, size - i * each if i == parts - 1 else each) for i in range(parts)]
    paths = []
    for _, length in ranges:
        status, headers, body = request(PORTS["transcoder"], "POST", "/video/upload", headers={
            "x-user-id": user, "tus-resumable": "1.0.0", "upload-concat": "partial", "upload-length": str(length)})
        if status != 201:
            raise RuntimeError(f"partial upload: HTTP {status} {body[:300]!r}")
        paths.append(headers["location"])
    errors = []

    def send(path, start, length):
        try:
            tus_upload(user, path, file_path, length, start, chunk)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=send, args=(p, s, n)) for p, (s, n) in zip(paths, ranges)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    status, headers, body = request(PORTS["transcoder"], "POST", "/video/upload", headers={
        "x-user-id": user, "tus-resumable": "1.0.0", "upload-concat": "final;" + " ".join(paths),
        "upload-metadata": "videoId " + base64.b64encode(video_id.encode()).decode()})
    if status != 201 or headers.get("upload-offset") != str(size):
        raise RuntimeError(f"final upload: HTTP {status} offset {headers.get('upload-offset')} {body[:300]!r}")


def delete_video(user, video_id):
    try:
        status, _, body = request(PORTS["transcoder"], "DELETE", f"/video/{video_id}", headers={"x-user-id": user})
        if status not in (200, 204):
            log(f"cleanup: DELETE /video/{video_id}: HTTP {status} {body[:200]!r}")
    except OSError as e:
        log(f"cleanup: DELETE /video/{video_id}: {e}")


class Progress(threading.Thread):
    """videoProgress over the transcoder's own graphql-ws endpoint: first time of each stage."""

    def __init__(self, user, video_id, cpu):
        super().__init__(daemon=True)
        self.user, self.video_id, self.cpu = user, video_id, cpu
        self.first = {}  # stage -> (monotonic time, flick CPU s) when first seen
        self.error = None
        self.ready = threading.Event()

    def run(self):
        try:
            ws = WebSocket("127.0.0.1", PORTS["transcoder"], "/ws", "graphql-transport-ws", {"x-user-id": self.user})
            self.send, self.recv = ws.send, ws.recv
            self.send({"type": "connection_init", "payload": {}})
            if self.recv().get("type") != "connection_ack":
                raise ConnectionError("no connection_ack")
            self.send({"id": "1", "type": "subscribe", "payload": {
                "query": "subscription($id: ID!) { videoProgress(videoId: $id) { stage percent } }",
                "variables": {"id": self.video_id}}})
            self.ready.set()
            ws.sock.settimeout(600)
            while True:
                m = self.recv()
                if m.get("type") != "next":
                    return
                p = (m.get("payload", {}).get("data") or {}).get("videoProgress") or {}
                stage = p.get("stage")
                if stage and stage not in self.first:
                    self.first[stage] = (time.monotonic(), self.cpu())
                if stage in ("ready", "failed"):
                    return
        except Exception as e:  # reported with the figures, never fatal
            self.error = repr(e)
        finally:
            self.ready.set()


def bytes_written(port):
    """`storage_bytes_written_total` of the Flick process serving `port` (all backends)."""
    _, _, body = request(port, "GET", "/metrics", timeout=5)
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
               if line.startswith("storage_bytes_written_total"))


def flick_transcode(flick, clip, run, cpu=None, written=None):
    """One clip through Flick; returns a dict of figures (times in s from job pickup). `cpu`:
    the CPU-s counter to read (default: the flick process's, its ffmpeg children included);
    `written`: the bytes its processes stored so far (default: the flick process's)."""
    cpu_of = cpu or flick.cpu
    written_of = written or (lambda: bytes_written(PORTS["transcoder"]))
    user = str(uuid.uuid4())
    video_id, path = create_video(user, f"bench transcode {run}")
    progress = Progress(user, video_id, cpu_of)
    progress.start()
    progress.ready.wait(10)
    size = os.path.getsize(clip)
    t_up = time.monotonic()
    tus_upload(user, path, clip, size)
    t_uploaded, cpu_uploaded, written_uploaded = time.monotonic(), cpu_of(), written_of()
    t_pickup = t_playable = t_ready = None
    cpu_pickup = cpu_ready = None
    playable_state = None
    deadline = t_uploaded + 900
    while True:
        status, _, body = request(PORTS["transcoder"], "GET", f"/video/{video_id}", headers={"x-user-id": user})
        now, cpu = time.monotonic(), cpu_of()
        view = json.loads(body) if status == 200 else {}
        state = view.get("state")
        if state in ("PROCESSING", "READY") and t_pickup is None:
            t_pickup, cpu_pickup, busy_pickup = now, cpu, busy()
        if view.get("hls_url") and t_playable is None:
            t_playable, playable_state = now, state
        if state == "READY":
            t_ready, cpu_ready = now, cpu
            break
        if state == "FAILED":
            raise RuntimeError(f"the transcode failed: {view.get('error')}")
        if now > deadline:
            raise RuntimeError(f"not READY after 900 s (state {state}); log: {flick.tail()}")
        time.sleep(0.05)
    progress.join(5)
    # What the job stored in object storage (renditions, playlists, thumbnails, parts'
    # intermediates, rewritten early playlists): after the source's upload, until READY.
    stored = written_of() - written_uploaded
    renditions = [f"{r.get('width')}x{r.get('height')}" for r in view.get("renditions") or []]
    # Where the time went: wall and CPU between the starts of the job's stages. ffmpeg's CPU
    # shows in the stage it ends in (a child's CPU is counted when it is reaped).
    order = ["downloading", "probing", "encoding", "thumbnails", "uploading", "ready"]
    marks = [(st, progress.first[st]) for st in order if st in progress.first]
    breakdown = [f"{a} {tb - ta:.1f} s / {cb - ca:.1f} CPU-s" for (a, (ta, ca)), (_, (tb, cb)) in zip(marks, marks[1:])]
    delete_video(user, video_id)
    return {
        "upload_s": t_uploaded - t_up,
        "queue_s": t_pickup - t_uploaded,
        "wall": t_ready - t_pickup,
        "wall_from_upload": t_ready - t_uploaded,
        "cpu": cpu_ready - cpu_pickup,
        "note": others("flick", t_ready - t_pickup, busy_pickup, cpu_ready - cpu_pickup),
        "cpu_from_upload": cpu_ready - cpu_uploaded,
        "playable": t_playable - t_pickup,
        "playable_state": playable_state,
        "renditions": renditions,
        "written_mib": stored / MIB,
        "breakdown": "; ".join(breakdown) + (f" (videoProgress: {progress.error})" if progress.error else ""),
    }


def section_transcode(args, work, results):
    clip = os.path.join(CACHE, f"clip-720p30-{CLIP_SECONDS}s-{SOURCE}.mp4")
    make_clip(clip)
    rungs = ladder(1280, 720)
    log(f"clip {clip} ({os.path.getsize(clip) / MIB:.1f} MiB); ladder "
        + " ".join(f"{r['name']}={r['w']}x{r['h']}@{r['kbps']}k" for r in rungs) + f"; preset {PRESET}")
    errlog = os.path.join(work, "ffmpeg.stderr")
    flick = Flick(args.flick, work, "flick-transcode", workers=1)
    runs = []
    try:
        for run in range(1, TRANSCODE_RUNS + 1):
            out = os.path.join(work, "naive")
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            log(f"run {run}: naive one-process ladder")
            n_wall, n_cpu, note = measured(naive_command(clip, rungs, out), errlog, "naive")
            log(f"run {run}: naive {n_wall:.1f} s wall, {n_cpu:.1f} CPU-s ({note})")

            out = os.path.join(work, "audio-once")
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            log(f"run {run}: Flick's ffmpeg command alone (audio once)")
            a_wall, a_cpu, note = measured(audio_once_command(clip, rungs, out), errlog, "audio-once")
            log(f"run {run}: audio once {a_wall:.1f} s wall, {a_cpu:.1f} CPU-s ({note})")

            p_wall = p_cpu = 0.0
            out = os.path.join(work, "per-rung")
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            log(f"run {run}: one ffmpeg per rung")
            for r in rungs:
                w, c, note = measured(rung_command(clip, r, out), errlog, r["name"])
                p_wall, p_cpu = p_wall + w, p_cpu + c
                log(f"run {run}:   {r['name']} {w:.1f} s wall, {c:.1f} CPU-s ({note})")
            log(f"run {run}: per-rung {p_wall:.1f} s wall, {p_cpu:.1f} CPU-s")

            log(f"run {run}: through flick")
            f = flick_transcode(flick, clip, run)
            log(f"run {run}: flick pickup->READY {f['wall']:.1f} s wall, {f['cpu']:.1f} CPU-s ({f['note']}); "
                f"first playable at {f['playable']:.1f} s ({f['playable_state']}); upload {f['upload_s']:.1f} s, "
                f"upload->pickup {f['queue_s']:.2f} s; renditions {' '.join(f['renditions'])}")
            log(f"run {run}: flick stages: {f['breakdown']}")
            runs.append({"naive_wall": n_wall, "naive_cpu": n_cpu, "once_wall": a_wall, "once_cpu": a_cpu,
                         "rung_wall": p_wall, "rung_cpu": p_cpu, **f,
                         # Both sides of a bar come from the same run; the ratio is the median of these.
                         "wall_ratio": f["wall"] / n_wall, "cpu_ratio": f["cpu"] / p_cpu})
    finally:
        flick.stop()
    if not KEEP:
        for d in ("naive", "audio-once", "per-rung"):
            shutil.rmtree(os.path.join(work, d), ignore_errors=True)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if isinstance(runs[0][k], float)}
    med["playable_state"] = runs[len(runs) // 2]["playable_state"]
    med["breakdown"] = runs[-1]["breakdown"]
    results["transcode"] = med


def s3_server_cpu():
    """CPU seconds of the local SeaweedFS processes (`weed`) so far; 0 when the S3 server is not
    one of this machine's processes."""
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "weed":
                    continue
            total += process_cpu(pid)
        except OSError:
            continue
    return total


def client_cpu():
    """CPU seconds of this script (every thread) and its reaped children (the direct uploader)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class CpuSplit:
    """Where the machine's CPU went while an upload ran: the client (this script or the direct
    uploader), flick, the S3 server and the rest, in CPU-ms per MiB moved, and how busy the
    cores were (1.0: every core all the time)."""

    def __init__(self, flick=None):
        self.flick = flick
        self.c0, self.s0, self.b0 = client_cpu(), s3_server_cpu(), busy()
        self.f0 = flick.cpu() if flick else 0.0
        self.t0 = time.monotonic()

    def done(self, mib):
        wall = time.monotonic() - self.t0
        client, s3 = client_cpu() - self.c0, s3_server_cpu() - self.s0
        flick = self.flick.cpu() - self.f0 if self.flick else 0.0
        total = busy() - self.b0
        per = {"client": client, "flick": flick, "s3": s3, "other": max(total - client - flick - s3, 0.0)}
        return {"ms_per_mib": {k: v * 1000 / mib for k, v in per.items()}, "busy": total / (wall * NCPU)}


def split_text(split):
    m = split["ms_per_mib"]
    return (f"CPU-ms/MiB client {m['client']:.1f}, flick {m['flick']:.1f}, S3 {m['s3']:.1f}, other {m['other']:.1f}; "
            f"cores {split['busy'] * 100:.0f}% busy")


def median_split(splits):
    splits = list(splits)
    return {"ms_per_mib": {k: statistics.median(s["ms_per_mib"][k] for s in splits) for k in splits[0]["ms_per_mib"]},
            "busy": statistics.median(s["busy"] for s in splits)}


def sampled(flick, upload):
    """Runs `upload`; returns its seconds, flick's CPU seconds and flick's RSS peak sampled
    every 50 ms meanwhile."""
    peak, stop = [0.0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], flick.status("VmRSS"))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0, c0 = time.monotonic(), flick.cpu()
    try:
        upload()
    finally:
        stop.set()
        sampler.join()
    return time.monotonic() - t0, flick.cpu() - c0, peak[0]


def section_upload(args, work, results):
    clip = os.path.join(CACHE, f"clip-720p30-{CLIP_SECONDS}s-{SOURCE}.mp4")
    make_clip(clip)
    size = UPLOAD_MIB * MIB
    big = os.path.join(work, "upload.bin")
    log(f"writing a {UPLOAD_MIB} MiB file (an MP4's first MiB, then random bytes)")
    with open(clip, "rb") as src, open(big, "wb") as f:
        f.write(src.read(min(MIB, size)))
        while f.tell() < size:
            f.write(os.urandom(min(8 * MIB, size - f.tell())))
    s3env = dict(os.environ, S3_ENDPOINT=S3_ENDPOINT, S3_BUCKET=S3_BUCKET, S3_ACCESS_KEY=S3_KEY, S3_SECRET_KEY=S3_SECRET)
    tus, direct, direct_splits = [], [], []
    parallel = {mode: [] for mode in PARALLEL_PATCH}
    try:
        for run in range(1, UPLOAD_RUNS + 1):
            # The direct upload first, then tus into a fresh flick (no worker: only the upload).
            key = f"bench/{uuid.uuid4()}/direct.bin"
            split = CpuSplit()
            out = subprocess.run([args.multipart_put, big, key], env=s3env, check=True, capture_output=True,
                                 text=True).stdout
            d = dict(kv.split("=") for kv in out.split())
            direct.append(float(d["mib_per_s"]))
            direct_splits.append(split.done(size / MIB))
            log(f"run {run}: direct multipart put_stream {float(d['seconds']):.1f} s, {d['mib_per_s']} MiB/s; "
                + split_text(direct_splits[-1]))

            flick = Flick(args.flick, work, f"flick-upload-{run}", workers=0)
            try:
                user = str(uuid.uuid4())
                video_id, path = create_video(user, f"bench upload {run}")
                rss_idle = flick.status("VmRSS")
                split = CpuSplit(flick)
                seconds, cpu, peak = sampled(flick, lambda: tus_upload(user, path, big, size))
                hwm = flick.status("VmHWM")
                rate = size / MIB / seconds
                tus.append({"rate": rate, "rss": peak, "hwm": hwm, "idle": rss_idle, "cpu": cpu,
                            "split": split.done(size / MIB)})
                log(f"run {run}: tus {seconds:.1f} s, {rate:.1f} MiB/s, flick RSS idle {rss_idle:.0f} MiB, "
                    f"peak sampled {peak:.0f} MiB, VmHWM {hwm:.0f} MiB, flick CPU {cpu:.1f} s; "
                    + split_text(tus[-1]["split"]))
                delete_video(user, video_id)
            finally:
                flick.stop()
            # Each way of sending in a flick of its own: VmHWM and the allocator's retained pages
            # are a process's whole life.
            for mode in PARALLEL_PATCH if PARALLEL > 1 else []:
                chunk = None if mode == "whole" else CHUNK
                flick = Flick(args.flick, work, f"flick-upload-{run}-{mode}", workers=0)
                try:
                    user = str(uuid.uuid4())
                    video_id, _ = create_video(user, f"bench parallel upload {run} {mode}")
                    split = CpuSplit(flick)
                    seconds, cpu, peak = sampled(
                        flick, lambda: tus_parallel_upload(user, video_id, big, size, PARALLEL, chunk))
                    hwm = flick.status("VmHWM")
                    rate = size / MIB / seconds
                    parallel[mode].append({"rate": rate, "rss": peak, "hwm": hwm, "cpu": cpu,
                                           "split": split.done(size / MIB)})
                    log(f"run {run}: tus {PARALLEL} partial uploads ({mode}) + final {seconds:.1f} s, "
                        f"{rate:.1f} MiB/s, peak sampled {peak:.0f} MiB, VmHWM {hwm:.0f} MiB, flick CPU {cpu:.1f} s; "
                        + split_text(parallel[mode][-1]["split"]))
                    delete_video(user, video_id)
                finally:
                    flick.stop()
    finally:
        if not KEEP:
            os.remove(big)
    results["upload"] = {
        # Each run's sides were measured back to back: a ratio is the median of theirs.
        "ratio": statistics.median(t["rate"] / d for t, d in zip(tus, direct)),
        "parallel": {mode: {
            "ratio": statistics.median(p["rate"] / d for p, d in zip(runs, direct)),
            "rate": statistics.median(p["rate"] for p in runs),
            "rss": max(max(p["rss"], p["hwm"]) for p in runs),
            "split": median_split(p["split"] for p in runs),
        } for mode, runs in parallel.items() if runs},
        "direct_split": median_split(direct_splits),
        "tus_split": median_split(t["split"] for t in tus),
        "tus_rate": statistics.median(t["rate"] for t in tus),
        "direct_rate": statistics.median(direct),
        "rss": max(t["rss"] for t in tus),
        "hwm": max(t["hwm"] for t in tus),
        "idle": statistics.median(t["idle"] for t in tus),
    }


class Worker:
    """`flick worker` (one job at a time) on a Flick configuration, pinned to `core` or not."""

    def __init__(self, binary, config, work, name, core, port):
        self.log_path = os.path.join(work, f"{name}.log")
        self.log = open(self.log_path, "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLICK_") or k in ("FLICK_TOOLS_DIR",)}
        env.update(kv.split("=", 1) for kv in ENV("FLICK_BENCH_FLICK_ENV", "").split())
        cmd = [binary, "--config", config, "worker", "--jobs", "1", "--listen", f"127.0.0.1:{port}"]
        if core is not None:
            cmd = ["taskset", "-c", str(core)] + cmd
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        self.pid, self.port = self.proc.pid, port
        wait_ready(self.proc, port, "flick worker", lambda: f"see {self.log_path}")

    def cpu(self):
        return process_cpu(self.pid)

    def parts(self):
        """{kind: [parts completed, their summed seconds]} from the worker's /metrics (kinds:
        span, audio, thumbnails)."""
        _, _, body = request(self.port, "GET", "/metrics", timeout=5)
        by_kind = {}
        for line in body.decode().splitlines():
            if not line.startswith("transcode_part_duration_seconds_") or 'outcome="completed"' not in line:
                continue
            kind = re.search(r'kind="([^"]*)"', line)
            slot = by_kind.setdefault(kind.group(1) if kind else "?", [0.0, 0.0])
            if line.startswith("transcode_part_duration_seconds_count"):
                slot[0] += float(line.rsplit(" ", 1)[1])
            elif line.startswith("transcode_part_duration_seconds_sum"):
                slot[1] += float(line.rsplit(" ", 1)[1])
        return by_kind

    def stop(self):
        stop_process(self.proc, self.log, "flick worker")


def assembly_seconds(pool):
    """From the last part done to the assembly's end, from the workers' JSON logs."""
    import datetime
    done, assembled = [], []
    for w in pool:
        w.log.flush()
        with open(w.log_path, errors="replace") as f:
            for line in f:
                if '"part done"' not in line and '"parts assembled' not in line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                at = datetime.datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
                (done if entry["message"] == "part done" else assembled).append(at)
    return max(assembled) - max(done) if done and assembled else None


def psql(sql):
    host_port = PG.split("@", 1)[1]
    host, port = host_port.split(":")
    subprocess.run(["psql", "-q", "-h", host, "-p", port, "-U", "postgres", "-d", "postgres", "-c", sql], check=True,
                   stdout=subprocess.DEVNULL)


# (name, split?, workers, pinned?)
SCALING = {
    "single-pinned": (False, 1, True),
    "split-1-pinned": (True, 1, True),
    "split-2-pinned": (True, 2, True),
    "single": (False, 1, False),
    "split-2": (True, 2, False),
}


def scaling_case(args, work, clip, case, run):
    split, workers, pinned = SCALING[case]
    tag = f"{case}-{run}".replace("-", "_")
    db = f"flick_bench_{tag}"
    psql(f"DROP DATABASE IF EXISTS {db}")
    psql(f"CREATE DATABASE {db}")
    extra = (f"[database]\nurl = {toml_str(PG + '/' + db)}\n"
             f"[bus]\nurl = {toml_str(AMQP)}\nqueue_prefix = {toml_str('bench_' + tag + '.')}\n"
             f"exchange = {toml_str('bench_' + tag + '.events')}\n")
    chunking = "chunk_min_seconds = 120\nchunk_seconds = 60\n" if split else "chunk_min_seconds = 0\n"
    flick = Flick(args.flick, work, f"scaling-{tag}", workers=0, transcoder_extra=chunking, extra=extra)
    pool = []
    try:
        for k in range(workers):
            pool.append(Worker(args.flick, flick.config, work, f"worker-{tag}-{k}", k if pinned else None,
                               PORT_BASE + 10 + k))
        cpu = lambda: flick.cpu() + sum(w.cpu() for w in pool)  # noqa: E731
        written = lambda: bytes_written(PORTS["transcoder"]) + sum(bytes_written(w.port) for w in pool)  # noqa: E731
        f = flick_transcode(flick, clip, f"{case} {run}", cpu=cpu, written=written)
        by_worker = [w.parts() for w in pool]
        by_kind = {}
        for kinds in by_worker:
            for kind, (n, t) in kinds.items():
                slot = by_kind.setdefault(kind, [0.0, 0.0])
                slot[0] += n
                slot[1] += t
        f["assembly_s"] = assembly_seconds(pool) if split else None
        f["parts"] = sum(n for n, _ in by_kind.values())
        f["part_mean_s"] = sum(t for _, t in by_kind.values()) / f["parts"] if f["parts"] else None
        f["parts_by_worker"] = [int(sum(n for n, _ in kinds.values())) for kinds in by_worker]
        # Seconds by part kind: on a pinned worker a part's wall time is about its CPU time.
        f["seconds_by_kind"] = {kind: t for kind, (_, t) in by_kind.items()}
        return f
    finally:
        for w in pool:
            w.stop()
        flick.stop()
        psql(f"DROP DATABASE IF EXISTS {db}")


def section_scaling(args, work, results):
    clip = os.path.join(CACHE, f"clip-720p30-{SCALING_SECONDS}s-{SOURCE}.mp4")
    make_clip(clip, SCALING_SECONDS)
    log(f"scaling: clip {clip} ({os.path.getsize(clip) / MIB:.1f} MiB), cases {', '.join(SCALING_CASES)}, "
        f"{SCALING_RUNS} round(s)")
    runs = {case: [] for case in SCALING_CASES}
    for run in range(1, SCALING_RUNS + 1):
        for case in SCALING_CASES:
            f = scaling_case(args, work, clip, case, run)
            runs[case].append(f)
            extra = ""
            if f["parts"]:
                kinds = ", ".join(f"{k} {t:.1f} s" for k, t in sorted(f["seconds_by_kind"].items()))
                extra = (f"; {int(f['parts'])} parts (by worker {f['parts_by_worker']}), mean part "
                         f"{f['part_mean_s']:.1f} s, assembly {f['assembly_s'] or 0:.1f} s; by kind: {kinds}")
            log(f"scaling run {run}: {case}: pickup->READY {f['wall']:.1f} s, {f['cpu']:.1f} CPU-s ({f['note']}); "
                f"first playable {f['playable']:.1f} s ({f['playable_state']}); stored {f['written_mib']:.1f} MiB{extra}")
    med = {}
    for case, fs in runs.items():
        med[case] = {k: statistics.median(x[k] for x in fs) for k in ("wall", "cpu", "playable", "written_mib")}
        parted = [x for x in fs if x["parts"]]
        if parted:
            med[case]["part_mean_s"] = statistics.median(x["part_mean_s"] for x in parted)
            med[case]["assembly_s"] = statistics.median(x["assembly_s"] or 0 for x in parted)
            med[case]["parts"] = parted[0]["parts"]
            kinds = sorted({k for x in parted for k in x["seconds_by_kind"]})
            med[case]["by_kind"] = {k: statistics.median(x["seconds_by_kind"].get(k, 0.0) for x in parted) for k in kinds}
    # Ratios within one round, then their median (both sides of a bar from the same round).
    def ratio(a, b):
        if a in runs and b in runs:
            return statistics.median(x["wall"] / y["wall"] for x, y in zip(runs[a], runs[b]))
        return None
    def written_ratio(a, b):
        if a in runs and b in runs:
            return statistics.median(x["written_mib"] / y["written_mib"] for x, y in zip(runs[a], runs[b]))
        return None
    results["scaling"] = {"cases": med, "pinned": ratio("split-2-pinned", "split-1-pinned"),
                          "unpinned": ratio("split-2", "single"), "written": written_ratio("split-2", "single")}


def summary(results):
    rows = []

    def row(what, figure, bar, ok):
        rows.append((what, figure, bar, "n/a" if ok is None else "PASS" if ok else "MISS"))

    t = results.get("transcode")
    if t:
        print(f"\nbench: transcode {CLIP_SECONDS} s 720p30 -> 720/480/360/240, {PRESET}, "
              f"median of {TRANSCODE_RUNS} (wall s / CPU-s, user+sys incl. children)")
        for label, w, c in [
            ("naive one-process ladder (audio per rung)", t["naive_wall"], t["naive_cpu"]),
            ("one ffmpeg per rung, sum", t["rung_wall"], t["rung_cpu"]),
            ("Flick's ffmpeg command alone (audio once)", t["once_wall"], t["once_cpu"]),
            ("flick, job pickup -> READY (renditions in S3)", t["wall"], t["cpu"]),
            ("flick, upload completed -> READY", t["wall_from_upload"], t["cpu_from_upload"]),
        ]:
            print(f"bench:   {label:<46} {w:6.1f} / {c:6.1f}")
        print(f"bench:   flick first playable (hls_url): {t['playable']:.1f} s after pickup, state "
              f"{t['playable_state']}; ladder done {t['wall']:.1f} s")
        print(f"bench:   flick stages (last run): {t['breakdown']}")
        wr, cr = t["wall_ratio"], t["cpu_ratio"]
        row("transcode wall, flick / naive", f"{wr:.2f}x ({t['wall']:.1f} / {t['naive_wall']:.1f} s)", "<= 0.80x",
            wr <= 0.80)
        row("transcode CPU, flick / per-rung sum", f"{cr:.2f}x ({t['cpu']:.1f} / {t['rung_cpu']:.1f} CPU-s)",
            "<= 0.70x", cr <= 0.70)
        early = t["playable"] < t["wall"] - 0.5 and t["playable_state"] != "READY"
        row("first playable before ladder done", f"{t['playable']:.1f} s vs {t['wall']:.1f} s ({t['playable_state']})",
            "earlier (clips >= 60 s)", early if CLIP_SECONDS >= 60 else None)
    u = results.get("upload")
    if u:
        ratio = u["ratio"]
        print(f"\nbench: upload {UPLOAD_MIB} MiB in {CHUNK // MIB} MiB chunks to S3 ({S3_ENDPOINT}), median of "
              f"{UPLOAD_RUNS}")
        print(f"bench:   tus through flick: {u['tus_rate']:.1f} MiB/s; direct multipart (put_stream): "
              f"{u['direct_rate']:.1f} MiB/s")
        print(f"bench:   flick RSS: idle {u['idle']:.0f} MiB, peak sampled every 50 ms {u['rss']:.0f} MiB, "
              f"VmHWM {u['hwm']:.0f} MiB")
        row("upload throughput, tus / direct",
            f"{ratio * 100:.0f}% (medians {u['tus_rate']:.0f} / {u['direct_rate']:.0f} MiB/s)", ">= 70%", ratio >= 0.70)
        print(f"bench:   direct: {split_text(u['direct_split'])}")
        print(f"bench:   one tus stream: {split_text(u['tus_split'])}")
        for mode, p in u["parallel"].items():
            print(f"bench:   {PARALLEL} partial uploads ({mode}): {split_text(p['split'])}")
        peak = max(u["rss"], u["hwm"])
        row("flick peak RSS during upload", f"{peak:.0f} MiB", "<= 150 MiB", peak <= 150)
        for mode, p in u["parallel"].items():
            how = "one PATCH each" if mode == "whole" else f"{CHUNK // MIB} MiB PATCHes"
            row(f"upload throughput, {PARALLEL} parallel partial uploads ({how}) / direct",
                f"{p['ratio'] * 100:.0f}% (medians {p['rate']:.0f} / {u['direct_rate']:.0f} MiB/s)", ">= 100%",
                p["ratio"] >= 1.0)
            row(f"flick peak RSS during {PARALLEL} parallel partial uploads ({how})", f"{p['rss']:.0f} MiB",
                "<= 150 MiB", p["rss"] <= 150)
    sc = results.get("scaling")
    if sc:
        print(f"\nbench: scaling {SCALING_SECONDS} s 720p30 -> 720/480/360/240, {PRESET}, median of {SCALING_RUNS} "
              "(job pickup -> READY wall s / CPU-s of flick + workers, ffmpeg included)")
        for case, m in sc["cases"].items():
            parts = ""
            if "parts" in m:
                kinds = ", ".join(f"{k} {t:.1f} s" for k, t in m["by_kind"].items())
                parts = (f"; {int(m['parts'])} parts, mean part {m['part_mean_s']:.1f} s, assembly "
                         f"{m['assembly_s']:.1f} s; part seconds by kind: {kinds}")
            print(f"bench:   {case:<16} {m['wall']:7.1f} / {m['cpu']:7.1f}; first playable {m['playable']:.1f} s; "
                  f"stored {m['written_mib']:.1f} MiB{parts}")
        if sc["pinned"] is not None:
            row("2 pinned workers / 1 pinned worker (split job)", f"{sc['pinned']:.2f}x", "<= 0.55x", sc["pinned"] <= 0.55)
        if sc["unpinned"] is not None:
            row("2 workers (split) / today's single job, unpinned", f"{sc['unpinned']:.2f}x", "<= 1.02x",
                sc["unpinned"] <= 1.02)
        if sc["written"] is not None:
            row("bytes stored, split job / today's single job", f"{sc['written']:.3f}x", "<= 1.02x",
                sc["written"] <= 1.02)
    noisy = [f"{what} {other:.0f} CPU-s in {wall:.0f} s" for what, wall, other in BUSY if other > 0.1 * wall * NCPU]
    if noisy:
        print(f"\nbench: WARNING: other processes used more than 10% of the {NCPU} cores during: " + ", ".join(noisy)
              + " -- wall times and their ratios are unreliable; run again on a quiet machine")
    if rows:
        w = [max(len(r[i]) for r in rows + [("figure", "measured", "bar", "")]) for i in range(3)]
        print()
        print(f"bench: {'figure':<{w[0]}}  {'measured':<{w[1]}}  {'bar':<{w[2]}}  result")
        for r in rows:
            print(f"bench: {r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flick", required=True)
    ap.add_argument("--multipart-put", required=True)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="flick-bench-transcode.")
    results = {}
    started = time.monotonic()
    try:
        if "transcode" in SECTIONS:
            section_transcode(args, work, results)
        if "upload" in SECTIONS:
            section_upload(args, work, results)
        if "scaling" in SECTIONS:
            section_scaling(args, work, results)
    finally:
        summary(results)
        log(f"took {time.monotonic() - started:.0f} s" + (f"; work dir kept: {work}" if KEEP else ""))
        if not KEEP:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
