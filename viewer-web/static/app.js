// PeerCam viewer: login, devices, claim, camera grid, live view.
// Routes live in the fragment (#/d/DEVICE, #/d/DEVICE/c/CAMERA) so the server
// only ever serves this one page.
import { LiveSession, advice } from './live.js';

const $view = document.getElementById('view');
const $title = document.getElementById('title');
const $back = document.getElementById('back');
const $logout = document.getElementById('logout');
let sessions = []; // live sessions of the current view
let me = null;

// Tests and curious people can read what the current live view sees.
window.peercam = { sessions: () => sessions.map((s) => ({ camera: s.o.camera, stream: s.o.stream, ...s.stats })) };

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (v === true) el.setAttribute(k, '');
    else if (v !== false && v != null) el.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c != null) el.append(c.nodeType ? c : document.createTextNode(String(c)));
  return el;
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { 'Content-Type': 'application/json', 'X-PeerCam-CSRF': '1' },
    body: body ? JSON.stringify(body) : undefined,
    credentials: 'same-origin',
  });
  let data = null;
  try { data = await res.json(); } catch { /* empty body */ }
  if (!res.ok) {
    const err = new Error((data && data.message) || `HTTP ${res.status}`);
    err.status = res.status;
    err.code = data && data.error;
    const retry = res.headers.get('Retry-After');
    if (retry) err.message += ` (retry in ${retry} s)`;
    throw err;
  }
  return data;
}

function stopSessions() {
  sessions.forEach((s) => s.stop());
  sessions = [];
}

function setChrome(title, backTo) {
  $title.textContent = title;
  $back.hidden = !backTo;
  $back.onclick = () => { location.hash = backTo; };
  $logout.hidden = !me;
  document.title = title === 'PeerCam' ? 'PeerCam' : `${title} · PeerCam`;
}

function params() {
  return new URLSearchParams(location.hash.slice(1).replace(/^\/?/, ''));
}

// routeGen counts route changes; a view's late answer checks it so it never
// renders into the page that replaced it.
let routeGen = 0;

