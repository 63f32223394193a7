// insa-iiot dashboard: plain JavaScript over the REST API (/api/v1) and the live feed (/api/v1/ws).
// Views: login, devices, one device (latest values, last-hour charts, certificates for engineers),
// alerts, rules, reports.
'use strict';

const ROLES = ['viewer', 'operator', 'engineer', 'admin'];
const SESSION_KEY = 'insa.session';
const HOUR_MS = 3600 * 1000;

// ---------------------------------------------------------------- session

const session = {
  load() {
    try {
      return JSON.parse(sessionStorage.getItem(SESSION_KEY)) || null;
    } catch {
      return null;
    }
  },
  save(value) {
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(value));
  },
  clear() {
    sessionStorage.removeItem(SESSION_KEY);
  },
};

let current = session.load();

function may(role) {
  return current && ROLES.indexOf(current.user.role) >= ROLES.indexOf(role);
}

// ---------------------------------------------------------------- API

class ApiFailure extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
  }
}

async function call(path, { method = 'GET', body, token } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(`/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed = null;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null;
    }
  }
  if (!response.ok) throw new ApiFailure(response.status, parsed);
  return parsed;
}

let refreshing = null;

// A new token pair from the refresh token (one refresh at a time).
function refreshTokens() {
  if (!refreshing) {
    refreshing = call('/auth/refresh', { method: 'POST', token: current.refresh })
      .then((pair) => {
        current = { access: pair.access_token, refresh: pair.refresh_token, user: pair.user || current.user };
        session.save(current);
        return true;
      })
      .catch(() => false)
      .finally(() => {
        refreshing = null;
      });
  }
  return refreshing;
}

// Calls the API as the logged-in user; an expired access token is refreshed once, else log in again.
async function api(path, options = {}) {
  if (!current) throw new ApiFailure(401, null);
  try {
    return await call(path, { ...options, token: current.access });
  } catch (err) {
    if (!(err instanceof ApiFailure) || err.status !== 401) throw err;
    if (current && (await refreshTokens())) return call(path, { ...options, token: current.access });
    endSession();
    throw err;
  }
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === '') continue;
    for (const one of [].concat(value)) search.append(key, one);
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

// ---------------------------------------------------------------- DOM helpers

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const view = () => document.getElementById('view');

function pill(word) {
  return h('span', { class: `pill ${word}` }, word);
}

function two(n) {
  return String(n).padStart(2, '0');
}

function formatTime(value) {
  if (!value) return '—';
  const d = new Date(value);
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

function ago(value) {
  if (!value) return 'never';
  const seconds = Math.max(0, Math.round((Date.now() - new Date(value).getTime()) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return formatTime(value);
}

function formatNumber(value) {
  if (typeof value !== 'number') return String(value);
  const abs = Math.abs(value);
  if (abs !== 0 && (abs >= 1e6 || abs < 1e-3)) return value.toExponential(3);
  return String(Math.round(value * 1000) / 1000);
}

function toast(message) {
  const note = h('div', { class: 'toast', role: 'alert' }, message);
  document.body.append(note);
  setTimeout(() => note.remove(), 6000);
}

// What to undo when leaving a view (timers, live listeners).
let cleanups = [];

function onLeave(fn) {
  cleanups.push(fn);
}

function every(ms, fn) {
  const id = setInterval(fn, ms);
  onLeave(() => clearInterval(id));
}

// ---------------------------------------------------------------- live feed

const live = {
  socket: null,
  opening: false,
  devices: new Set(),
  listeners: new Set(),
  retry: 1000,
  timer: null,

  // Opens the feed with a single-use ticket (the access token never goes into a URL).
  async start() {
    if (this.socket || this.opening || !current) return;
    this.opening = true;
    let ticket;
    try {
      ({ ticket } = await api('/ws/ticket', { method: 'POST' }));
    } catch {
      this.opening = false;
      if (current) this.timer = setTimeout(() => this.start(), this.retry);
      this.retry = Math.min(this.retry * 2, 30000);
      return;
    }
    this.opening = false;
    if (this.socket || !current) return;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const socket = new WebSocket(`${scheme}://${location.host}/api/v1/ws?ticket=${encodeURIComponent(ticket)}`);
    this.socket = socket;
    socket.onopen = () => {
      this.retry = 1000;
      document.getElementById('live').classList.add('on');
      this.send({ action: 'subscribe', alerts: true });
      if (this.devices.size) this.send({ action: 'subscribe', device_ids: [...this.devices] });
    };
    socket.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === 'subscribed') {
        const indicator = document.getElementById('live');
        indicator.textContent = `live · ${message.device_ids.length}`;
        indicator.title = `Live feed: watching ${message.device_ids.length} device(s) and alerts`;
      }
      for (const listener of this.listeners) listener(message);
    };
    socket.onclose = () => {
      const indicator = document.getElementById('live');
      indicator.classList.remove('on');
      indicator.textContent = 'offline';
      indicator.title = 'Live feed disconnected: reconnecting';
      if (this.socket !== socket) return;
      this.socket = null;
      if (!current) return;
      // Reconnect with backoff; asking for a ticket first refreshes the token if it expired.
      this.timer = setTimeout(() => this.start(), this.retry);
      this.retry = Math.min(this.retry * 2, 30000);
    };
  },

  stop() {
    clearTimeout(this.timer);
    const socket = this.socket;
    this.socket = null;
    this.devices.clear();
    if (socket) socket.close();
  },

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  },

  // Watch exactly these devices (status and telemetry).
  watch(ids) {
    const wanted = new Set(ids);
    const gone = [...this.devices].filter((id) => !wanted.has(id));
    const added = [...wanted].filter((id) => !this.devices.has(id));
    this.devices = wanted;
    if (gone.length) this.send({ action: 'unsubscribe', device_ids: gone });
    if (added.length) this.send({ action: 'subscribe', device_ids: added });
  },

  // Calls `fn` with each message while the current view is shown.
  listen(fn) {
    this.listeners.add(fn);
    onLeave(() => this.listeners.delete(fn));
  },
};

