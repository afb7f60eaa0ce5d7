#!/usr/bin/env python3
"""Identity and subscription checks through the real edge (Traefik) and router (hive-router),
run by scripts/smoke.sh against a running dev stack (stdlib only).

- A WebSocket client that writes another user's x-user-id and the mesh secret itself into
  connection_init (as if the secret had leaked: e2e.sh exports the stack's FLICK_MESH_SECRET)
  gets no identity: queries see no user, mutations are refused, owner-only subscriptions too.
- A WebSocket client identified by its token acts as itself.
- Logging out ends the subscriptions the token opened, over a WebSocket and over SSE.

usage: scripts/e2e_security.py   (FLICK_EDGE_URL, FLICK_MESH_SECRET from the environment)
Prints ok/FAIL lines; exits 1 if any check failed.
"""

import http.client
import json
import os
import sys
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from graphql_ws import WebSocket  # noqa: E402

EDGE = os.environ.get("FLICK_EDGE_URL", "http://127.0.0.1:8080")
HOST = urllib.parse.urlparse(EDGE).hostname
PORT = urllib.parse.urlparse(EDGE).port or 80
MESH = os.environ.get("FLICK_MESH_SECRET", "")
failed = 0


def ok(msg):
    print(f"ok    {msg}", flush=True)


def fail(msg):
    global failed
    failed += 1
    print(f"FAIL  {msg}", flush=True)


