#!/usr/bin/env bash
# make demo: a simulated 4-channel NVR, a rendezvous and a device agent on this
# machine, with a demo owner who has claimed the agent. Each program is kept
# running: one that stops is named and started again after 2 s, so a fault in
# one (try the simulator's fault control) leaves the others up. Ctrl-C stops
# all three.
set -euo pipefail
cd "$(dirname "$0")/.."

HOST="${PEERCAM_DEMO_HOST:-127.0.0.1}"   # 0.0.0.0 to watch from a phone on the LAN
HTTP_PORT="${PEERCAM_DEMO_HTTP_PORT:-8080}"
RTSP_PORT="${PEERCAM_DEMO_RTSP_PORT:-8554}"
USER_NAME=demo
PASSWORD=peercam-demo
DATA=demo-data
mkdir -p "$DATA"
PUBLIC_HOST="$HOST"
if [ "$HOST" = "0.0.0.0" ]; then
  PUBLIC_HOST="$(hostname -I 2>/dev/null | awk '{print $1}')"
  PUBLIC_HOST="${PUBLIC_HOST:-127.0.0.1}"
fi
URL="http://$PUBLIC_HOST:$HTTP_PORT"
# The agent runs on this machine: it reaches the rendezvous over loopback,
# where plain http is allowed (anywhere else it wants https).
AGENT_HOST="$HOST"
if [ "$HOST" = "0.0.0.0" ]; then AGENT_HOST=127.0.0.1; fi
AGENT_URL="http://$AGENT_HOST:$HTTP_PORT"
INSECURE=""
case "$AGENT_HOST" in
  127.*|localhost) ;;
  *) INSECURE="insecure_rendezvous: true   # a LAN demo over plain http; use https for real" ;;
esac

CONTROL_PORT="${PEERCAM_DEMO_CONTROL_PORT:-8099}"
pids=()
stopping=""
stop() {
  trap - INT TERM EXIT
  stopping=1
  echo
  echo "stopping…"
  for p in "${pids[@]}"; do pkill -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

# keep NAME LOG CMD...: run CMD, and whenever it exits say so and start it
# again after 2 s.
keep() {
  local name=$1 log=$2
  shift 2
  (
    trap 'kill $child 2>/dev/null; exit 0' TERM INT
    while true; do
      "$@" 2>>"$log" &
      child=$!
      wait $child
      code=$?
      echo "  $name stopped (exit $code); restarting it in 2 s — its log: $log" >&2
      sleep 2
    done
  ) &
  pids+=($!)
}

: >"$DATA/firmware-sim.log"
keep firmware-sim "$DATA/firmware-sim.log" ./bin/firmware-sim -listen "127.0.0.1:$RTSP_PORT" -channels 4 \
  -control "127.0.0.1:$CONTROL_PORT"

./bin/rendezvous user add "$USER_NAME" -data "$DATA/rendezvous" -password "$PASSWORD" >/dev/null 2>&1 || true
: >"$DATA/rendezvous.log"
keep rendezvous "$DATA/rendezvous.log" ./bin/rendezvous -data "$DATA/rendezvous" -http "$HOST:$HTTP_PORT" -stun "$HOST:3478" \
  -public-url "$URL" -stun-url "stun:$PUBLIC_HOST:3478"
for _ in $(seq 1 50); do
  (exec 3<>"/dev/tcp/$PUBLIC_HOST/$HTTP_PORT") 2>/dev/null && break
  sleep 0.1
done

cat >"$DATA/agent.yaml" <<YAML
rendezvous: $AGENT_URL
$INSECURE
state_dir: $DATA/agent-state
webrtc_listen: $HOST:8189
nvr:
  url: rtsp://admin:admin@127.0.0.1:$RTSP_PORT/Streaming/Channels/{channel}01
  sub_url: rtsp://admin:admin@127.0.0.1:$RTSP_PORT/Streaming/Channels/{channel}02
  channels: 4
  always_on: true
YAML
ID="$(./bin/device-agent -config "$DATA/agent.yaml" -print-id)"
: >"$DATA/device-agent.log"
keep device-agent "$DATA/device-agent.log" ./bin/device-agent -config "$DATA/agent.yaml"

# Claim the agent for the demo owner once it has registered.
for _ in $(seq 1 50); do
  if ./bin/rendezvous device claim -data "$DATA/rendezvous" -user "$USER_NAME" -name "Demo NVR" "$ID" >/dev/null 2>&1; then break; fi
  if ./bin/rendezvous device list -data "$DATA/rendezvous" 2>/dev/null | grep -q "$ID.*$USER_NAME"; then break; fi
  sleep 0.2
done

cat <<MSG

  PeerCam demo is running.

    open      $URL
    user      $USER_NAME
    password  $PASSWORD

  Logs are in $DATA/. Ctrl-C stops everything; a program that stops is
  started again after 2 s.
  (PEERCAM_DEMO_HOST=0.0.0.0 make demo serves phones on your LAN.)

  Make the simulated cameras misbehave while you watch:
    curl -X POST 'http://127.0.0.1:$CONTROL_PORT/stall?channel=1&seconds=5'   # channel 1 hangs
    curl -X POST 'http://127.0.0.1:$CONTROL_PORT/restart?seconds=8'           # the recorder reboots

MSG
wait