// ---------------------------------------------------------------- alert badge

async function refreshAlertCount() {
  try {
    const page = await api(`/alerts${query({ status: 'active', limit: 1 })}`);
    const badge = document.getElementById('alert-count');
    badge.textContent = page.total;
    badge.hidden = page.total === 0;
  } catch {
    // The badge waits for the next event.
  }
}

live.listeners.add((message) => {
  if (message.type === 'alert') refreshAlertCount();
});

// ---------------------------------------------------------------- login

function showLogin(problem) {
  document.getElementById('bar').hidden = true;
  const email = h('input', { id: 'email', type: 'email', autocomplete: 'username', required: true });
  const password = h('input', { id: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const note = h('div', { class: 'problem', id: 'login-problem' }, problem || '');
  const form = h(
    'form',
    { class: 'login', id: 'login' },
    h('h1', {}, 'insa-iiot'),
    h('label', {}, 'Email', email),
    h('label', {}, 'Password', password),
    note,
    h('button', { type: 'submit' }, 'Log in'),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    note.textContent = '';
    try {
      const pair = await call('/auth/login', {
        method: 'POST',
        body: { email: email.value.trim(), password: password.value },
      });
      current = { access: pair.access_token, refresh: pair.refresh_token, user: pair.user };
      session.save(current);
      startSession();
    } catch (err) {
      note.textContent = err.status === 401 ? 'Wrong email or password.' : err.message;
    }
  });
  view().replaceChildren(form);
  email.focus();
}

function startSession() {
  const bar = document.getElementById('bar');
  bar.hidden = false;
  document.getElementById('who').textContent = `${current.user.email} · ${current.user.role}`;
  live.start();
  refreshAlertCount();
  if (!location.hash || location.hash === '#/') location.hash = '#/devices';
  else route();
}

function endSession(problem) {
  const ending = current;
  current = null;
  session.clear();
  live.stop();
  leave();
  if (ending) call('/auth/logout', { method: 'POST', token: ending.access }).catch(() => {});
  showLogin(problem);
}

// ---------------------------------------------------------------- devices

const deviceNames = new Map();

async function loadDeviceNames() {
  const page = await api(`/devices${query({ limit: 1000 })}`);
  for (const device of page.devices) deviceNames.set(device.id, device.name);
  return page.devices;
}

function deviceLink(id) {
  return h('a', { href: `#/devices/${id}` }, deviceNames.get(id) || id.slice(0, 8));
}

async function showDevices() {
  const filters = { q: '', status: '', area: '', type: '' };
  const all = await loadDeviceNames();
  const options = (field) => [...new Set(all.map((d) => d[field]).filter(Boolean))].sort();

  const select = (field, label, values) => {
    const el = h('select', { id: `filter-${field}`, 'aria-label': label },
      h('option', { value: '' }, `${label}: all`),
      values.map((v) => h('option', { value: v }, v)));
    el.addEventListener('change', () => {
      filters[field] = el.value;
      load();
    });
    return el;
  };
  const search = h('input', { type: 'search', id: 'filter-q', placeholder: 'Search devices by name' });
  let typing;
  search.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      filters.q = search.value.trim();
      load();
    }, 250);
  });

  const summary = h('div', { class: 'summary' });
  const body = h('tbody');
  const table = h('div', { class: 'table-wrap' },
    h('table', { id: 'devices' },
      h('thead', {}, h('tr', {}, ['Name', 'Type', 'Area', 'Location', 'Status', 'Last seen'].map((t) => h('th', {}, t)))),
      body));
  view().replaceChildren(
    h('h1', {}, 'Devices'),
    summary,
    h('div', { class: 'toolbar' },
      search,
      select('status', 'Status', ['online', 'offline', 'maintenance', 'error']),
      select('area', 'Area', options('area')),
      select('type', 'Type', options('type'))),
    table,
  );

  const rows = new Map();
  let shown = [];

  function row(device) {
    const status = h('td', { class: 'status' }, pill(device.status));
    const seen = h('td', { class: 'seen', title: formatTime(device.last_seen) }, ago(device.last_seen));
    const tr = h('tr', { dataset: { deviceId: device.id } },
      h('td', {}, h('a', { href: `#/devices/${device.id}` }, device.name)),
      h('td', {}, device.type),
      h('td', {}, device.area || '—'),
      h('td', {}, device.location || '—'),
      status,
      seen);
    rows.set(device.id, { device, status, seen });
    return tr;
  }

  // Counts of the devices listed, kept live with the rows.
  function drawSummary() {
    const devices = [...rows.values()].map((entry) => entry.device);
    const count = (status) => devices.filter((d) => d.status === status).length;
    const tile = (n, label) => h('div', { class: 'tile', dataset: { tile: label } },
      h('div', { class: 'n' }, n), h('div', { class: 'l' }, label));
    summary.replaceChildren(
      tile(devices.length, 'devices'),
      ...['online', 'offline', 'maintenance', 'error'].map((status) => tile(count(status), status)),
    );
  }

  async function load() {
    const page = await api(`/devices${query({ ...filters, limit: 1000 })}`);
    shown = page.devices;
    rows.clear();
    body.replaceChildren(...shown.map(row));
    if (!shown.length) body.append(h('tr', {}, h('td', { colspan: 6, class: 'empty' }, 'No devices match.')));
    live.watch(shown.map((d) => d.id));
    drawSummary();
  }

  live.listen((message) => {
    const entry = rows.get(message.device_id);
    if (!entry) return;
    if (message.type === 'status') {
      entry.device.status = message.status;
      entry.status.replaceChildren(pill(message.status));
      drawSummary();
    } else if (message.type === 'telemetry') {
      entry.device.last_seen = new Date().toISOString();
      entry.seen.textContent = ago(entry.device.last_seen);
    }
  });
  every(5000, () => {
    for (const entry of rows.values()) entry.seen.textContent = ago(entry.device.last_seen);
  });
  onLeave(() => live.watch([]));
  await load();
}