def request(method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(HOST, PORT, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    res = conn.getresponse()
    data = res.read()
    conn.close()
    return res.status, data


def user():
    """Registers and logs in a new user: (id, access token)."""
    name = "sec" + uuid.uuid4().hex[:10]
    body = {"email": f"{name}@example.com", "username": name, "password": "correct horse battery", "display_name": name}
    status, data = request("POST", "/auth/register", json.dumps(body), {"content-type": "application/json"})
    assert status == 201, f"register: {status} {data[:200]}"
    login = {"login": name, "password": "correct horse battery"}
    status, data = request("POST", "/auth/login", json.dumps(login), {"content-type": "application/json"})
    assert status == 200, f"login: {status} {data[:200]}"
    token = json.loads(data)["access_token"]
    status, data = request("GET", "/user/profile", headers={"authorization": f"Bearer {token}"})
    return json.loads(data)["id"], token


def graphql(token, query, variables=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    _, data = request("POST", "/graphql", json.dumps({"query": query, "variables": variables or {}}), headers)
    return json.loads(data)


def ws_connect(payload):
    ws = WebSocket(HOST, PORT, "/graphql", "graphql-transport-ws")
    ws.sock.settimeout(15)
    ws.send({"type": "connection_init", "payload": payload})
    ack = ws.recv()
    if ack.get("type") != "connection_ack":
        raise ConnectionError(f"no connection_ack: {ack}")
    return ws


def ws_request(ws, op_id, query, variables=None):
    """One operation over the WebSocket: its first `next` or `error` message (what is left of
    earlier operations, such as their `complete`, is passed over)."""
    ws.send({"id": op_id, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}})
    while True:
        m = ws.recv()
        if m.get("id") == op_id and m.get("type") in ("next", "error", "complete"):
            return m


PROGRESS = "subscription($id: ID!) { videoProgress(videoId: $id) { stage } }"


def forged_identity_over_websocket(victim, victim_token, video_id):
    if not MESH:
        print("note  FLICK_MESH_SECRET unknown here: the forged-identity checks use a wrong secret", flush=True)
    rename = "mutation($id: ID!) { updateVideo(id: $id, input: { title: \"taken over\" }) { id title } }"
    for label, payload in [
        ("nested headers", {"headers": {"x-user-id": victim, "x-user-role": "admin", "x-flick-mesh": MESH}}),
        ("top-level fields", {"X-User-Id": victim, "X-Flick-Mesh": MESH}),
    ]:
        try:
            ws = ws_connect(payload)
            me = ws_request(ws, "1", "{ me { id } }")
            if me.get("type") == "next" and me["payload"].get("data", {}).get("me") is None:
                ok(f"WebSocket with a forged x-user-id and the mesh secret ({label}): me is null")
            else:
                fail(f"WebSocket forged identity ({label}) answered me: {me}")
            m = ws_request(ws, "2", rename, {"id": video_id})
            data = (m.get("payload") or {}).get("data") if m.get("type") == "next" else None
            if data and data.get("updateVideo"):
                fail(f"WebSocket forged identity ({label}) renamed the victim's video: {m}")
            else:
                ok(f"WebSocket forged identity ({label}): updateVideo refused")
            m = ws_request(ws, "3", PROGRESS, {"id": video_id})
            if m.get("type") == "error" or (m.get("type") == "next" and m["payload"].get("errors")):
                ok(f"WebSocket forged identity ({label}): the owner's videoProgress refused")
            else:
                fail(f"WebSocket forged identity ({label}) got the owner's videoProgress: {m}")
            ws.sock.close()
        except (ConnectionError, OSError) as e:
            fail(f"WebSocket forged identity ({label}): {e}")
    title = graphql(victim_token, "query($id: ID!) { video(id: $id) { title } }", {"id": video_id})
    if title.get("data", {}).get("video", {}).get("title") != "taken over":
        ok("the victim's video kept its title")
    else:
        fail(f"the victim's video was renamed: {title}")


def token_identity_over_websocket(me_id, token):
    try:
        ws = ws_connect({"headers": {"authorization": f"Bearer {token}"}})
        me = ws_request(ws, "1", "{ me { id } }")
        got = ((me.get("payload") or {}).get("data") or {}).get("me") or {}
        if got.get("id") == me_id:
            ok("WebSocket with a token: queries act as its user")
        else:
            fail(f"WebSocket with a token answered me: {me}")
        ws.sock.close()
    except (ConnectionError, OSError) as e:
        fail(f"WebSocket with a token: {e}")


def logout(token):
    status, _ = request("POST", "/auth/logout", headers={"authorization": f"Bearer {token}"})
    return status


def logout_ends_websocket_subscription():
    owner, token = user()
    video_id = create_video(token)
    try:
        ws = ws_connect({"headers": {"authorization": f"Bearer {token}"}})
        first = ws_request(ws, "1", PROGRESS, {"id": video_id})
        if first.get("type") != "next":
            fail(f"videoProgress over a WebSocket: {first}")
            return
        # Still open before the logout: a query's answer arrives with no end of "1" before it.
        alive = ws_request(ws, "2", "{ me { id } }")
        if alive.get("id") != "2" or (((alive.get("payload") or {}).get("data") or {}).get("me") or {}).get("id") != owner:
            fail(f"the subscription's connection was not alive before the logout: {alive}")
            return
        while alive.get("type") != "complete" or alive.get("id") != "2":
            alive = ws.recv()
            if alive.get("id") == "1":
                fail(f"the subscription ended before the logout: {alive}")
                return
        started = time.monotonic()
        status = logout(token)
        ws.sock.settimeout(15)
        try:
            m = ws.recv()
            # The router reports the subgraph ending the stream as an error of the operation.
            ended = m.get("type") in ("error", "complete") or bool((m.get("payload") or {}).get("errors"))
        except (ConnectionError, OSError) as e:
            m, ended = str(e), "timed out" not in str(e)
        took = time.monotonic() - started
        if status == 204 and ended:
            ok(f"logout ended the WebSocket subscription its token opened ({took:.2f} s)")
        else:
            fail(f"after logout (HTTP {status}) the WebSocket subscription went on: {m}")
    except (ConnectionError, OSError) as e:
        fail(f"videoProgress over a WebSocket: {e}")


def logout_ends_sse_subscription():
    owner, token = user()
    video_id = create_video(token)
    conn = http.client.HTTPConnection(HOST, PORT, timeout=15)
    body = json.dumps({"query": PROGRESS, "variables": {"id": video_id}})
    headers = {"content-type": "application/json", "accept": "text/event-stream", "authorization": f"Bearer {token}"}
    conn.request("POST", "/graphql", body=body, headers=headers)
    res = conn.getresponse()
    if res.status != 200:
        fail(f"videoProgress over SSE: HTTP {res.status} {res.read()[:200]}")
        return
    first = res.fp.readline()
    while first and not first.startswith(b"data:"):
        first = res.fp.readline()
    if b"awaiting_upload" not in first:
        fail(f"videoProgress over SSE, first event: {first[:200]}")
        return
    started = time.monotonic()
    status = logout(token)
    rest = b""
    try:
        while True:
            line = res.fp.readline()
            if not line:
                break
            rest += line
            if line.startswith(b"event: complete") or b'"errors"' in line:
                break
        ended = True
    except OSError:
        ended = False
    took = time.monotonic() - started
    conn.close()
    if status == 204 and ended:
        ok(f"logout ended the SSE subscription its token opened ({took:.2f} s)")
    else:
        fail(f"after logout (HTTP {status}) the SSE subscription went on: {rest[-200:]}")


def create_video(token):
    created = graphql(
        token,
        "mutation($i: CreateVideoInput!) { createVideo(input: $i) { video { id } } }",
        {"i": {"title": "security check", "visibility": "PUBLIC"}},
    )
    return created["data"]["createVideo"]["video"]["id"]


def main():
    victim, victim_token = user()
    video_id = create_video(victim_token)
    forged_identity_over_websocket(victim, victim_token, video_id)
    token_identity_over_websocket(victim, victim_token)
    logout_ends_websocket_subscription()
    logout_ends_sse_subscription()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
