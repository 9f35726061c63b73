// One live session with one camera: signaling over the viewer WebSocket
// (see proto/doc.go), a recvonly RTCPeerConnection, and a status read from
// getStats every second.

const V = 1;

// What a person should read for each wire error code, and what to try.
export const advice = {
  device_offline: ['The recorder is offline', 'Check that it has power and internet. It reconnects by itself within a minute.'],
  camera_unreachable: ['The recorder cannot reach this camera', 'Check that the camera is powered and connected to the recorder, and its RTSP address and password in the agent config.'],
  codec_unsupported: ['This browser cannot play the camera’s video', 'Try the sub stream, or set the camera to H.264 without B-frames.'],
  unauthorized: ['Session refused', 'Sign in again, or ask the owner for a new link.'],
  forbidden: ['Session refused', 'Your access does not include this camera.'],
  not_found: ['Camera not found', 'It may have been removed from the recorder.'],
  rate_limited: ['Please wait a moment', 'Too many viewers or attempts right now. Try again in a minute.'],
  timeout: ['The recorder did not answer', 'It may be busy or on a slow link. Try again.'],
  connection_failed: ['Could not connect to the recorder', 'The networks on both ends block a direct connection. Try Wi-Fi instead of mobile data, or the other way round; the server operator can add a TURN relay for such networks.'],
  ended: ['The session ended', 'Tap retry to watch again.'],
  revoked: ['This share was revoked', 'The owner ended your access to this camera. Ask them for a new link.'],
  expired: ['This share has expired', 'Ask the owner for a new link.'],
  viewer_cap: ['Too many people are watching this link', 'The owner allowed only a few viewers at a time. Try again later.'],
  network: ['Lost the connection to the server', 'Check your internet connection and retry.'],
};