// ---------------------------------------------------------------- one device

// A value axis for `values`: round bounds and a step of 1, 2, 2.5 or 5 times a power of ten,
// about four steps in all.
function axis(values) {
  let low = values.length ? Math.min(...values) : 0;
  let high = values.length ? Math.max(...values) : 1;
  if (low === high) {
    low -= Math.abs(low) * 0.1 || 1;
    high += Math.abs(high) * 0.1 || 1;
  }
  const magnitude = 10 ** Math.floor(Math.log10((high - low) / 4));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => (high - low) / s <= 4) || magnitude * 10;
  const decimals = Math.max(0, -Math.floor(Math.log10(step)) + (step / magnitude === 2.5 ? 1 : 0));
  return { low: Math.floor(low / step) * step, high: Math.ceil(high / step) * step, step, decimals };
}

// A line chart of one key over the last hour, drawn on a canvas.
class Chart {
  constructor(key, unit) {
    this.key = key;
    this.unit = unit;
    this.points = [];
    this.canvas = h('canvas', { dataset: { key, points: '0' }, role: 'img', 'aria-label': `${key}, last hour` });
    this.latest = h('span', { class: 'latest' });
    this.el = h('div', { class: 'chart', dataset: { chart: key } },
      h('div', { class: 'title' }, h('span', {}, unit ? `${key} (${unit})` : key), this.latest),
      this.canvas);
  }

  add(time, value) {
    this.points.push({ t: new Date(time).getTime(), v: value });
    this.points.sort((a, b) => a.t - b.t);
  }

  draw() {
    const now = Date.now();
    this.points = this.points.filter((p) => p.t >= now - HOUR_MS);
    this.canvas.dataset.points = String(this.points.length);
    const last = this.points[this.points.length - 1];
    this.latest.textContent = last ? formatNumber(last.v) : '';

    const ratio = window.devicePixelRatio || 1;
    const width = this.canvas.clientWidth || 480;
    const height = this.canvas.clientHeight || 200;
    this.canvas.width = Math.round(width * ratio);
    this.canvas.height = Math.round(height * ratio);
    const g = this.canvas.getContext('2d');
    g.scale(ratio, ratio);
    g.clearRect(0, 0, width, height);
    const css = getComputedStyle(document.documentElement);
    const muted = css.getPropertyValue('--muted').trim();
    const line = css.getPropertyValue('--line').trim();
    const accent = css.getPropertyValue('--accent').trim();
    const left = 56;
    const bottom = height - 22;
    const top = 8;
    const right = width - 8;

    const scale = axis(this.points.map((p) => p.v));
    const low = scale.low;
    const high = scale.high;
    const x = (t) => left + ((t - (now - HOUR_MS)) / HOUR_MS) * (right - left);
    const y = (v) => bottom - ((v - low) / (high - low)) * (bottom - top);

    g.font = '11px system-ui, sans-serif';
    g.lineWidth = 1;
    g.fillStyle = muted;
    g.strokeStyle = line;
    g.textAlign = 'right';
    g.textBaseline = 'middle';
    for (let v = low; v <= high + scale.step / 2; v += scale.step) {
      g.beginPath();
      g.moveTo(left, y(v));
      g.lineTo(right, y(v));
      g.stroke();
      g.fillText(v.toFixed(scale.decimals), left - 6, y(v));
    }
    g.textAlign = 'center';
    g.textBaseline = 'top';
    const quarter = 15 * 60 * 1000;
    for (let t = Math.ceil((now - HOUR_MS) / quarter) * quarter; t <= now; t += quarter) {
      if (x(t) > right - 16) continue;
      const d = new Date(t);
      g.fillText(`${two(d.getHours())}:${two(d.getMinutes())}`, x(t), bottom + 6);
    }
    if (!this.points.length) {
      g.fillText('no numeric readings in the last hour', (left + right) / 2, (top + bottom) / 2);
      return;
    }
    g.strokeStyle = accent;
    g.lineWidth = 2;
    g.beginPath();
    this.points.forEach((p, i) => (i ? g.lineTo(x(p.t), y(p.v)) : g.moveTo(x(p.t), y(p.v))));
    g.stroke();
    g.fillStyle = accent;
    g.beginPath();
    g.arc(x(last.t), y(last.v), 3.5, 0, Math.PI * 2);
    g.fill();
  }
}

// ---------------------------------------------------------------- device certificates

