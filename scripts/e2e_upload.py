#!/usr/bin/env python3
"""Upload to playback through a running dev stack's edge (Traefik -> hive-router -> subgraphs).

usage: scripts/e2e_upload.py ACCESS_TOKEN      (scripts/smoke.sh runs it; stdlib only)

Creates a video with GraphQL, uploads a generated 10 s 720p clip with tus in several
chunks (one interrupted mid-body, then resumed from the server's offset), follows
`videoProgress` over a WebSocket through the router until READY, then fetches the HLS
master playlist and a segment through the edge and checks each rendition with ffprobe.
Prints one `ok`/`FAIL` line per check; exits 1 if any failed.
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from graphql_ws import WebSocket

EDGE = os.environ.get("FLICK_EDGE_URL", "http://127.0.0.1:8080")
HOST = urllib.parse.urlparse(EDGE).hostname
PORT = urllib.parse.urlparse(EDGE).port or 80
failed = 0


def ok(msg):
    print(f"ok    {msg}", flush=True)


def fail(msg):
    global failed
    failed += 1
    print(f"FAIL  {msg}", flush=True)


def request(method, path, body=None, headers=None, timeout=30):
    conn = http.client.HTTPConnection(HOST, PORT, timeout=timeout)
    conn.request(method, path, body=body, headers=headers or {})
    res = conn.getresponse()
    data = res.read()
    conn.close()
    return res.status, dict((k.lower(), v) for k, v in res.getheaders()), data


def graphql(token, query, variables=None):
    body = json.dumps({"query": query, "variables": variables or {}})
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    _, _, data = request("POST", "/graphql", body, headers)
    return json.loads(data)


def follow_progress(token, video_id, seen, done, subscribed):
    """Subscribes to videoProgress through the edge and the router; records every message.
    Sets `subscribed` at the first message (the video's current state), which the service sends
    once the subscription is live."""
    try:
        ws = WebSocket(HOST, PORT, "/graphql", "graphql-transport-ws")
        ws.send({"type": "connection_init", "payload": {"headers": {"authorization": f"Bearer {token}"}}})
        ack = ws.recv()
        if ack.get("type") != "connection_ack":
            seen.append({"error": f"no connection_ack: {ack}"})
            return
        ws.send(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {
                    "query": "subscription($id: ID!) { videoProgress(videoId: $id) { stage percent rendition etaSeconds error } }",
                    "variables": {"id": video_id},
                },
            }
        )
        ws.sock.settimeout(180)
        while True:
            m = ws.recv()
            subscribed.set()
            if m.get("type") == "next":
                p = (m.get("payload", {}).get("data") or {}).get("videoProgress")
                seen.append(p if p else {"error": m.get("payload")})
                if p and p["stage"] in ("ready", "failed"):
                    return
            elif m.get("type") in ("error", "complete"):
                seen.append({"error": m})
                return
    except Exception as e:  # the main thread reports what was seen
        seen.append({"error": repr(e)})
    finally:
        subscribed.set()
        done.set()


def interrupted_patch(path, token, offset, body, send_bytes):
    """Sends a PATCH that declares the whole body but breaks off after send_bytes."""
    sock = socket.create_connection((HOST, PORT), timeout=10)
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: {HOST}:{PORT}\r\nAuthorization: Bearer {token}\r\n"
        f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
        f"Upload-Offset: {offset}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body[:send_bytes])
    # Half-close: every byte sent arrives before the end of the stream; then wait until the
    # other side is done with the request (its answer, or its close).
    sock.shutdown(socket.SHUT_WR)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass
    sock.close()


def main():
    token = sys.argv[1]
    work = tempfile.mkdtemp(prefix="flick-e2e-upload-")
    clip = os.path.join(work, "clip.mp4")
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440", "-t", "10", "-c:v", "libx264", "-preset", "ultrafast",
         "-pix_fmt", "yuv420p", "-c:a", "aac", clip],
        check=True,
    )
    data = open(clip, "rb").read()

    created = graphql(
        token,
        "mutation($i: CreateVideoInput!) { createVideo(input: $i) { video { id status } upload { id url } } }",
        {"i": {"title": "E2E upload", "tags": ["e2e"], "visibility": "PUBLIC"}},
    )
    try:
        video_id = created["data"]["createVideo"]["video"]["id"]
        upload_url = created["data"]["createVideo"]["upload"]["url"]
        ok("createVideo returns an upload ticket")
    except (KeyError, TypeError):
        fail(f"createVideo with an upload ticket: {created}")
        return
    path = urllib.parse.urlparse(upload_url).path

    seen, done, subscribed = [], threading.Event(), threading.Event()
    threading.Thread(target=follow_progress, args=(token, video_id, seen, done, subscribed), daemon=True).start()
    if not subscribed.wait(30) or done.is_set():
        fail(f"videoProgress subscription did not start: {seen}")
        return

    auth = {"authorization": f"Bearer {token}", "tus-resumable": "1.0.0"}
    patch = dict(auth, **{"content-type": "application/offset+octet-stream"})
    chunk = len(data) // 4 + 1
    status, h, _ = request("PATCH", path, data[:chunk], dict(patch, **{"upload-offset": "0", "upload-length": str(len(data))}))
    if status != 204:
        fail(f"first tus PATCH through the edge: HTTP {status}")
        return
    offset = int(h["upload-offset"])
    sent = chunk // 2
    interrupted_patch(path, token, offset, data[offset:offset + chunk], sent)
    # Through the edge, bytes the proxies held when the client broke off may or may not reach
    # the transcoder, so the exact count is not the client's to know: what must hold is that
    # something was kept, and never more than was sent. The transcoder may still be saving
    # what arrived when the edge answers: wait (10 s at most) for the offset to move.
    deadline = time.time() + 10
    while True:
        _, h, _ = request("HEAD", path, None, auth)
        resumed = int(h.get("upload-offset", "-1"))
        if resumed > offset or time.time() > deadline:
            break
        time.sleep(0.1)
    if offset < resumed <= offset + sent:
        ok(f"an interrupted PATCH keeps what arrived (offset {offset} -> {resumed}, {sent} bytes sent)")
    else:
        fail(f"offset after the interruption: {resumed} (was {offset}, {sent} bytes sent)")
    offset = resumed
    while offset < len(data):
        status, h, body = request("PATCH", path, data[offset:offset + chunk], dict(patch, **{"upload-offset": str(offset)}))
        if status == 409:  # as a tus client does: ask where the upload stands, go on from there
            _, h, _ = request("HEAD", path, None, auth)
            offset = int(h["upload-offset"])
            continue
        if status != 204:
            fail(f"tus PATCH at {offset}: HTTP {status} {body[:200]}")
            return
        offset = int(h["upload-offset"])
    ok(f"tus upload of {len(data)} bytes in chunks through the edge")

    done.wait(180)
    stages = [p.get("stage") for p in seen if isinstance(p, dict)]
    errors = [p["error"] for p in seen if isinstance(p, dict) and p.get("error") and not p.get("stage")]
    if stages and stages[-1] == "ready" and "encoding" in stages and not errors:
        percents = [p["percent"] for p in seen if p.get("stage") == "encoding"]
        ok(f"videoProgress over a WebSocket through the router: {len(seen)} messages, encoding {min(percents):.0f}..{max(percents):.0f}%, then ready")
    else:
        fail(f"videoProgress over the WebSocket: {seen[-5:]}")

    deadline = time.time() + 120
    while True:
        status, _, body = request("GET", f"/video/{video_id}", None, {"authorization": f"Bearer {token}"})
        view = json.loads(body) if status == 200 else {}
        if view.get("state") in ("READY", "FAILED") or time.time() > deadline:
            break
        time.sleep(0.5)
    if view.get("state") == "READY" and view.get("hls_url"):
        ok("GET /video/{id} through the edge: READY with playback URLs")
    else:
        fail(f"GET /video/{video_id}: HTTP {status} {body[:300]}")
        return

    status, h, master = request("GET", f"/video/{video_id}/hls/master.m3u8")
    lines = master.decode().splitlines()
    # Video variants: the URI after each EXT-X-STREAM-INF that has a RESOLUTION.
    variants = [uri for inf, uri in zip(lines, lines[1:]) if inf.startswith("#EXT-X-STREAM-INF") and "RESOLUTION=" in inf]
    if status == 200 and h.get("content-type") == "application/vnd.apple.mpegurl" and len(variants) == 4:
        ok(f"HLS master playlist through the edge lists {len(variants)} renditions")
    else:
        fail(f"master playlist: HTTP {status} {h.get('content-type')} {master[:300]}")
    status, _, playlist = request("GET", f"/video/{video_id}/hls/{variants[0]}")
    segment = next((line for line in playlist.decode().splitlines() if line.endswith(".m4s")), None)
    rung = variants[0].split("/")[0]
    status, h, seg = request("GET", f"/video/{video_id}/hls/{rung}/{segment}", None, {"range": "bytes=0-1023"})
    if status == 206 and len(seg) == 1024 and h.get("content-type") == "video/iso.segment":
        ok("a segment through the edge with a range request (206)")
    else:
        fail(f"segment {segment}: HTTP {status} {len(seg)} bytes {h.get('content-type')}")

    want = {"720p": (1280, 720), "480p": (854, 480), "360p": (640, 360), "240p": (426, 240)}
    for variant in variants:
        name = variant.split("/")[0]
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height:format=duration",
             "-of", "json", f"{EDGE}/video/{video_id}/hls/{variant}"],
            capture_output=True, text=True,
        )
        try:
            info = json.loads(probe.stdout)
            size = (info["streams"][0]["width"], info["streams"][0]["height"])
            duration = float(info["format"]["duration"])
        except (ValueError, KeyError, IndexError):
            fail(f"ffprobe {name}: {probe.stderr[-300:]}")
            continue
        if size == want.get(name) and abs(duration - 10.0) < 0.6:
            ok(f"ffprobe {name}: {size[0]}x{size[1]}, {duration:.2f} s")
        else:
            fail(f"ffprobe {name}: {size}, {duration} s; want {want.get(name)}, 10 s")
    return video_id


def related_across_subgraphs(token, first_id, second_id):
    """Both uploads are public and ready: the recommender indexed them, and the router joins
    its `related`/`recommendedForMe` with media's fields."""
    query = "query($id: ID!) { video(id: $id) { title related(first: 5) { id title owner { displayName } } } recommendedForMe(first: 5) { id title } }"
    deadline = time.time() + 60
    while True:
        res = graphql(token, query, {"id": first_id})
        related = ((res.get("data") or {}).get("video") or {}).get("related") or []
        if any(v["id"] == second_id for v in related) or time.time() > deadline:
            break
        time.sleep(0.5)
    if "errors" not in res and any(v["id"] == second_id and v["title"] for v in related):
        ok("video { related { title owner } } joins recommender, media and accounts through the edge")
    else:
        fail(f"related through the edge: {json.dumps(res)[:400]}")
    if "errors" not in res and isinstance(res["data"]["recommendedForMe"], list):
        ok(f"recommendedForMe through the edge ({len(res['data']['recommendedForMe'])} videos)")
    else:
        fail(f"recommendedForMe through the edge: {json.dumps(res)[:400]}")


def cli_upload_resumes(token):
    """`flick upload` killed mid-way, then run again: it resumes the same upload."""
    flick = os.environ.get("FLICK_BIN")
    if not flick:
        fail("flick upload: FLICK_BIN is not set")
        return
    work = tempfile.mkdtemp(prefix="flick-e2e-cli-")
    clip = os.path.join(work, "cli clip.mp4")
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
         "-f", "lavfi", "-i", "sine", "-t", "20", "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "12M",
         "-c:a", "aac", clip],
        check=True,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLICK_")}
    env.update({"FLICK_TOKEN": token, "FLICK_URL": EDGE})
    first = subprocess.Popen([flick, "upload", clip, "--title", "CLI upload"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Kill it as soon as the first chunk is acknowledged (its progress line says so).
    progress = b""
    while b"%" not in progress:
        byte = first.stderr.read(1)
        if not byte:
            break
        progress += byte
    first.kill()
    first.wait()
    if not os.path.exists(clip + ".flick-upload"):
        fail(f"flick upload killed mid-way left no resume state: {progress.decode(errors='replace')[-200:]}")
        return
    again = subprocess.run([flick, "upload", clip], env=env, capture_output=True, text=True, timeout=300)
    video_id = again.stdout.strip()
    if again.returncode == 0 and "resuming" in again.stderr and video_id:
        ok("flick upload resumes after being killed mid-way")
    else:
        fail(f"flick upload resume: rc={again.returncode} {again.stderr[-300:]}")
        return
    deadline = time.time() + 180
    while time.time() < deadline:
        status, _, body = request("GET", f"/video/{video_id}", None, {"authorization": f"Bearer {token}"})
        state = json.loads(body).get("state") if status == 200 else None
        if state in ("READY", "FAILED"):
            break
        time.sleep(0.5)
    if state == "READY":
        ok("the CLI's upload was transcoded")
    else:
        fail(f"the CLI's upload ended {state}")
    return video_id


def watching_counts_a_view(token, video_id):
    """A player watches the 10 s clip through the edge: two heartbeats of 3 s watched each
    (a session's first may report at most 5 s) pass half of a video under a minute and count
    one view, which reaches media's viewCount through the outbox and the broker; the resume
    position is the viewer's through the router; a retried heartbeat counts nothing."""
    session = os.urandom(8).hex()
    beats = [{"videoId": video_id, "sessionId": session, "sequence": n, "positionSeconds": 3.0 * n,
              "watchedSeconds": 3.0, "rendition": "720p"} for n in (1, 2)]
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}

    def send(beat):
        status, _, body = request("POST", "/activity/heartbeat", json.dumps({"heartbeats": [beat]}), headers)
        return status, body, ((json.loads(body).get("results") or [{}])[0] if status == 200 else {})

    # The activity service learns of the video from media's and the transcoder's events.
    deadline = time.time() + 30
    while True:
        status, body, first = send(beats[0])
        if first.get("applied") or time.time() > deadline:
            break
        time.sleep(0.2)
    status, body, second = send(beats[1])
    if first.get("viewCounted") is False and second.get("viewCounted") is True:
        ok("heartbeats through the edge (POST /activity/heartbeat): 3 s is not a view, 6 s of the 10 s clip is")
    else:
        fail(f"heartbeats: {first}, then HTTP {status} {body[:300]}")
        return
    status, body, retried = send(beats[1])
    if retried.get("applied") is False and retried.get("viewCounted") is False:
        ok("the same heartbeat again counts nothing")
    else:
        fail(f"a retried heartbeat: HTTP {status} {body[:300]}")
    query = "query($id: ID!) { video(id: $id) { viewCount viewerProgress { positionSeconds watchedFraction } } }"
    deadline = time.time() + 30
    while True:
        got = graphql(token, query, {"id": video_id})
        video = (got.get("data") or {}).get("video") or {}
        if video.get("viewCount") == 1 or time.time() > deadline:
            break
        time.sleep(0.2)
    progress = video.get("viewerProgress") or {}
    if video.get("viewCount") == 1 and progress.get("positionSeconds") == 6.0 and abs((progress.get("watchedFraction") or 0) - 0.6) < 0.05:
        ok("the view reached media's viewCount; viewerProgress (activity) resumes at 6 s of 10")
    else:
        fail(f"viewCount and viewerProgress through the router: {got}")
    report = graphql(token, "query($id: ID!) { video(id: $id) { analytics(range: LAST_7_DAYS) { views watchSeconds retention { percent share } } } }", {"id": video_id})
    figures = ((report.get("data") or {}).get("video") or {}).get("analytics") or {}
    reached = {p["percent"]: p["share"] for p in figures.get("retention") or []}
    if figures.get("views") == 1 and figures.get("watchSeconds") == 6.0 and reached.get(0) == 1.0 and reached.get(100) == 0.0:
        ok("the owner's analytics through the router: 1 view, 6 s watched, the session stopped before the end")
    else:
        fail(f"analytics: {report}")
    board = graphql(token, "{ dashboard { totalViews analytics(range: LAST_7_DAYS) { views topVideos { video { id } views } } } }")
    board = (board.get("data") or {}).get("dashboard") or {}
    if board.get("totalViews") == 1 and (board.get("analytics") or {}).get("views") == 1:
        ok("the owner dashboard through the router: media's totalViews and activity's analytics side by side")
    else:
        fail(f"dashboard with analytics: {board}")
    history = graphql(token, "{ watchHistory(first: 5) { edges { node { video { id title } positionSeconds } } } }")
    edges = ((history.get("data") or {}).get("watchHistory") or {}).get("edges") or []
    if edges and edges[0]["node"]["video"]["id"] == video_id and edges[0]["node"]["video"]["title"] == "E2E upload":
        ok("watchHistory through the router: the clip first, its title from media")
    else:
        fail(f"watchHistory: {history}")


def playlists_through_the_edge(token, video_id):
    """Watch later and a playlist, through the router: the clip is added to both and listed."""
    later = graphql(token, "mutation($v: ID!) { addToWatchLater(videoId: $v) { id itemCount } }", {"v": video_id})
    listed = graphql(token, "{ watchLater { isWatchLater items { edges { node { video { id title } } } } } }")
    items = (((listed.get("data") or {}).get("watchLater") or {}).get("items") or {}).get("edges") or []
    if ((later.get("data") or {}).get("addToWatchLater") or {}).get("itemCount") == 1 and \
            [e["node"]["video"]["id"] for e in items] == [video_id] and items[0]["node"]["video"]["title"] == "E2E upload":
        ok("Watch later through the router: the clip, its title from media")
    else:
        fail(f"watch later: {later} {listed}")
    made = graphql(token, "mutation { createPlaylist(input: {title: \"E2E\", visibility: PUBLIC}) { id } }")
    playlist_id = ((made.get("data") or {}).get("createPlaylist") or {}).get("id")
    added = graphql(token, "mutation($p: ID!, $v: ID!) { addToPlaylist(playlistId: $p, videoId: $v) { itemCount } }",
                    {"p": playlist_id, "v": video_id})
    seen = graphql(token, "query($p: ID!) { playlist(id: $p) { title owner { id } items { edges { node { video { id } } } } } }",
                   {"p": playlist_id})
    got = (seen.get("data") or {}).get("playlist") or {}
    if ((added.get("data") or {}).get("addToPlaylist") or {}).get("itemCount") == 1 and \
            [e["node"]["video"]["id"] for e in (got.get("items") or {}).get("edges") or []] == [video_id]:
        ok("a public playlist through the router: created, the clip added and listed")
    else:
        fail(f"playlist: {made} {added} {seen}")


if __name__ == "__main__":
    uploaded = main()
    if uploaded:
        watching_counts_a_view(sys.argv[1], uploaded)
        playlists_through_the_edge(sys.argv[1], uploaded)
    from_cli = cli_upload_resumes(sys.argv[1])
    if uploaded and from_cli:
        related_across_subgraphs(sys.argv[1], uploaded, from_cli)
    sys.exit(1 if failed else 0)