function wsURL(path) {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}${path}`;
}

export class LiveSession {
  // opts: {device, camera, stream, token, video, onStatus(text, path), onError(code, message), onPlaying()}
  constructor(opts) {
    this.o = opts;
    this.pending = [];
    this.closed = false;
    this.stats = { firstFrameMs: null, started: performance.now(), framesDecoded: 0, width: 0, height: 0, path: '', rtt: null, kbps: 0 };
  }

  start() {
    this.status('Connecting…');
    this.openWS('').then((m) => this.negotiate(m), (m) => {
      if (m && m.code === 'device_offline') return this.recorderGone();
      this.fail(m.code || 'network', m.message);
    });
    this.watchFirstFrame();
    this.onOnline = () => { if (this.connected && !this.broken) this.breakPath(); };
    window.addEventListener('online', this.onOnline);
  }

  // openWS opens a signaling WebSocket and resolves with the session
  // message; it then becomes this.ws and the old one is closed. With resume
  // set, the rendezvous moves that session to the new socket (after a
  // network change the old one may be bound to an address that is gone).
  openWS(resume) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(wsURL('/ws/viewer'));
      const open = { type: 'open', device: this.o.device, camera: this.o.camera, stream: this.o.stream || 'main',
        ...(this.o.token ? { token: this.o.token } : {}), ...(resume ? { resume } : {}) };
      ws.onopen = () => ws.send(JSON.stringify({ v: V, ...open }));
      ws.onmessage = (ev) => {
        const m = JSON.parse(ev.data);
        if (ws === this.ws) return this.onMessage(m);
        if (m.type === 'session') {
          const old = this.ws;
          this.ws = ws;
          if (old) old.close();
          resolve(m);
        } else if (m.type === 'error') {
          ws.close();
          reject(m);
        }
      };
      ws.onclose = () => {
        if (ws !== this.ws) return reject({ code: 'network' });
        // Only an early close is an error. Once media flows peer to peer it
        // does not need the socket, but the session should stay reachable
        // (a revocation, the recorder's word on its camera): reopen it.
        if (!this.closed && !this.connected) this.fail('network');
        else if (!this.closed && !this.broken && !this.waitingRecorder) this.reconnectSignaling();
      };
    });
  }

  // breakPath starts ICE restarts: the path broke (the address changed, the
  // link dropped). Every 4 s until it is back, for up to a minute, the
  // session moves to a new WebSocket and offers with new ICE credentials;
  // the agent keeps sending to the same tracks.
  breakPath() {
    if (this.broken || this.closed) return;
    this.broken = true;
    this.restarts = 0;
    this.status('Reconnecting…');
    const t0 = performance.now();
    const tick = async () => {
      if (!this.broken || this.closed) return;
      if (performance.now() - t0 > 60000) return this.fail('connection_failed');
      try {
        await this.openWS(this.session);
        const offer = await this.pc.createOffer({ iceRestart: true });
        await this.pc.setLocalDescription(offer);
        this.pending = [];
        this.restarts++;
        this.send({ type: 'offer', session: this.session, sdp: offer.sdp });
      } catch (m) {
        // The session is gone with the agent (it restarted): open a new one
        // once the recorder is back.
        if (m && (m.code === 'not_found' || m.code === 'device_offline')) return this.recorderGone();
        if (m && ['revoked', 'expired', 'unauthorized', 'forbidden'].includes(m.code)) return this.fail(m.code, m.message);
      }
      this.restartTimer = setTimeout(tick, 4000);
    };
    tick();
  }

  // reconnectSignaling moves the live session to a new socket after the old
  // one closed (the rendezvous restarted): the picture goes on peer to peer
  // meanwhile, and the rendezvous takes the session back on record.
  reconnectSignaling() {
    if (this.reconnecting) return;
    this.reconnecting = true;
    const t0 = performance.now();
    const tick = async () => {
      if (this.closed || this.broken || this.waitingRecorder) { this.reconnecting = false; return; }
      try {
        await this.openWS(this.session);
        this.reconnecting = false;
        this.stats.signalingReconnects = (this.stats.signalingReconnects || 0) + 1;
        return;
      } catch (m) {
        // device_offline: the server is back before the agent; try again.
        if (m && m.code === 'not_found') { this.reconnecting = false; return this.recorderGone(); }
        if (m && ['revoked', 'expired', 'unauthorized', 'forbidden'].includes(m.code)) { this.reconnecting = false; return this.fail(m.code, m.message); }
      }
      if (performance.now() - t0 > 5 * 60000) { this.reconnecting = false; return; }
      this.signalTimer = setTimeout(tick, 2000);
    };
    this.signalTimer = setTimeout(tick, 500);
  }

  // recorderGone: the agent went offline (restarted, lost its link); its
  // sessions are gone. The page says so, and opens a new session as soon as
  // the recorder is back, without a reload.
  recorderGone() {
    if (this.closed || this.waitingRecorder) return;
    this.waitingRecorder = true;
    this.broken = false;
    this.cameraLost = null;
    clearTimeout(this.restartTimer);
    if (this.pc) { const pc = this.pc; this.pc = null; pc.close(); }
    if (this.ws) { const ws = this.ws; this.ws = null; ws.close(); }
    this.session = null;
    this.connected = false;
    this.pending = [];
    this.framesBase = this.stats.framesDecoded; // frames count on across sessions
    this.status('Recorder offline — reconnecting…');
    const t0 = performance.now();
    const tick = async () => {
      if (this.closed) return;
      let m;
      try {
        m = await this.openWS('');
      } catch (e) {
        if (e && ['revoked', 'expired', 'unauthorized', 'forbidden'].includes(e.code)) return this.fail(e.code, e.message);
        if (performance.now() - t0 > 10 * 60000) return this.fail('device_offline');
        this.recorderTimer = setTimeout(tick, 1000);
        return;
      }
      this.waitingRecorder = false;
      this.stats.recoveries = (this.stats.recoveries || 0) + 1;
      this.status('Connecting…');
      await this.negotiate(m);
    };
    this.recorderTimer = setTimeout(tick, 1000);
  }

  send(m) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ v: V, ...m }));
  }

  status(text, path, note) {
    if (this.o.onStatus) this.o.onStatus(text, path, note);
  }

  fail(code, message) {
    if (this.closed) return;
    const [title, hint] = advice[code] || ['Something went wrong', ''];
    this.stop(false);
    if (this.o.onError) this.o.onError(code, title, message && code !== 'connection_failed' ? message : hint);
  }

  async onMessage(m) {
    try {
      switch (m.type) {
        case 'session': return await this.negotiate(m);
        case 'answer': {
          if (this.pc.signalingState !== 'have-local-offer') return; // an answer to an offer superseded by a restart
          await this.pc.setRemoteDescription({ type: 'answer', sdp: m.sdp });
          // Which stream the agent chose for this browser, and why.
          if (m.served) this.stats.served = m.served;
          for (const c of this.pending) await this.pc.addIceCandidate(c);
          this.pending = [];
          return;
        }
        case 'candidate': {
          const c = m.candidate ? { candidate: m.candidate, sdpMid: m.sdp_mid, sdpMLineIndex: m.sdp_mline_index } : null;
          if (!c) return;
          if (this.pc && this.pc.remoteDescription) await this.pc.addIceCandidate(c);
          else this.pending.push(c);
          return;
        }
        case 'status':
          // The camera went quiet (the agent reconnects to it) or is back;
          // the session stays up either way.
          this.cameraLost = m.state === 'camera_lost' ? (m.message || 'Camera not responding — reconnecting…') : null;
          this.stats.cameraLost = !!this.cameraLost;
          if (this.cameraLost) this.status(this.cameraLost);
          return;
        case 'bye':
          if (m.reason === 'agent shutting down') return this.recorderGone();
          return this.fail(advice[m.reason] ? m.reason : 'ended', m.reason);
        case 'error':
          if (m.code === 'device_offline') return this.recorderGone();
          return this.fail(m.code, m.message);
      }
    } catch (e) {
      this.fail('internal', String(e));
    }
  }

  async negotiate(m) {
    this.session = m.session;
    const pc = new RTCPeerConnection({ iceServers: m.ice_servers || [] });
    this.pc = pc;
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.ontrack = (ev) => {
      const v = this.o.video;
      if (!v.srcObject) v.srcObject = new MediaStream();
      // A new session after the recorder came back: its track replaces the
      // ended one of the same kind.
      v.srcObject.getTracks().filter((t) => t.kind === ev.track.kind).forEach((t) => v.srcObject.removeTrack(t));
      v.srcObject.addTrack(ev.track);
      v.play().catch(() => {});
    };
    pc.onicecandidate = (ev) => {
      const c = ev.candidate;
      this.send(c ? { type: 'candidate', session: this.session, candidate: c.candidate, sdp_mid: c.sdpMid, sdp_mline_index: c.sdpMLineIndex }
        : { type: 'candidate', session: this.session, candidate: '' });
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected') {
        const first = !this.connected;
        this.connected = true;
        if (this.broken) {
          this.broken = false;
          clearTimeout(this.restartTimer);
          this.stats.recoveries = (this.stats.recoveries || 0) + 1;
        }
        this.status('Connected');
        if (first) this.pollStats();
      } else if (pc.connectionState === 'failed' && !this.connected) {
        this.fail('connection_failed');
      }
    };
    pc.oniceconnectionstatechange = () => {
      // Once connected, a broken path is worth an ICE restart, not an error.
      if (this.connected && (pc.iceConnectionState === 'disconnected' || pc.iceConnectionState === 'failed')) this.breakPath();
    };
    await pc.setLocalDescription(await pc.createOffer());
    this.send({ type: 'offer', session: this.session, sdp: pc.localDescription.sdp });
  }

  watchFirstFrame() {
    const v = this.o.video;
    const mark = () => {
      if (this.stats.firstFrameMs === null) {
        this.stats.firstFrameMs = performance.now() - this.stats.started;
        if (this.o.onPlaying) this.o.onPlaying();
      }
    };
    if ('requestVideoFrameCallback' in v) v.requestVideoFrameCallback(mark);
    else v.addEventListener('playing', mark, { once: true });
  }

  async pollStats() {
    let lastBytes = 0, lastTime = 0, lastJB = 0, lastJBCount = 0;
    const pc = this.pc; // a new session (recorder back) polls on its own
    while (!this.closed && this.pc === pc) {
      const report = await pc.getStats();
      let pair = null;
      const byId = new Map();
      report.forEach((s) => byId.set(s.id, s));
      report.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') {
          const now = s.timestamp;
          if (lastTime) this.stats.kbps = Math.round(((s.bytesReceived - lastBytes) * 8) / (now - lastTime));
          lastBytes = s.bytesReceived; lastTime = now;
          this.stats.framesDecoded = (this.framesBase || 0) + (s.framesDecoded || 0);
          this.stats.framesDropped = s.framesDropped || 0;
          this.stats.pliCount = s.pliCount || 0;
          this.stats.width = s.frameWidth || 0;
          this.stats.height = s.frameHeight || 0;
          // How long frames waited in the jitter buffer over the last
          // poll: how far behind live the picture plays, the network aside.
          if (s.jitterBufferEmittedCount > lastJBCount) {
            this.stats.playoutDelayMs = Math.round(1000 * (s.jitterBufferDelay - lastJB) / (s.jitterBufferEmittedCount - lastJBCount));
          }
          lastJB = s.jitterBufferDelay || 0; lastJBCount = s.jitterBufferEmittedCount || 0;
        }
        if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
      });
      if (!pair) report.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
      if (pair) {
        const l = byId.get(pair.localCandidateId), r = byId.get(pair.remoteCandidateId);
        const relayed = (l && l.candidateType === 'relay') || (r && r.candidateType === 'relay');
        this.stats.path = relayed ? 'relayed' : 'direct';
        this.stats.pair = `${l ? l.candidateType : '?'}/${r ? r.candidateType : '?'}`;
        this.stats.rtt = pair.currentRoundTripTime != null ? Math.round(pair.currentRoundTripTime * 1000) : null;
      }
      const parts = [this.stats.path === 'relayed' ? 'Relayed' : 'Direct'];
      const sv = this.stats.served;
      if (sv && sv.stream === 'sub' && this.o.stream !== 'sub') parts.push('Sub stream');
      else if (sv && sv.codec === 'H265') parts.push('H.265');
      if (this.stats.width) parts.push(`${this.stats.width}×${this.stats.height}`);
      parts.push(`${this.stats.kbps} kbit/s`);
      if (this.stats.rtt !== null) parts.push(`RTT ${this.stats.rtt} ms`);
      if (this.broken) this.status('Reconnecting…');
      else if (this.cameraLost) this.status(this.cameraLost);
      else this.status(parts.join(' · '), this.stats.path, sv ? [sv.note, sv.audio].filter(Boolean).join(' ') : '');
      await new Promise((res) => setTimeout(res, 1000));
    }
  }

  stop(sayBye = true) {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.restartTimer);
    clearTimeout(this.recorderTimer);
    clearTimeout(this.signalTimer);
    window.removeEventListener('online', this.onOnline);
    if (sayBye && this.session) this.send({ type: 'bye', session: this.session, reason: 'viewer closed' });
    if (this.pc) this.pc.close();
    if (this.ws) this.ws.close();
    const v = this.o.video;
    if (v && v.srcObject) { v.srcObject.getTracks().forEach((t) => t.stop()); }
  }
}