// A certificate with this many days left, or fewer, has its expiry highlighted.
const EXPIRY_WARNING_DAYS = 30;

// "12ab34cd…9f0e": enough of a serial to tell certificates apart; the whole one in the title.
function shortSerial(serial) {
  return serial.length > 14 ? `${serial.slice(0, 8)}…${serial.slice(-4)}` : serial;
}

function expiresIn(cert) {
  const days = Math.abs(cert.expires_in_days);
  const plural = days === 1 ? '' : 's';
  if (cert.status === 'expired' || cert.expires_in_days < 0) return days ? `expired ${days} day${plural} ago` : 'expired today';
  return days ? `expires in ${days} day${plural}` : 'expires today';
}

// The device's certificates (engineers and admins only): the list, issuing one, revoking one.
// An issued certificate is shown once, as files to save; a generated private key lives only in
// the result box and is dropped (its object URLs revoked) when the box is closed or the view left.
function certificatePanel(deviceId) {
  const base = `/devices/${encodeURIComponent(deviceId)}/certificates`;
  const list = h('div', { class: 'table-wrap' }, h('div', { class: 'empty' }, 'Loading certificates…'));
  const problem = h('div', { class: 'problem', id: 'cert-problem' });
  const result = h('div', { class: 'cert-result', id: 'cert-result', hidden: true });
  let urls = [];

  // Forgets the last issued certificate and key: the links go, the object URLs are released.
  function dropResult() {
    for (const url of urls) URL.revokeObjectURL(url);
    urls = [];
    result.replaceChildren();
    result.hidden = true;
  }
  onLeave(dropResult);

  const fileLink = (id, name, text, label) => {
    const url = URL.createObjectURL(new Blob([text], { type: 'application/x-pem-file' }));
    urls.push(url);
    return h('a', { class: 'file', id, href: url, download: name }, label);
  };

  function showResult(issued) {
    dropResult();
    const links = [fileLink('cert-download-cert', 'device.pem', issued.certificate_pem, 'device.pem (certificate)')];
    if (issued.private_key_pem) links.push(fileLink('cert-download-key', 'device.key', issued.private_key_pem, 'device.key (private key)'));
    links.push(fileLink('cert-download-ca', 'ca.pem', issued.ca_pem, 'ca.pem (platform CA)'));
    result.replaceChildren(
      h('div', { class: 'cert-result-head' },
        h('strong', {}, `Certificate ${shortSerial(issued.serial)} issued`),
        h('span', { class: 'meta' }, `valid until ${formatTime(issued.not_after)}`)),
      issued.private_key_pem
        ? h('p', { class: 'warning', id: 'cert-warning' },
          issued.warning || 'Save the private key now: it is not stored and cannot be retrieved later.',
          ' This box is shown once: closing it or leaving the page forgets the key.')
        : h('p', { class: 'meta' }, 'Signed from your request: the device keeps its own key.'),
      h('div', { class: 'actions files' }, links),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'quiet', id: 'cert-result-close', onclick: dropResult }, 'Done, close')),
    );
    result.hidden = false;
  }

  // The issue form, hidden until asked for.
  const days = h('input', { id: 'cert-days', type: 'number', min: 1, step: 1, inputmode: 'numeric', placeholder: 'default' });
  const csr = h('textarea', {
    id: 'cert-csr',
    rows: 5,
    spellcheck: 'false',
    placeholder: '-----BEGIN CERTIFICATE REQUEST-----\n(optional: leave empty and the platform generates the key)',
  });
  const submit = h('button', { type: 'submit', id: 'cert-issue' }, 'Issue');
  const form = h('form', { class: 'cert-form', id: 'cert-form', hidden: true },
    h('label', { class: 'field' }, h('span', {}, 'Valid days (optional)'), days),
    h('label', { class: 'field csr' }, h('span', {}, 'Certificate signing request, PEM (optional)'), csr),
    h('div', { class: 'actions' },
      submit,
      h('button', { type: 'button', class: 'quiet', onclick: () => { form.hidden = true; open.hidden = false; } }, 'Cancel')));
  const open = h('button', {
    type: 'button',
    id: 'cert-open',
    onclick: () => {
      problem.textContent = '';
      form.hidden = false;
      open.hidden = true;
      days.focus();
    },
  }, 'Issue certificate');

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    problem.textContent = '';
    const body = {};
    const wanted = days.value.trim();
    if (wanted) {
      const n = Number(wanted);
      if (!Number.isInteger(n) || n < 1) {
        problem.textContent = 'Valid days: a whole number of days, at least 1.';
        return;
      }
      body.valid_days = n;
    }
    if (csr.value.trim()) body.csr_pem = csr.value.trim();
    submit.disabled = true;
    try {
      const issued = await api(base, { method: 'POST', body });
      form.hidden = true;
      open.hidden = false;
      days.value = '';
      csr.value = '';
      showResult(issued);
      await load();
    } catch (err) {
      problem.textContent = `Could not issue a certificate: ${err.message}`;
    } finally {
      submit.disabled = false;
    }
  });

  // A revoke button that asks once more before it acts.
  function revokeButton(cert) {
    const cell = h('div', { class: 'actions' });
    const ask = () => cell.replaceChildren(
      h('span', { class: 'meta' }, 'Revoke? Its devices are disconnected.'),
      h('button', {
        type: 'button',
        class: 'danger',
        dataset: { action: 'confirm-revoke' },
        onclick: async (event) => {
          event.target.disabled = true;
          try {
            await api(`${base}/${encodeURIComponent(cert.id)}`, { method: 'DELETE' });
            await load();
          } catch (err) {
            toast(`Could not revoke: ${err.message}`);
            idle();
          }
        },
      }, 'Yes, revoke'),
      h('button', { type: 'button', class: 'quiet', dataset: { action: 'cancel-revoke' }, onclick: () => idle() }, 'Cancel'));
    const idle = () => cell.replaceChildren(
      h('button', { type: 'button', class: 'danger', dataset: { action: 'revoke' }, onclick: ask }, 'Revoke'));
    idle();
    return cell;
  }

  async function load() {
    let page;
    try {
      page = await api(`${base}${query({ limit: 100 })}`);
    } catch (err) {
      list.replaceChildren(h('div', { class: 'empty' }, `Could not load the certificates: ${err.message}`));
      return;
    }
    if (!page.certificates.length) {
      list.replaceChildren(h('div', { class: 'empty' }, 'No certificates yet.'));
      return;
    }
    const rows = page.certificates.map((cert) => {
      const attention = cert.status !== 'active' || cert.expires_in_days <= EXPIRY_WARNING_DAYS;
      return h('tr', { dataset: { certId: cert.id, status: cert.status } },
        h('td', { class: 'serial', title: `${cert.serial}\nSHA-256 ${cert.fingerprint_sha256}` }, shortSerial(cert.serial)),
        h('td', { class: 'cert-status' }, pill(cert.status)),
        h('td', { class: attention ? 'expiry attention' : 'expiry' },
          formatTime(cert.not_after).slice(0, 10),
          h('span', { class: 'in' }, cert.status === 'revoked' ? `revoked ${formatTime(cert.revoked_at)}` : expiresIn(cert))),
        h('td', {}, cert.key_source === 'csr' ? 'device (CSR)' : 'generated'),
        h('td', { class: 'issued' }, formatTime(cert.created_at)),
        h('td', {}, cert.status === 'active' ? revokeButton(cert) : null));
    });
    list.replaceChildren(h('table', { id: 'certificates' },
      h('thead', {}, h('tr', {},
        ['Serial', 'Status', 'Expires', 'Key', 'Issued', ''].map((t) => h('th', { class: t === 'Issued' ? 'issued' : null }, t)))),
      h('tbody', {}, rows)));
    if (page.total > page.certificates.length) {
      list.append(h('div', { class: 'empty' }, `The newest ${page.certificates.length} of ${page.total}.`));
    }
  }

  const el = h('section', { class: 'certs', id: 'device-certificates' },
    h('div', { class: 'toolbar' }, open, h('a', { href: '/api/v1/ca', download: 'ca.pem', class: 'meta' }, 'Platform CA (ca.pem)')),
    form,
    problem,
    result,
    list);
  return { el, load };
}