async function route() {
  const gen = ++routeGen;
  stopSessions();
  $view.replaceChildren();
  const hash = location.hash;
  if (location.pathname.startsWith('/s/')) return viewGuest();
  const p = params();
  if (p.has('setup')) return viewSetup(p.get('setup'));
  try {
    me = await api('GET', '/api/me');
  } catch {
    me = null;
  }
  if (gen !== routeGen) return; // another route started meanwhile: it renders
  if (!me) return viewLogin(p.get('claim'));
  let m;
  if ((m = hash.match(/^#\/d\/([^/]+)\/c\/([^/]+)$/))) return viewLive(decodeURIComponent(m[1]), decodeURIComponent(m[2]));
  if ((m = hash.match(/^#\/d\/([^/]+)$/))) return viewDevice(decodeURIComponent(m[1]));
  if ((m = hash.match(/^#\/d\/([^/]+)\/share$/))) return viewNewShare(decodeURIComponent(m[1]));
  if (hash === '#/shares') return viewShares();
  if (hash === '#/audit') return viewAudit();
  return viewDevices(p.get('claim'));
}

function errorBox(msg) {
  return h('p', { class: 'notice', role: 'alert' }, msg);
}

function viewLogin(claim) {
  setChrome('PeerCam');
  const err = h('div');
  const form = h('form', { class: 'card narrow', onsubmit: async (ev) => {
    ev.preventDefault();
    const btn = form.querySelector('button');
    btn.disabled = true;
    err.replaceChildren();
    try {
      await api('POST', '/api/login', { name: form.name.value, password: form.password.value });
      go(claim ? `#claim=${encodeURIComponent(claim)}` : '#/');
    } catch (e) {
      err.append(errorBox(e.message));
      btn.disabled = false;
    }
  } },
  h('h2', {}, 'Sign in'),
  claim ? h('p', { class: 'notice info' }, 'Sign in to add the device with code ', h('b', {}, claim), '.') : null,
  h('label', {}, 'User name', h('input', { name: 'name', autocomplete: 'username', required: true, autocapitalize: 'off' })),
  h('label', {}, 'Password', h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
  err,
  h('button', { class: 'primary', type: 'submit' }, 'Sign in'));
  $view.append(form);
}

function viewSetup(token) {
  setChrome('Create the owner account');
  const err = h('div');
  const form = h('form', { class: 'card narrow', onsubmit: async (ev) => {
    ev.preventDefault();
    err.replaceChildren();
    try {
      await api('POST', '/api/setup', { token, name: form.name.value, password: form.password.value });
      go('#/');
    } catch (e) {
      err.append(errorBox(e.message));
    }
  } },
  h('h2', {}, 'Welcome to PeerCam'),
  h('p', { class: 'muted' }, 'This one-time link creates the first owner of this server.'),
  h('label', {}, 'User name', h('input', { name: 'name', autocomplete: 'username', required: true, autocapitalize: 'off' })),
  h('label', {}, 'Password (8 characters or more)', h('input', { name: 'password', type: 'password', autocomplete: 'new-password', minlength: 8, required: true })),
  err,
  h('button', { class: 'primary', type: 'submit' }, 'Create account'));
  $view.append(form);
}

function ago(iso) {
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 90) return 'just now';
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

async function viewDevices(claim) {
  setChrome('Your devices');
  const gen = routeGen;
  let devices;
  try {
    devices = await api('GET', '/api/devices');
  } catch (e) {
    if (gen === routeGen) $view.append(errorBox(`Could not load your devices: ${e.message}`));
    return;
  }
  if (gen !== routeGen) return; // the person has moved on
  const list = h('div', { class: 'devices' });
  if (devices.length === 0) list.append(h('p', { class: 'notice info' }, 'No devices yet. Start the PeerCam agent on your recorder; it prints a claim code to enter below.'));
  for (const d of devices) {
    list.append(h('a', { class: 'card device', href: `#/d/${encodeURIComponent(d.id)}` },
      h('span', { class: d.online ? 'dot on' : 'dot', title: d.online ? 'online' : 'offline' }),
      h('span', {}, h('div', { class: 'name' }, d.name),
        h('div', { class: 'muted' }, `${d.cameras.length} camera${d.cameras.length === 1 ? '' : 's'} · `,
          d.online ? 'online' : `offline, last seen ${ago(d.last_seen)}`))));
  }
  const err = h('div');
  const form = h('form', { class: 'card', onsubmit: async (ev) => {
    ev.preventDefault();
    err.replaceChildren();
    try {
      const d = await api('POST', '/api/devices/claim', { code: form.code.value, name: form.dname.value });
      location.hash = `#/d/${encodeURIComponent(d.id)}`;
    } catch (e) {
      err.append(errorBox(e.message));
    }
  } },
  h('label', {}, 'Claim code shown by the agent', h('input', { name: 'code', required: true, autocapitalize: 'characters', autocomplete: 'off', placeholder: 'ABCD-EFGH-JKLM', value: claim || '' })),
  h('label', {}, 'Name (optional)', h('input', { name: 'dname', placeholder: 'Shop NVR' })),
  err,
  h('button', { class: 'primary', type: 'submit' }, 'Add device'));
  $view.append(list, h('p', { class: 'links' }, h('a', { class: 'button', href: '#/shares' }, 'Shares you have given…'),
    h('a', { class: 'button', href: '#/audit' }, 'Activity log…'),
    h('button', { class: 'button', type: 'button', onclick: signOutEverywhere }, 'Sign out everywhere')),
    h('h2', { class: 'section' }, 'Add a device'), form);
}

// signOutEverywhere ends every sign-in of this account, on every browser
// and script, this one included.
async function signOutEverywhere() {
  if (!confirm('Sign out on every phone, browser and script signed in to this account?')) return;
  try {
    const r = await api('POST', '/api/logout-all');
    me = null;
    go('#/');
    $view.prepend(h('p', { class: 'notice info' }, `Signed out everywhere (${r.sessions_ended} session${r.sessions_ended === 1 ? '' : 's'} ended).`));
  } catch (e) {
    $view.prepend(errorBox(`Could not sign out everywhere: ${e.message}`));
  }
}

async function viewDevice(id) {
  const gen = routeGen;
  let devices;
  try {
    devices = await api('GET', '/api/devices');
  } catch (e) {
    if (gen === routeGen) $view.append(errorBox(e.message));
    return;
  }
  if (gen !== routeGen) return;
  const d = devices.find((x) => x.id === id);
  if (!d) {
    setChrome('Not found', '#/');
    $view.append(errorBox('This device is not on your account.'));
    return;
  }
  setChrome(d.name, '#/');
  if (!d.online) {
    const [t, hint] = advice.device_offline;
    $view.append(h('div', { class: 'notice', role: 'alert' }, h('b', {}, t), h('br'), hint, h('br'), h('span', { class: 'muted' }, `Last seen ${ago(d.last_seen)}.`)));
    return;
  }
  $view.append(cameraGrid(id, d.cameras, null, (c) => `#/d/${encodeURIComponent(id)}/c/${encodeURIComponent(c.id)}`),
    h('p', {}, h('a', { class: 'button', href: `#/d/${encodeURIComponent(id)}/share` }, 'Share cameras with a guest…')));
}

const presets = [['1 hour', 3600], ['8 hours', 28800], ['1 day', 86400], ['7 days', 604800]];

async function viewNewShare(id) {
  setChrome('Share with a guest', `#/d/${encodeURIComponent(id)}`);
  const gen = routeGen;
  let d;
  try {
    d = (await api('GET', '/api/devices')).find((x) => x.id === id);
  } catch (e) {
    if (gen === routeGen) $view.append(errorBox(e.message));
    return;
  }
  if (gen !== routeGen) return;
  if (!d) { $view.append(errorBox('This device is not on your account.')); return; }
  const err = h('div');
  const result = h('div');
  const until = h('input', { name: 'until', type: 'datetime-local' });
  const form = h('form', { class: 'card', onsubmit: async (ev) => {
    ev.preventDefault();
    err.replaceChildren();
    const cameras = [...form.querySelectorAll('input[name=cam]:checked')].map((x) => x.value);
    const body = { device: id, cameras, perms: ['live'], max_viewers: Number(form.max.value) || 0, label: form.label.value };
    if (form.expiry.value === 'date') {
      if (!until.value) { err.append(errorBox('Choose the date and time the link stops working.')); return; }
      body.expires = new Date(until.value).toISOString();
    } else body.ttl_seconds = Number(form.expiry.value);
    try {
      const sh = await api('POST', '/api/shares', body);
      const link = h('input', { readonly: true, value: sh.link, 'aria-label': 'Share link' });
      result.replaceChildren(h('div', { class: 'card' },
        h('p', {}, 'Send this link to your guest. It works until ', h('b', {}, new Date(sh.expires).toLocaleString()), '; you can revoke it any time under ', h('a', { href: '#/shares' }, 'Shares'), '.'),
        link,
        h('p', {}, h('button', { type: 'button', onclick: () => { link.select(); (navigator.clipboard ? navigator.clipboard.writeText(sh.link) : Promise.reject()).catch(() => document.execCommand('copy')); } }, 'Copy link'))));
    } catch (e) {
      err.append(errorBox(e.message));
    }
  } },
  h('fieldset', { class: 'plain' }, h('legend', {}, 'Cameras'),
    d.cameras.map((c, i) => h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'cam', value: c.id, checked: i === 0 }), c.name))),
  h('label', {}, 'Link works for', h('select', { name: 'expiry', onchange: () => { until.parentElement.hidden = form.expiry.value !== 'date'; } },
    presets.map(([t, v]) => h('option', { value: v, selected: v === 28800 }, t)), h('option', { value: 'date' }, 'until a date…'))),
  h('label', { hidden: true }, 'Until', until),
  h('label', {}, 'Viewers at the same time (0 = no limit)', h('input', { name: 'max', type: 'number', min: 0, max: 100, value: 1 })),
  h('label', {}, 'Label, for you (optional)', h('input', { name: 'label', placeholder: 'plumber', maxlength: 80 })),
  h('p', { class: 'muted' }, 'Guests can watch live video of these cameras only. Nothing else on the recorder is reachable.'),
  err,
  h('button', { class: 'primary', type: 'submit' }, 'Create link'));
  $view.append(form, result);
}

async function viewShares() {
  setChrome('Shares', '#/');
  const gen = routeGen;
  let shares, devices;
  try {
    [shares, devices] = await Promise.all([api('GET', '/api/shares'), api('GET', '/api/devices')]);
  } catch (e) {
    if (gen === routeGen) $view.append(errorBox(e.message));
    return;
  }
  if (gen !== routeGen) return;
  const devName = (id) => (devices.find((d) => d.id === id) || { name: id.slice(0, 6) }).name;
  if (shares.length === 0) {
    $view.append(h('p', { class: 'notice info' }, 'No shares yet. Open a device and tap “Share cameras with a guest”.'));
    return;
  }
  const list = h('div', { class: 'devices' });
  for (const sh of shares) {
    const state = sh.revoked ? 'revoked' : (sh.active ? `${sh.viewers_now} watching now` : 'expired');
    const row = h('div', { class: 'card share' },
      h('div', { class: 'name' }, sh.label || 'Guest link', ' ', h('span', { class: 'muted' }, `· ${devName(sh.device)} · camera ${sh.cameras.join(', ')}`)),
      h('div', { class: 'muted' }, `${state} · until ${new Date(sh.expires).toLocaleString()} · last used ${sh.last_used ? ago(sh.last_used) : 'never'}`),
      sh.active ? h('button', { onclick: async () => {
        try {
          await api('DELETE', `/api/shares/${encodeURIComponent(sh.id)}`);
          route();
        } catch (e) {
          row.append(errorBox(e.message));
        }
      } }, 'Revoke') : null);
    list.append(row);
  }
  $view.append(list);
}

// cameraGrid plays each camera's sub stream in a tile; a tap opens href(c).
function cameraGrid(deviceId, cameras, token, href) {
  const grid = h('div', { class: 'grid' });
  for (const c of cameras) {
    const video = h('video', { muted: true, playsinline: true, autoplay: true });
    video.muted = true;
    const state = h('span', { class: 'state' }, 'connecting…');
    const tile = h('button', { class: 'tile', 'aria-label': `Open ${c.name}`, onclick: () => { location.hash = href(c); } },
      video, h('span', { class: 'label' }, c.name), state);
    grid.append(tile);
    const s = new LiveSession({ device: deviceId, camera: c.id, stream: c.has_sub ? 'sub' : 'main', video, token,
      onStatus: () => { state.textContent = ''; },
      onPlaying: () => { state.textContent = ''; },
      onError: (code, title) => { state.textContent = title; state.className = 'state err'; } });
    sessions.push(s);
    s.start();
  }
  return grid;
}

// viewLive plays one camera's main stream full screen. opts.token is a guest
// token; opts.back is where the back button goes.
function viewLive(deviceId, cameraId, opts = {}) {
  const back = opts.back || `#/d/${encodeURIComponent(deviceId)}`;
  setChrome('Live', back);
  const video = h('video', { muted: true, playsinline: true, autoplay: true });
  video.muted = true;
  const status = h('span', { class: 'status', role: 'status' }, 'Connecting…');
  const overlay = h('div', { class: 'overlay' }, h('div', { class: 'spinner' }), 'Connecting to the recorder…');
  const unmute = h('button', { onclick: () => {
    video.muted = !video.muted;
    unmute.textContent = video.muted ? 'Unmute' : 'Mute';
    video.play().catch(() => {});
  } }, 'Unmute');
  const name = h('h2', {}, `Camera ${cameraId}`);
  const page = h('div', { class: 'live' },
    h('div', { class: 'top' }, opts.noBack ? null : h('button', { class: 'icon', 'aria-label': 'Back', onclick: () => { location.hash = back; } }, '←'), name),
    video, overlay,
    h('div', { class: 'bottom' }, status, unmute));
  $view.append(page);
  const gen = routeGen;
  if (opts.title) name.textContent = opts.title;
  else api('GET', '/api/devices').then((ds) => {
    if (gen !== routeGen) return;
    const d = ds.find((x) => x.id === deviceId);
    const c = d && d.cameras.find((x) => x.id === cameraId);
    if (c) { name.textContent = `${c.name} · ${d.name}`; document.title = `${c.name} · PeerCam`; }
  }).catch(() => {});
  const start = () => {
    const s = new LiveSession({ device: deviceId, camera: cameraId, stream: 'main', video, token: opts.token,
      onStatus: (text, path, note) => {
        status.replaceChildren(path ? h('span', { class: `path-${path}` }, '● ') : '', text,
          note ? h('div', { class: 'note' }, note.charAt(0).toUpperCase() + note.slice(1)) : '');
      },
      onPlaying: () => overlay.remove(),
      onError: (code, title, hint) => {
        overlay.className = 'overlay err';
        const final = code === 'revoked' || code === 'expired';
        // A final refusal has no Retry (replaceChildren would print a null).
        overlay.replaceChildren(h('h3', {}, title), h('p', {}, hint), ...(final ? [] : [
          h('button', { class: 'primary', onclick: () => { overlay.className = 'overlay'; overlay.replaceChildren(h('div', { class: 'spinner' }), 'Connecting to the recorder…'); sessions = []; start(); } }, 'Retry')]));
        if (!overlay.isConnected) page.append(overlay);
        status.textContent = title;
      } });
    sessions = [s];
    s.start();
  };
  start();
}

// tokenClaims reads a token's payload. The server and the agent verify the
// signature; the page only needs to know what to show.
function tokenClaims(token) {
  try {
    const b64 = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(b64));
  } catch {
    return null;
  }
}

// viewGuest is a share link, /s/#TOKEN: straight to the shared cameras, no
// account. The fragment never reaches the server's logs.
function viewGuest() {
  me = null;
  const [token, cam] = location.hash.slice(1).split('/c/');
  const c = token && tokenClaims(token);
  if (!c || !c.dev || !Array.isArray(c.cams)) {
    setChrome('Shared camera');
    $view.append(errorBox('This share link is incomplete. Copy the whole link from the message you received.'));
    return;
  }
  const until = new Date(c.exp * 1000);
  if (until < new Date()) {
    setChrome('Shared camera');
    const [t, hint] = advice.expired;
    $view.append(h('div', { class: 'notice', role: 'alert' }, h('b', {}, t), h('br'), hint));
    return;
  }
  const cameras = c.cams.map((id) => ({ id, name: `Camera ${id}`, has_sub: true }));
  const title = `Shared with you · until ${until.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' })}`;
  if (cam || cameras.length === 1) {
    const id = cam ? decodeURIComponent(cam) : cameras[0].id;
    return viewLive(c.dev, id, { token, title: `Camera ${id} · ${title}`, back: cameras.length > 1 ? `#${token}` : null, noBack: cameras.length === 1 });
  }
  setChrome('Shared cameras');
  $view.append(h('p', { class: 'muted' }, title), cameraGrid(c.dev, cameras, token, (x) => `#${token}/c/${encodeURIComponent(x.id)}`));
}

const auditWords = {
  login: 'Signed in', login_failed: 'Failed sign-in', logout: 'Signed out', logout_all: 'Signed out everywhere',
  password_changed: 'Password changed', claim: 'Device claimed', device_removed: 'Device removed',
  share_created: 'Share created', share_revoked: 'Share revoked', token_minted: 'Token minted', token_revoked: 'Token revoked',
  session_opened: 'Started watching', session_closed: 'Stopped watching', sessions_without_offer: 'Sessions that never started',
};

function duration(ms) {
  const s = Math.round(ms / 1000);
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

// viewAudit shows the activity log a page at a time: security events
// (sign-ins, claims, shares, tokens) apart from viewing sessions, so no
// amount of viewing hides a sign-in.
async function viewAudit() {
  setChrome('Activity log', '#/');
  const gen = routeGen;
  const tabs = h('p', { class: 'links' });
  const list = h('div', { class: 'devices' });
  const more = h('button', { class: 'button', type: 'button', hidden: true }, 'Older…');
  $view.append(tabs, list, more);
  let category = 'security';
  let next = '';
  const load = async (reset) => {
    if (reset) { list.replaceChildren(); next = ''; }
    let page;
    try {
      page = await api('GET', `/api/audit?category=${category}&limit=50${next ? `&before=${encodeURIComponent(next)}` : ''}`);
    } catch (e) {
      if (gen === routeGen) list.append(errorBox(e.message));
      return;
    }
    if (gen !== routeGen) return; // the person has moved on
    if (reset && page.events.length === 0) list.append(h('p', { class: 'notice info' }, 'Nothing yet.'));
    for (const e of page.events) {
      const what = [e.camera ? `camera ${e.camera}` : null, e.detail || null,
        e.duration_ms ? `for ${duration(e.duration_ms)}` : null].filter(Boolean).join(' · ');
      list.append(h('div', { class: `card audit ${e.kind}` },
        h('div', {}, h('b', {}, auditWords[e.kind] || e.kind), ' ', h('span', { class: 'muted' }, e.actor)),
        what ? h('div', { class: 'muted' }, what) : null,
        h('div', { class: 'muted' }, new Date(e.at).toLocaleString())));
    }
    next = page.next || '';
    more.hidden = !next;
  };
  more.onclick = () => load(false);
  for (const [cat, label] of [['security', 'Sign-ins & access'], ['sessions', 'Viewing']]) {
    tabs.append(h('button', { class: cat === category ? 'button primary' : 'button', type: 'button', 'data-category': cat, onclick: (ev) => {
      category = cat;
      tabs.querySelectorAll('button').forEach((b) => { b.className = b === ev.target ? 'button primary' : 'button'; });
      load(true);
    } }, label));
  }
  await load(true);
}

$logout.onclick = async () => {
  await api('POST', '/api/logout').catch(() => {});
  me = null;
  go('#/');
};

// go shows a route, re-rendering when the fragment is already there.
function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}
window.addEventListener('hashchange', route);
window.addEventListener('pagehide', stopSessions);
route();