async function showDevice(id) {
  const since = new Date(Date.now() - HOUR_MS).toISOString();
  const until = new Date(Date.now() + 60000).toISOString();
  const [device, latest, history, alerts] = await Promise.all([
    api(`/devices/${id}`),
    api(`/telemetry/latest${query({ device_id: id })}`),
    // Ten-second averages: the last hour in at most 360 points per key, however fast the device.
    api(`/telemetry${query({ device_id: id, start: since, end: until, interval: '10s', agg: 'avg' })}`),
    api(`/alerts${query({ device_id: id, status: 'active', limit: 50 })}`),
  ]);
  deviceNames.set(device.id, device.name);

  const status = h('span', { id: 'device-status' }, pill(latest.status || device.status));
  const seen = h('span', { class: 'meta', title: formatTime(latest.last_seen) }, `last seen ${ago(latest.last_seen)}`);
  let lastSeen = latest.last_seen;
  const values = h('div', { class: 'values', id: 'values' });
  const charts = h('div', { class: 'charts', id: 'charts' });
  const cards = new Map();
  const plots = new Map();

  function card(key) {
    if (!cards.has(key)) {
      const v = h('div', { class: 'v' });
      const t = h('div', { class: 't' });
      values.append(h('div', { class: 'value', dataset: { value: key } }, h('div', { class: 'k' }, key), v, t));
      cards.set(key, { v, t });
    }
    return cards.get(key);
  }

  function showValue(key, value, unit, time) {
    const { v, t } = card(key);
    v.textContent = value === null || value === undefined ? '—' : `${formatNumber(value)}${unit ? ` ${unit}` : ''}`;
    t.textContent = formatTime(time);
  }

  function chart(key, unit) {
    if (!plots.has(key)) {
      const plot = new Chart(key, unit);
      plots.set(key, plot);
      charts.append(plot.el);
    }
    return plots.get(key);
  }

  for (const [key, reading] of Object.entries(latest.values || {})) {
    showValue(key, reading.text !== undefined && reading.text !== null ? reading.text : reading.value, reading.unit, reading.timestamp);
    if (typeof reading.value === 'number') chart(key, reading.unit);
  }
  for (const row of history.data) {
    if (typeof row.value === 'number') chart(row.key, latest.values?.[row.key]?.unit).add(row.timestamp, row.value);
  }

  const alertList = h('div', { id: 'device-alerts' });
  const renderAlerts = (list) => alertList.replaceChildren(list.length
    ? alertTable(list, () => reloadAlerts())
    : h('div', { class: 'empty' }, 'No active alerts.'));
  const reloadAlerts = async () => renderAlerts((await api(`/alerts${query({ device_id: id, status: 'active', limit: 50 })}`)).alerts);
  renderAlerts(alerts.alerts);
  // Certificates are an engineer's business: nobody else gets the panel (or its request).
  const certs = may('engineer') ? certificatePanel(id) : null;

  view().replaceChildren(
    h('div', { class: 'device-head' }, h('h1', {}, device.name), status, seen),
    h('div', { class: 'meta' }, [device.type, device.area, device.location, device.protocol].filter(Boolean).join(' · ')),
    h('h2', {}, 'Latest values'),
    values,
    h('h2', {}, 'Last hour'),
    charts,
    h('h2', {}, 'Active alerts'),
    alertList,
    certs && h('h2', {}, 'Certificates'),
    certs && certs.el,
  );
  if (!cards.size) values.append(h('div', { class: 'empty' }, 'No readings yet.'));
  const drawAll = () => plots.forEach((plot) => plot.draw());
  drawAll();
  if (certs) certs.load();

  live.watch([id]);
  live.listen((message) => {
    if (message.type === 'alert' && message.alert.device_id === id) reloadAlerts().catch(() => {});
    if (message.device_id !== id) return;
    if (message.type === 'status') status.replaceChildren(pill(message.status));
    if (message.type !== 'telemetry') return;
    values.querySelector('.empty')?.remove();
    lastSeen = new Date().toISOString();
    seen.textContent = `last seen ${ago(lastSeen)}`;
    for (const [key, reading] of Object.entries(message.telemetry)) {
      const value = reading !== null && typeof reading === 'object' ? reading.value : reading;
      const unit = reading !== null && typeof reading === 'object' ? reading.unit : undefined;
      showValue(key, value, unit, message.timestamp);
      if (typeof value === 'number') {
        const plot = chart(key, unit);
        plot.add(message.timestamp, value);
        plot.draw();
      }
    }
  });
  const resize = () => drawAll();
  window.addEventListener('resize', resize);
  onLeave(() => window.removeEventListener('resize', resize));
  every(10000, () => {
    seen.textContent = `last seen ${ago(lastSeen)}`;
    drawAll();
  });
  onLeave(() => live.watch([]));
}

// ---------------------------------------------------------------- alerts

function alertTable(list, changed) {
  const act = (alert, action, label, cls) => h('button', {
    type: 'button',
    class: cls,
    dataset: { action },
    onclick: async (event) => {
      event.target.disabled = true;
      try {
        await api(`/alerts/${alert.id}/${action}`, { method: 'POST' });
        refreshAlertCount();
        await changed();
      } catch (err) {
        toast(`Could not ${action}: ${err.message}`);
        event.target.disabled = false;
      }
    },
  }, label);
  const operator = may('operator');
  const rows = list.map((alert) => h('tr', { dataset: { alertId: alert.id } },
    h('td', {}, pill(alert.severity)),
    h('td', {}, deviceLink(alert.device_id)),
    h('td', { class: 'wrap' }, alert.message),
    h('td', { dataset: { label: 'Value' } }, alert.value === null ? '—' : formatNumber(alert.value)),
    h('td', { dataset: { label: 'Raised' } }, formatTime(alert.created_at)),
    h('td', { class: 'alert-status' }, pill(alert.status)),
    h('td', { dataset: { label: 'Acknowledged by' } }, alert.acknowledged_by || '—'),
    operator ? h('td', {}, h('div', { class: 'actions' },
      alert.status === 'active' ? act(alert, 'acknowledge', 'Acknowledge') : null,
      alert.status !== 'resolved' ? act(alert, 'resolve', 'Resolve', 'quiet') : null)) : null));
  const heads = ['Severity', 'Device', 'Message', 'Value', 'Raised', 'Status', 'Acknowledged by'];
  if (operator) heads.push('');
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'alerts' },
      h('thead', {}, h('tr', {}, heads.map((t) => h('th', {}, t)))),
      h('tbody', {}, rows)));
}

async function showAlerts() {
  await loadDeviceNames();
  let status = 'active';
  let severity = '';
  const tabs = h('div', { class: 'tabs', role: 'tablist' });
  const list = h('div', { id: 'alerts' });
  const severities = h('select', { id: 'filter-severity', 'aria-label': 'Severity' },
    h('option', { value: '' }, 'Severity: all'),
    ['critical', 'warning', 'info'].map((s) => h('option', { value: s }, s)));
  severities.addEventListener('change', () => {
    severity = severities.value;
    load();
  });

  function drawTabs() {
    tabs.replaceChildren(...['active', 'acknowledged', 'resolved'].map((s) => h('button', {
      type: 'button',
      role: 'tab',
      class: s === status ? 'current' : '',
      dataset: { status: s },
      onclick: () => {
        status = s;
        drawTabs();
        load();
      },
    }, s[0].toUpperCase() + s.slice(1))));
  }

  async function load() {
    const page = await api(`/alerts${query({ status, severity, limit: 200 })}`);
    list.replaceChildren(page.alerts.length
      ? alertTable(page.alerts, load)
      : h('div', { class: 'table-wrap' }, h('div', { class: 'empty' }, `No ${status} alerts.`)));
  }

  drawTabs();
  view().replaceChildren(h('h1', {}, 'Alerts'), h('div', { class: 'toolbar' }, tabs, severities), list);
  let pending;
  live.listen((message) => {
    if (message.type !== 'alert') return;
    clearTimeout(pending);
    pending = setTimeout(() => load().catch(() => {}), 200);
  });
  onLeave(() => clearTimeout(pending));
  await load();
}

// ---------------------------------------------------------------- rules

function describeCondition(rule) {
  switch (rule.condition) {
    case 'offline':
      return 'device offline';
    case 'between':
      return `${rule.key} between ${rule.low} and ${rule.high}`;
    case 'outside':
      return `${rule.key} outside ${rule.low}…${rule.high}`;
    default:
      return `${rule.key} ${rule.condition} ${rule.threshold}`;
  }
}

async function showRules() {
  await loadDeviceNames();
  const page = await api(`/rules${query({ limit: 1000 })}`);
  const engineer = may('engineer');
  const target = (rule) => {
    if (rule.device_id) return deviceLink(rule.device_id);
    return [rule.device_type && `type ${rule.device_type}`, rule.area && `area ${rule.area}`].filter(Boolean).join(', ');
  };
  const toggle = (rule) => h('button', {
    type: 'button',
    class: 'quiet',
    onclick: async () => {
      try {
        await api(`/rules/${rule.id}`, { method: 'PUT', body: { enabled: !rule.enabled } });
        await showRules();
      } catch (err) {
        toast(`Could not change the rule: ${err.message}`);
      }
    },
  }, rule.enabled ? 'Disable' : 'Enable');
  const heads = ['Name', 'Target', 'Condition', 'For', 'Severity', 'Actions', 'State'];
  if (engineer) heads.push('');
  const rows = page.rules.map((rule) => h('tr', { dataset: { ruleId: rule.id } },
    h('td', {}, rule.name),
    h('td', {}, target(rule)),
    h('td', {}, describeCondition(rule)),
    h('td', {}, rule.for ? `${rule.for} s` : '—'),
    h('td', {}, pill(rule.severity)),
    h('td', {}, (rule.actions || []).map((a) => a.type).join(', ') || '—'),
    h('td', {}, pill(rule.enabled ? 'enabled' : 'disabled')),
    engineer ? h('td', {}, toggle(rule)) : null));
  view().replaceChildren(
    h('h1', {}, 'Rules'),
    h('p', { class: 'meta' }, 'Devices also alert on their own config.alert_threshold.'),
    h('div', { class: 'table-wrap' }, rows.length
      ? h('table', { id: 'rules' }, h('thead', {}, h('tr', {}, heads.map((t) => h('th', {}, t)))), h('tbody', {}, rows))
      : h('div', { class: 'empty' }, 'No rules yet.')),
  );
}

// ---------------------------------------------------------------- reports

const FORMATS = [['xlsx', 'Excel'], ['pdf', 'PDF'], ['csv', 'CSV'], ['zip', 'ZIP (all three)']];

// Fetches a file with the user's token and hands it to the browser as a download.
async function saveFile(path) {
  const request = (token) => fetch(`/api/v1${path}`, { headers: { Authorization: `Bearer ${token}` } });
  let response = await request(current.access);
  if (response.status === 401 && (await refreshTokens())) response = await request(current.access);
  if (!response.ok) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    throw new ApiFailure(response.status, body);
  }
  const disposition = response.headers.get('Content-Disposition') || '';
  const name = (disposition.match(/filename="([^"]+)"/) || [])[1] || 'report';
  const url = URL.createObjectURL(await response.blob());
  const link = h('a', { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

async function showReports() {
  const devices = await loadDeviceNames();
  const areas = [...new Set(devices.map((d) => d.area).filter(Boolean))].sort();
  const field = (label, control) => h('label', { class: 'field' }, h('span', {}, label), control);

  const kind = h('select', { id: 'report-kind' }, h('option', { value: 'telemetry' }, 'Telemetry'), h('option', { value: 'alerts' }, 'Alerts'));
  const area = h('select', { id: 'report-area' }, h('option', { value: '' }, 'Chosen devices'), areas.map((a) => h('option', { value: a }, `Area ${a}`)));
  const picks = h('select', { id: 'report-devices', multiple: true, size: Math.min(6, Math.max(3, devices.length)) },
    devices.map((d) => h('option', { value: d.id }, d.name)));
  const period = h('select', { id: 'report-period' },
    h('option', { value: '24' }, 'Last 24 hours'),
    h('option', { value: '168' }, 'Last 7 days'),
    h('option', { value: '720' }, 'Last 30 days'));
  const interval = h('select', { id: 'report-interval' },
    h('option', { value: '' }, 'Every point'),
    ['15m', '1h', '1d'].map((i) => h('option', { value: i }, `${i} averages`)));
  const severity = h('select', { id: 'report-severity' }, h('option', { value: '' }, 'Every severity'),
    ['critical', 'warning', 'info'].map((s) => h('option', { value: s }, s)));
  const format = h('select', { id: 'report-format' }, FORMATS.map(([v, l]) => h('option', { value: v }, l)));
  const note = h('div', { class: 'problem', id: 'report-problem' });

  function request() {
    const end = new Date();
    const start = new Date(end.getTime() - Number(period.value) * HOUR_MS);
    const chosen = [...picks.selectedOptions].map((o) => o.value);
    const body = { kind: kind.value, start: start.toISOString(), end: end.toISOString(), format: format.value };
    if (area.value) body.area = area.value;
    else if (chosen.length) body.device_id = chosen;
    if (kind.value === 'telemetry' && interval.value) {
      body.interval = interval.value;
      body.agg = 'avg';
    }
    if (kind.value === 'alerts' && severity.value) body.severity = severity.value;
    return body;
  }

  const download = h('button', {
    type: 'button',
    id: 'report-download',
    onclick: async () => {
      note.textContent = '';
      const { kind: which, ...params } = request();
      download.disabled = true;
      try {
        await saveFile(`/reports/${which}${query(params)}`);
      } catch (err) {
        note.textContent = err.message;
      } finally {
        download.disabled = false;
      }
    },
  }, 'Download');
  const background = h('button', {
    type: 'button',
    id: 'report-queue',
    class: 'quiet',
    onclick: async () => {
      note.textContent = '';
      try {
        await api('/reports', { method: 'POST', body: request() });
        await loadJobs();
      } catch (err) {
        note.textContent = err.message;
      }
    },
  }, 'Run in background');

  const sync = () => {
    const telemetry = kind.value === 'telemetry';
    interval.parentElement.hidden = !telemetry;
    severity.parentElement.hidden = telemetry;
    picks.disabled = Boolean(area.value);
  };
  kind.addEventListener('change', sync);
  area.addEventListener('change', sync);

  const jobs = h('div', { id: 'report-jobs' });
  const schedules = h('div', { id: 'report-schedules' });
  let polling = null;

  async function loadJobs() {
    const page = await api(`/reports${query({ limit: 20 })}`);
    const busy = page.reports.some((j) => j.status === 'queued' || j.status === 'running');
    clearTimeout(polling);
    if (busy) polling = setTimeout(() => loadJobs().catch(() => {}), 1500);
    if (!page.reports.length) {
      jobs.replaceChildren(h('div', { class: 'table-wrap' }, h('div', { class: 'empty' }, 'No report jobs yet.')));
      return;
    }
    const size = (bytes) => {
      if (bytes === null) return '—';
      return bytes < 1e6 ? `${(bytes / 1e3).toFixed(1)} kB` : `${(bytes / 1e6).toFixed(1)} MB`;
    };
    jobs.replaceChildren(h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Queued', 'Report', 'Status', 'Rows', 'Size', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, page.reports.map((job) => h('tr', { dataset: { jobId: job.id } },
        h('td', {}, formatTime(job.created_at)),
        h('td', {}, job.file_name || `${job.kind}.${job.format}`),
        h('td', { class: 'job-status' }, job.status === 'running' ? `running, ${job.progress} %` : pill(job.status)),
        h('td', {}, job.rows === null ? '—' : job.rows),
        h('td', {}, size(job.file_size)),
        h('td', {}, job.download ? h('button', {
          type: 'button',
          class: 'quiet',
          dataset: { action: 'download' },
          onclick: () => saveFile(`/reports/${job.id}/download`).catch((err) => toast(err.message)),
        }, 'Download') : (job.error ? h('span', { class: 'problem' }, job.error) : null))))))));
  }

  async function loadSchedules() {
    const page = await api(`/report-schedules${query({ limit: 100 })}`);
    const when = (s) => (s.frequency === 'weekly'
      ? `weekly, day ${s.weekday}`
      : s.frequency === 'monthly' ? `monthly, on the ${s.day}` : 'daily');
    schedules.replaceChildren(h('div', { class: 'table-wrap' }, page.schedules.length
      ? h('table', {},
        h('thead', {}, h('tr', {}, ['Name', 'Report', 'When (UTC)', 'Next run', 'Recipients', 'State'].map((t) => h('th', {}, t)))),
        h('tbody', {}, page.schedules.map((s) => h('tr', {},
          h('td', {}, s.name),
          h('td', {}, `${s.kind}, ${s.format}`),
          h('td', {}, `${when(s)} at ${two(s.hour)}:00`),
          h('td', {}, formatTime(s.next_run_at)),
          h('td', { class: 'wrap' }, (s.recipients || []).join(', ')),
          h('td', {}, pill(s.enabled ? 'enabled' : 'disabled'))))))
      : h('div', { class: 'empty' }, 'No scheduled reports. Engineers create them with POST /api/v1/report-schedules.')));
  }

  view().replaceChildren(
    h('h1', {}, 'Reports'),
    h('div', { class: 'report-form' },
      field('Report', kind),
      field('Devices', area),
      field('', picks),
      field('Period', period),
      field('Values', interval),
      field('Severity', severity),
      field('Format', format)),
    h('div', { class: 'toolbar' }, download, background),
    note,
    h('h2', {}, 'Background jobs'),
    jobs,
    h('h2', {}, 'Scheduled reports'),
    schedules,
  );
  sync();
  onLeave(() => clearTimeout(polling));
  await Promise.all([loadJobs(), loadSchedules()]);
}

// ---------------------------------------------------------------- routing

function leave() {
  for (const fn of cleanups) fn();
  cleanups = [];
}

async function route() {
  if (!current) {
    showLogin();
    return;
  }
  leave();
  const [, section, id] = (location.hash || '#/devices').split('/');
  for (const link of document.querySelectorAll('[data-nav]')) {
    link.classList.toggle('current', link.dataset.nav === section);
  }
  try {
    if (section === 'devices' && id) await showDevice(decodeURIComponent(id));
    else if (section === 'alerts') await showAlerts();
    else if (section === 'rules') await showRules();
    else if (section === 'reports') await showReports();
    else await showDevices();
  } catch (err) {
    if (!current) return;
    view().replaceChildren(h('div', { class: 'empty' }, `Could not load this page: ${err.message}`));
  }
}

window.addEventListener('hashchange', route);
document.getElementById('logout').addEventListener('click', () => endSession());
if (current) startSession();
else showLogin();
