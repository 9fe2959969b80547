// Relay dashboard. Plain JavaScript, no build step. Every value from the API
// reaches the page through textContent, never as HTML.
'use strict';

(function () {
  const POLL_MS = 3000;
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : '';
  const body = document.body;

  // ---------- small helpers ----------

  // h builds an element: h('td', {class: 'num'}, 'text', childNode).
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const DASH = () => h('span', {class: 'dash', title: 'Not reported by this Relay'}, '—');
  const has = (v) => v !== undefined && v !== null && v !== '';
  // Number reads a figure, also one kept as its JSON text.
  const Num = (v) => (v && typeof v === 'object' && 'rawJSON' in v) ? Number(v.rawJSON) : Number(v);

  function fmtInt(v) {
    if (!has(v)) return DASH();
    return Num(v).toLocaleString('en-US');
  }

  function fmtRate(v) {
    if (!has(v)) return DASH();
    const n = Num(v);
    return (Number.isInteger(n) ? n.toLocaleString('en-US') : n.toFixed(1));
  }

  function fmtMs(v) {
    if (!has(v)) return DASH();
    const n = Num(v);
    if (n < 1) return n.toFixed(2) + ' ms';
    if (n < 1000) return Math.round(n) + ' ms';
    return (n / 1000).toFixed(n < 10000 ? 2 : 1) + ' s';
  }

  function fmtAge(sec) {
    if (!has(sec)) return DASH();
    let s = Math.max(0, Math.floor(Num(sec)));
    if (s < 60) return s + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min';
    const hr = Math.floor(m / 60);
    if (hr < 48) return hr + ' h ' + (m % 60) + ' min';
    return Math.floor(hr / 24) + ' d ' + (hr % 24) + ' h';
  }

  function fmtTime(iso) {
    if (!has(iso)) return DASH();
    const d = new Date(iso);
    if (isNaN(d) || d.getFullYear() < 2) return DASH();
    const text = d.toLocaleString('en-GB', {day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', second: '2-digit'});
    return h('time', {datetime: d.toISOString(), title: d.toISOString()}, text);
  }

  function fmtAgo(iso) {
    if (!has(iso)) return DASH();
    const d = new Date(iso);
    if (isNaN(d) || d.getFullYear() < 2) return DASH();
    const secs = (Date.now() - d) / 1000;
    return h('time', {datetime: d.toISOString(), title: d.toLocaleString()}, secs < 2 ? 'just now' : fmtAge(secs) + ' ago');
  }

  function badge(kind, text) {
    return h('span', {class: 'badge badge-' + kind}, text);
  }

  const STATE = {active: ['green', 'Active'], paused: ['amber', 'Paused'], budget: ['amber', 'API budget']};
  const BREAKER = {closed: ['green', 'Closed'], open: ['red', 'Open'], half_open: ['amber', 'Half-open']};
  const STATUS = {
    delivered: ['green', 'Delivered'], pending: ['blue', 'Pending'], retrying: ['amber', 'Retrying'],
    dead_letter: ['red', 'Dead letter'], not_selected: ['gray', 'Not selected'], paused: ['amber', 'Paused'],
    failed: ['amber', 'Failed'], removed: ['gray', 'Removed'], suppressed: ['gray', 'Suppressed'],
  };

  function lookupBadge(table, v) {
    if (!has(v)) return DASH();
    const [kind, text] = table[v] || ['gray', String(v)];
    return badge(kind, text);
  }

  function toast(text, isError) {
    const el = document.getElementById('toast');
    if (!el) return;
    el.textContent = text;
    el.className = 'toast' + (isError ? ' toast-error' : '');
    el.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { el.hidden = true; }, 4000);
  }

  // ---------- the API, through the session ----------

  // keepNumberText keeps a number literal that a float64 would change
  // (12345678901234567891, 1.50) as the text the producer sent, so a payload
  // is shown exactly as stored. Browsers without JSON.rawJSON show the
  // parsed value.
  function keepNumberText(key, value, ctx) {
    if (typeof value === 'number' && ctx && typeof ctx.source === 'string' && typeof JSON.rawJSON === 'function' && String(value) !== ctx.source) {
      return JSON.rawJSON(ctx.source);
    }
    return value;
  }

  class ApiError extends Error {
    constructor(status, message, missing) {
      super(message);
      this.status = status;
      this.missing = missing; // the route does not exist on this Relay
    }
  }

  async function api(method, path, payload) {
    const opts = {method, credentials: 'same-origin', headers: {'Accept': 'application/json'}};
    if (method !== 'GET') opts.headers['X-CSRF-Token'] = csrf;
    if (payload !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(payload);
    }
    let res;
    try {
      res = await fetch(path, opts);
    } catch (e) {
      throw new ApiError(0, 'Relay is not answering. Is it running? Retrying…', false);
    }
    const text = await res.text();
    let data = null;
    try { data = JSON.parse(text, keepNumberText); } catch (e) { data = null; }
    if (res.status === 401) {
      location.assign('/login?next=' + encodeURIComponent(location.pathname + location.search));
      throw new ApiError(401, 'Your session has ended. Sign in again.', false);
    }
    if (!res.ok) {
      // A route this Relay does not have: the mux's plain 404, or the
      // API's JSON "no such endpoint" / "method … not allowed".
      const routeError = data === null || typeof data.error !== 'string' || /^(no such endpoint|method \S+ not allowed)/.test(data.error);
      const missing = (res.status === 404 || res.status === 405) && routeError;
      const msg = data && typeof data.error === 'string' ? data.error : 'Relay answered ' + res.status + '.';
      throw new ApiError(res.status, msg, missing);
    }
    return data;
  }

  // ---------- live status indicator ----------

  function liveIndicator() {
    const wrap = document.getElementById('live');
    const text = document.getElementById('live-text');
    let last = 0;
    let failed = false;
    function paint() {
      if (!wrap) return;
      if (failed) {
        wrap.className = 'live err';
        text.textContent = 'Connection lost — retrying';
      } else if (last) {
        wrap.className = 'live ok';
        const s = Math.round((Date.now() - last) / 1000);
        text.textContent = 'Live · updated ' + (s < 2 ? 'just now' : s + ' s ago');
      }
    }
    setInterval(paint, 1000);
    return {
      ok() { last = Date.now(); failed = false; paint(); },
      fail() { failed = true; paint(); },
    };
  }

  function showBanner(msg) {
    const el = document.getElementById('banner');
    if (!el) return;
    el.textContent = msg || '';
    el.hidden = !msg;
  }

  // poll runs fn now and then every ms, never two at once.
  function poll(fn, ms) {
    let running = false;
    async function tick() {
      if (running) return;
      running = true;
      try { await fn(); } finally { running = false; }
    }
    tick();
    setInterval(tick, ms);
    return tick;
  }

  async function setState(name, action, btn) {
    if (btn) btn.disabled = true;
    try {
      await api('POST', '/v1/destinations/' + encodeURIComponent(name) + '/' + action);
      toast(name + (action === 'pause' ? ' paused. Nothing is delivered to it until you resume.' : ' resumed. Delivery continues.'));
      return true;
    } catch (e) {
      toast('Could not ' + action + ' ' + name + ': ' + e.message, true);
      return false;
    } finally {
      if (btn) btn.disabled = false;
    }
  }

  function stateButton(d, onDone) {
    const paused = d.state === 'paused';
    const action = paused ? 'resume' : 'pause';
    const btn = h('button', {
      type: 'button', class: 'btn btn-sm ' + (paused ? 'btn-resume' : 'btn-pause'),
      dataset: {action, name: d.name}, 'aria-label': (paused ? 'Resume ' : 'Pause ') + d.name,
    }, paused ? 'Resume' : 'Pause');
    btn.addEventListener('click', async () => { if (await setState(d.name, action, btn)) onDone(); });
    return btn;
  }

  function emptyRow(cols, content, cls) {
    return h('tr', {class: 'placeholder'}, h('td', {colspan: cols}, h('div', {class: 'empty ' + (cls || '')}, content)));
  }

  function stat(label, value, cls, notes) {
    return h('div', {class: 'stat'}, h('div', {class: 'stat-label'}, label),
      h('div', {class: 'stat-value ' + (cls || '')}, value), notes && notes.length ? h('div', {class: 'stat-notes'}, notes) : '');
  }

  const sum = (list, key) => list.some((d) => has(d[key])) ? list.reduce((a, d) => a + (Num(d[key]) || 0), 0) : null;

  // ---------- charts: inline SVG, drawn here, numbers in a table ----------

  const SVGNS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, ...children) {
    const el = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) el.setAttribute(k, v);
    for (const c of children.flat(Infinity)) if (c) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return el;
  }

  const SERIES = {
    delivered: {label: 'Delivered', color: '#12b76a'},
    failed: {label: 'Failed', color: '#f79009'},
    dead_letter: {label: 'Dead-lettered', color: '#d92d20'},
    p50_ms: {label: 'p50', color: '#2e90fa'},
    p99_ms: {label: 'p99', color: '#7a5af8'},
    pending: {label: 'Pending', color: '#667085'},
  };

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function stepLabel(s) { return s.step_seconds >= 600 ? '10 min' : 'minute'; }

  function fmtClock(iso) {
    const d = new Date(iso);
    return d.toLocaleTimeString('en-GB', {hour: '2-digit', minute: '2-digit'});
  }

  // openSpans returns the breaker's open periods as fractions of the window.
  function openSpans(s) {
    const from = new Date(s.points[0].at).getTime();
    const span = s.points.length * s.step_seconds * 1000;
    return (s.breaker_open || []).map((o) => {
      const a = new Date(o.from).getTime();
      const b = o.until ? new Date(o.until).getTime() : Date.now();
      return {o, x0: Math.max(0, (a - from) / span), x1: Math.min(1, Math.max((b - from) / span, (a - from) / span + 0.007))};
    });
  }

  // plot draws keys of s.points into an SVG W×H: 'bars' stacks them per
  // step, 'lines' joins each key's values (a null is a gap), 'area' fills
  // under one key. The breaker's open periods are shaded red.
  function plot(s, keys, kind, W, H, ymax, ymin) {
    const n = s.points.length;
    const bw = W / n;
    // ymin set: a log scale from ymin to ymax (latency spans 1 ms to 10 s)
    const y = ymin ? (v) => H - Math.max(0, Math.log(Math.max(v, ymin) / ymin) / Math.log(ymax / ymin)) * H : (v) => H - (v / ymax) * H;
    const g = [];
    for (const sp of openSpans(s)) {
      g.push(svg('rect', {class: 'breaker-band', x: (sp.x0 * W).toFixed(1), y: 0, width: ((sp.x1 - sp.x0) * W).toFixed(1), height: H, fill: '#f04438', 'fill-opacity': '0.13'},
        svg('title', {}, 'Breaker open from ' + fmtClock(sp.o.from) + (sp.o.until ? ' to ' + fmtClock(sp.o.until) : ', still open'))));
    }
    if (kind === 'bars') {
      s.points.forEach((p, i) => {
        let base = 0;
        for (const k of keys) {
          const v = Num(p[k]) || 0;
          if (!v) continue;
          g.push(svg('rect', {x: (i * bw + bw * 0.12).toFixed(2), width: Math.max(bw * 0.76, 0.8).toFixed(2), y: y(base + v).toFixed(2), height: (y(base) - y(base + v)).toFixed(2), fill: SERIES[k].color, class: 'bar-' + k}));
          base += v;
        }
      });
    } else {
      for (const k of keys) {
        let d = '';
        let pen = false;
        s.points.forEach((p, i) => {
          if (!has(p[k])) { pen = false; return; }
          const py = y(Num(p[k])).toFixed(2);
          const alone = !pen && (i + 1 >= n || !has(s.points[i + 1][k]));
          // a value without neighbours is drawn across its step
          d += alone ? 'M' + (i * bw).toFixed(2) + ' ' + py + 'L' + ((i + 1) * bw).toFixed(2) + ' ' + py
            : (pen ? 'L' : 'M') + (i * bw + bw / 2).toFixed(2) + ' ' + py;
          pen = !alone;
        });
        if (kind === 'area' && d) g.push(svg('path', {d: d + 'L' + (W - bw / 2).toFixed(2) + ' ' + H + 'L' + (bw / 2).toFixed(2) + ' ' + H + 'Z', fill: SERIES[k].color, 'fill-opacity': '0.15'}));
        if (d) g.push(svg('path', {d, fill: 'none', stroke: SERIES[k].color, 'stroke-width': 1.6, 'vector-effect': 'non-scaling-stroke', 'stroke-linejoin': 'round', class: 'line-' + k}));
      }
    }
    g.push(svg('line', {x1: 0, x2: W, y1: H - 0.5, y2: H - 0.5, stroke: '#d0d5dd', 'vector-effect': 'non-scaling-stroke'}));
    return g;
  }

  function peak(s, keys, kind) {
    let m = 0;
    for (const p of s.points) {
      if (kind === 'bars') m = Math.max(m, keys.reduce((a, k) => a + (Num(p[k]) || 0), 0));
      else for (const k of keys) if (has(p[k])) m = Math.max(m, Num(p[k]));
    }
    return m;
  }

  // logFloor is the bottom of a log scale for lines whose values span more
  // than a factor of 20 (a power of ten at or below the smallest), else 0:
  // a linear scale.
  function logFloor(s, keys, ymax) {
    let lo = Infinity;
    for (const p of s.points) for (const k of keys) if (has(p[k]) && Num(p[k]) > 0) lo = Math.min(lo, Num(p[k]));
    if (!isFinite(lo) || ymax / lo < 20) return 0;
    return Math.pow(10, Math.floor(Math.log10(lo)));
  }

  const sumOf = (s, k) => s.points.reduce((a, p) => a + (Num(p[k]) || 0), 0);

  // bigChart is a labelled chart with a legend, its axis and a table of
  // every step's numbers.
  function bigChart(id, title, s, keys, kind, fmt) {
    const W = 600, H = 140;
    const ymax = niceMax(peak(s, keys, kind));
    const ymin = kind === 'lines' ? logFloor(s, keys, ymax) : 0;
    const open = (s.breaker_open || []).length;
    const summary = title + ', last ' + (s.window === '24h' ? '24 hours' : 'hour') + ' per ' + stepLabel(s) + ': ' +
      (kind !== 'bars' && !peak(s, keys, kind) && keys.some((k) => k.endsWith('_ms')) ? 'no attempts' :
        keys.map((k) => kind === 'bars' ? sumOf(s, k) + ' ' + SERIES[k].label.toLowerCase() : SERIES[k].label + ' up to ' + fmt(peak(s, [k], kind))).join(', ')) +
      (open ? '; breaker open ' + open + (open === 1 ? ' time' : ' times') : '') + '.';
    const titleId = id + '-title';
    const chartSvg = svg('svg', {class: 'chart-svg', viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'none', role: 'img', 'aria-labelledby': titleId},
      svg('title', {id: titleId}, summary), plot(s, keys, kind, W, H, ymax, ymin));
    const legend = h('ul', {class: 'legend'}, keys.map((k) => h('li', {}, h('span', {class: 'swatch swatch-' + k, 'aria-hidden': 'true'}), SERIES[k].label)),
      open ? h('li', {}, h('span', {class: 'swatch swatch-breaker', 'aria-hidden': 'true'}), 'Breaker open') : '');
    const first = s.points[0].at;
    const axis = h('div', {class: 'chart-axis', 'aria-hidden': 'true'}, h('span', {}, fmtClock(first)), h('span', {}, s.window === '24h' ? '−12 h' : '−30 min'), h('span', {}, 'now'));
    const rows = s.points.map((p) => h('tr', {dataset: {at: p.at}}, h('th', {scope: 'row'}, fmtClock(p.at)),
      keys.map((k) => h('td', {class: 'num', dataset: {key: k}}, has(p[k]) ? (kind === 'bars' ? String(Num(p[k])) : fmt(p[k])) : '—'))));
    const table = h('details', {class: 'chart-numbers'}, h('summary', {}, 'Numbers'),
      h('table', {class: 'table table-compact', id: id + '-table'},
        h('caption', {class: 'sr-only'}, title + ' per ' + stepLabel(s)),
        h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'Time'), keys.map((k) => h('th', {scope: 'col', class: 'num'}, SERIES[k].label)))),
        h('tbody', {}, rows)));
    return h('figure', {class: 'chart', id, dataset: {window: s.window}},
      h('figcaption', {}, h('span', {class: 'chart-title'}, title), legend),
      h('div', {class: 'chart-plot'}, h('span', {class: 'chart-ymax', 'aria-hidden': 'true'}, kind === 'bars' ? String(ymax) : fmt(ymax)),
        ymin ? h('span', {class: 'chart-ymin', 'aria-hidden': 'true'}, fmt(ymin) + ' (log scale)') : '', chartSvg),
      axis, table);
  }

  // sparkline is a destination's hour in a table cell: delivered and
  // failed per minute as bars, pending as a line; its title says the sums.
  function sparkline(s) {
    const W = 120, H = 28;
    const keys = ['delivered', 'failed', 'dead_letter'];
    const ymax = niceMax(peak(s, keys, 'bars'));
    const pmax = niceMax(peak(s, ['pending'], 'lines'));
    const d = sumOf(s, 'delivered'), f = sumOf(s, 'failed'), dl = sumOf(s, 'dead_letter');
    const last = s.points[s.points.length - 1];
    const open = (s.breaker_open || []).length;
    const text = s.destination + ', last ' + (s.window === '24h' ? '24 hours' : 'hour') + ': ' + d + ' delivered, ' + f + ' failed, ' + dl + ' dead-lettered; pending now ' + (Num(last.pending) || 0) +
      ', at most ' + peak(s, ['pending'], 'lines') + (open ? '; breaker open ' + open + (open === 1 ? ' time' : ' times') : '') + '.';
    const el = svg('svg', {class: 'spark', viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'none', role: 'img', 'aria-label': text,
      'data-delivered': d, 'data-failed': f, 'data-dead-letter': dl, 'data-window': s.window},
    svg('title', {}, text), plot(s, keys, 'bars', W, H, ymax), plot(s, ['pending'], 'lines', W, H, pmax).slice(-2, -1));
    return el;
  }

  // ---------- destinations page ----------

  function destinationsPage() {
    const tbody = document.getElementById('destinations-body');
    const summary = document.getElementById('summary');
    const live = liveIndicator();
    let refresh;

    function row(d) {
      const href = '/destinations/' + encodeURIComponent(d.name);
      const failed = Num(d.failed_last_minute) > 0;
      const dead = Num(d.dead_lettered) > 0;
      return h('tr', {class: 'row', dataset: {name: d.name, state: d.state || ''}},
        h('td', {}, h('a', {class: 'dest-link', href}, d.name), h('span', {class: 'sub'}, d.type || '')),
        h('td', {class: 'state-cell'}, lookupBadge(STATE, d.state)),
        h('td', {class: 'col-breaker'}, lookupBadge(BREAKER, d.breaker)),
        h('td', {class: 'num'}, fmtInt(d.pending)),
        h('td', {class: 'num'}, Num(d.pending) === 0 && has(d.oldest_pending_seconds) ? h('span', {class: 'dash'}, 'none waiting') : fmtAge(d.oldest_pending_seconds)),
        h('td', {class: 'num'}, fmtRate(d.delivered_last_minute)),
        h('td', {class: 'num' + (failed ? ' num-bad' : '')}, fmtRate(d.failed_last_minute)),
        h('td', {class: 'num'}, fmtMs(d.p99_latency_ms)),
        h('td', {class: 'num' + (dead ? ' num-bad' : '')}, dead ? h('a', {href: href + '#deadletters-section', title: 'Open ' + d.name + '’s dead letters'}, fmtInt(d.dead_lettered)) : fmtInt(d.dead_lettered)),
        h('td', {class: 'spark-cell', dataset: {name: d.name}}, sparkFor(d.name)),
        h('td', {class: 'actions'}, stateButton(d, () => refresh())));
    }

    // The charts column: every destination's hour from GET /v1/series, or
    // with the 24 h toggle each one's day, read a few at a time.
    const series = new Map();
    let chartWindow = '1h';
    let dayReadAt = 0;
    function sparkFor(name) {
      const s = series.get(name);
      if (!s || s.window !== chartWindow) return h('span', {class: 'dash'}, '…');
      return sparkline(s);
    }
    function paintSparks() {
      for (const td of tbody.querySelectorAll('td.spark-cell')) td.replaceChildren(sparkFor(td.dataset.name));
    }
    async function loadSeries() {
      const want = chartWindow;
      try {
        if (want === '1h') {
          const data = await api('GET', '/v1/series?window=1h');
          if (want !== chartWindow) return;
          for (const s of (data && data.series) || []) series.set(s.destination, s);
        } else {
          // A day is read per destination: once a minute is enough (its
          // steps are ten minutes), and a few requests at a time.
          if (Date.now() - dayReadAt < 60000) return;
          dayReadAt = Date.now();
          const names = [...tbody.querySelectorAll('tr.row')].map((tr) => tr.dataset.name);
          for (let i = 0; i < names.length; i += 4) {
            const got = await Promise.all(names.slice(i, i + 4).map((n) => api('GET', '/v1/destinations/' + encodeURIComponent(n) + '/series?window=24h').catch(() => null)));
            if (want !== chartWindow) return;
            for (const s of got) if (s) series.set(s.destination, s);
          }
        }
      } catch (e) {
        if (e.missing || e.status === 404) {
          document.getElementById('destinations').classList.add('no-charts');
          return;
        }
      }
      paintSparks();
    }
    const reloadSeries = poll(loadSeries, 10000);
    for (const b of document.querySelectorAll('#spark-window button')) {
      b.addEventListener('click', () => {
        chartWindow = b.dataset.window;
        dayReadAt = 0;
        for (const o of document.querySelectorAll('#spark-window button')) o.setAttribute('aria-pressed', o === b ? 'true' : 'false');
        document.getElementById('spark-head').textContent = chartWindow === '24h' ? 'Last 24 h' : 'Last hour';
        paintSparks();
        reloadSeries();
      });
    }

    function renderSummary(list) {
      const paused = list.filter((d) => d.state === 'paused').length;
      const open = list.filter((d) => d.breaker === 'open').length;
      const failed = sum(list, 'failed_last_minute');
      const dead = sum(list, 'dead_lettered');
      const failing = list.filter((d) => Num(d.failed_last_minute) > 0).length;
      const withDead = list.filter((d) => Num(d.dead_lettered) > 0).length;
      const notes = [];
      if (paused) notes.push(h('span', {class: 'note-warn'}, paused + ' paused'));
      if (open) notes.push(h('span', {class: 'note-bad'}, open + (open === 1 ? ' breaker open' : ' breakers open')));
      if (failing) notes.push(h('span', {class: 'note-bad'}, failing + ' failing'));
      if (withDead) notes.push(h('span', {class: 'note-bad'}, withDead + ' with dead letters'));
      if (!notes.length && list.length) notes.push(h('span', {class: 'note-good'}, 'all delivering'));
      summary.replaceChildren(
        stat('Destinations', String(list.length), '', notes),
        stat('Pending', fmtInt(sum(list, 'pending'))),
        stat('Delivered / min', fmtRate(sum(list, 'delivered_last_minute')), 'good'),
        stat('Failed / min', fmtRate(failed), failed > 0 ? 'bad' : ''),
        stat('Dead letters', fmtInt(dead), dead > 0 ? 'bad' : ''));
    }

    async function load() {
      let data;
      try {
        data = await api('GET', '/v1/destinations');
      } catch (e) {
        live.fail();
        showBanner('Could not load destinations: ' + e.message);
        if (!tbody.querySelector('tr.row')) tbody.replaceChildren(emptyRow(11, 'Destinations could not be loaded. The page retries every few seconds.'));
        return;
      }
      showBanner('');
      live.ok();
      const list = (data && data.destinations) || [];
      // The breaker column shows once any destination reports one.
      document.getElementById('destinations').classList.toggle('no-breaker', !list.some((d) => has(d.breaker)));
      renderSummary(list);
      if (list.length === 0) {
        tbody.replaceChildren(emptyRow(11, 'No destinations are configured. Add one under destinations: in relay.yaml and reload.'));
        return;
      }
      // Rebuild only the rows whose figures changed, so a button is not
      // swapped out under the pointer for nothing.
      const old = new Map([...tbody.querySelectorAll('tr.row')].map((tr) => [tr.dataset.name, tr]));
      const rows = list.map((d) => {
        const sig = JSON.stringify(d);
        const prev = old.get(d.name);
        if (prev && prev.dataset.sig === sig) return prev;
        const tr = row(d);
        tr.dataset.sig = sig;
        return tr;
      });
      tbody.replaceChildren(...rows);
    }

    refresh = poll(load, POLL_MS);
  }

  // ---------- one destination ----------

  function destinationPage() {
    const name = body.dataset.destination;
    const live = liveIndicator();
    const selected = new Set();
    const expanded = new Set();
    let deadletters = [];
    let more = false;
    let deadTotal = null;
    let dest = null;
    let outcome = '';
    let missing = false; // not in the config
    let chartWindow = '1h';

    const el = (id) => document.getElementById(id);
    const toggle = el('dest-toggle');
    const replaySel = el('replay-selected');
    const replayAll = el('replay-all');
    const selectAll = el('select-all');

    async function loadDestination() {
      let data;
      try {
        data = await api('GET', '/v1/destinations');
      } catch (e) {
        live.fail();
        showBanner('Could not load ' + name + ': ' + e.message);
        return;
      }
      dest = ((data && data.destinations) || []).find((d) => d.name === name) || null;
      if (!dest) {
        // Nothing here is live or can be replayed: say so once, and keep
        // only what the delivery log still holds of a removed one.
        showBanner('There is no destination named “' + name + '” in the config. It may have been removed from relay.yaml; its delivery log is kept for log.retention.');
        toggle.hidden = true;
        el('stats').replaceChildren();
        el('deadletters-section').hidden = true;
        el('live').hidden = true;
        missing = true;
        return;
      }
      live.ok();
      missing = false;
      el('live').hidden = false;
      el('deadletters-section').hidden = false;
      showBanner('');
      el('dest-type').textContent = dest.type || '';
      el('dest-state').replaceChildren(lookupBadge(STATE, dest.state));
      el('dest-breaker').replaceChildren(has(dest.breaker) ? h('span', {class: 'muted small'}, 'Breaker ', lookupBadge(BREAKER, dest.breaker)) : '');
      const paused = dest.state === 'paused';
      toggle.hidden = false;
      toggle.textContent = paused ? 'Resume delivery' : 'Pause delivery';
      toggle.className = 'btn ' + (paused ? 'btn-resume' : 'btn-pause');
      toggle.dataset.action = paused ? 'resume' : 'pause';
      const failed = Num(dest.failed_last_minute) > 0;
      el('stats').replaceChildren(
        stat('Pending', fmtInt(dest.pending)),
        stat('Oldest pending', Num(dest.pending) === 0 && has(dest.oldest_pending_seconds) ? 'none waiting' : fmtAge(dest.oldest_pending_seconds)),
        stat('Delivered / min', fmtRate(dest.delivered_last_minute), 'good'),
        stat('Failed / min', fmtRate(dest.failed_last_minute), failed ? 'bad' : ''),
        stat('p99 latency', fmtMs(dest.p99_latency_ms)),
        stat('Delivered in total', fmtInt(dest.delivered)),
        stat('Last success', fmtAgo(dest.last_success_at)),
        stat('Last failure', fmtAgo(dest.last_failure_at), has(dest.last_failure_at) ? 'warn' : ''));
      updateReplayButtons();
    }

    toggle.addEventListener('click', async () => {
      if (await setState(name, toggle.dataset.action, toggle)) await loadDestination();
    });

    function lastError(dl) {
      const a = dl.attempts || [];
      for (let i = a.length - 1; i >= 0; i--) {
        if (a[i].error) return a[i].error;
        if (a[i].status) return 'HTTP ' + a[i].status;
      }
      return '';
    }

    function attemptsTable(attempts) {
      if (!attempts || attempts.length === 0) return h('p', {class: 'muted small'}, 'No attempts were recorded.');
      return h('table', {class: 'attempts-mini'},
        h('thead', {}, h('tr', {}, h('th', {}, '#'), h('th', {}, 'Time'), h('th', {}, 'Outcome'), h('th', {}, 'Status'), h('th', {}, 'Latency'), h('th', {}, 'Error'))),
        h('tbody', {}, attempts.map((a, i) => h('tr', {},
          h('td', {}, String(i + 1)),
          h('td', {}, fmtTime(a.at)),
          h('td', {}, has(a.outcome) ? lookupBadge(STATUS, a.outcome) : (a.error || (a.status && a.status >= 300) ? badge('amber', 'Failed') : badge('green', 'Delivered'))),
          h('td', {}, a.status ? String(a.status) : 'no response'),
          h('td', {}, fmtMs(a.latency_ms)),
          h('td', {class: 'error-text'}, a.error || '')))));
    }

    function activityName(dl) {
      const act = dl.activity || {};
      return act.name || act.activity || 'activity';
    }

    function renderDeadletters() {
      const tbody = el('deadletters-body');
      for (const id of [...selected]) if (!deadletters.some((d) => d.id === id)) selected.delete(id);
      if (deadletters.length === 0) {
        tbody.replaceChildren(emptyRow(6, [h('strong', {class: 'empty-ok'}, 'No dead letters — everything was delivered.')], ''));
        el('deadletters-foot').textContent = '';
        updateReplayButtons();
        return;
      }
      const rows = [];
      for (const dl of deadletters) {
        const open = expanded.has(dl.id);
        const cb = h('input', {type: 'checkbox', 'aria-label': 'Select ' + dl.id, dataset: {id: dl.id}});
        cb.checked = selected.has(dl.id);
        cb.addEventListener('change', () => { if (cb.checked) selected.add(dl.id); else selected.delete(dl.id); updateReplayButtons(); });
        const btn = h('button', {type: 'button', class: 'row-toggle', 'aria-expanded': open ? 'true' : 'false', dataset: {id: dl.id}},
          h('span', {class: 'chev', 'aria-hidden': 'true'}, '▸'), activityName(dl));
        btn.addEventListener('click', () => { if (expanded.has(dl.id)) expanded.delete(dl.id); else expanded.add(dl.id); renderDeadletters(); });
        const err = lastError(dl);
        rows.push(h('tr', {class: 'row deadletter', dataset: {id: dl.id}},
          h('td', {class: 'check'}, cb),
          h('td', {}, btn),
          h('td', {}, h('a', {class: 'id', href: '/activities?id=' + encodeURIComponent(dl.id)}, dl.id)),
          h('td', {}, fmtTime(dl.dead_at)),
          h('td', {class: 'num'}, String((dl.attempts || []).length)),
          h('td', {class: 'error-cell', title: err}, err || DASH())));
        if (open) {
          rows.push(h('tr', {class: 'detail', dataset: {id: dl.id}}, h('td', {colspan: 6},
            h('div', {class: 'detail-grid'},
              h('div', {}, h('h3', {}, 'Attempts'), attemptsTable(dl.attempts)),
              h('div', {}, h('h3', {}, 'Activity'), h('pre', {class: 'payload'}, JSON.stringify(dl.activity, null, 2)))))));
        }
      }
      tbody.replaceChildren(...rows);
      el('deadletters-foot').textContent = more ? 'Showing the oldest ' + deadletters.length + ' of ' + totalDead().toLocaleString('en-US') + ' dead letters. “Replay all” re-queues every one, including those not shown.' : '';
      updateReplayButtons();
    }

    function totalDead() {
      if (deadTotal !== null) return deadTotal;
      if (more && dest && has(dest.dead_lettered)) return Num(dest.dead_lettered);
      return deadletters.length;
    }

    function updateReplayButtons() {
      replaySel.disabled = selected.size === 0;
      replaySel.textContent = selected.size ? 'Replay selected (' + selected.size + ')' : 'Replay selected';
      replayAll.disabled = deadletters.length === 0;
      replayAll.textContent = deadletters.length ? 'Replay all (' + totalDead().toLocaleString('en-US') + ')' : 'Replay all';
      selectAll.checked = deadletters.length > 0 && selected.size === deadletters.length;
      selectAll.indeterminate = selected.size > 0 && selected.size < deadletters.length;
    }

    selectAll.addEventListener('change', () => {
      selected.clear();
      if (selectAll.checked) deadletters.forEach((d) => selected.add(d.id));
      renderDeadletters();
    });

    let deadSig = '';
    async function loadDeadletters() {
      if (missing) return;
      let data;
      try {
        data = await api('GET', '/v1/deadletters?destination=' + encodeURIComponent(name) + '&limit=200');
      } catch (e) {
        if (e.status === 404 && !e.missing) return; // the destination banner says it
        el('deadletters-body').replaceChildren(emptyRow(6, 'Dead letters could not be loaded: ' + e.message));
        return;
      }
      deadletters = (data && data.deadletters) || [];
      more = !!(data && data.next_cursor);
      deadTotal = data && has(data.total) ? Num(data.total) : null;
      const sig = JSON.stringify(deadletters.map((d) => [d.id, d.dead_at, (d.attempts || []).length]));
      if (sig === deadSig) return;
      deadSig = sig;
      renderDeadletters();
    }

    // confirm shows the in-page confirmation and resolves true on Replay.
    function confirmReplay(text) {
      const modal = el('confirm');
      el('confirm-text').textContent = text;
      modal.hidden = false;
      el('confirm-ok').focus();
      return new Promise((resolve) => {
        const done = (v) => () => {
          modal.hidden = true;
          el('confirm-ok').onclick = el('confirm-cancel').onclick = null;
          document.removeEventListener('keydown', onKey);
          resolve(v);
        };
        const onKey = (ev) => { if (ev.key === 'Escape') done(false)(); };
        document.addEventListener('keydown', onKey);
        el('confirm-ok').onclick = done(true);
        el('confirm-cancel').onclick = done(false);
      });
    }

    const plural = (n, one, many) => n.toLocaleString('en-US') + ' ' + (n === 1 ? one : many);

    async function replay(ids) {
      const n = ids ? ids.length : totalDead();
      const text = 'Replay ' + plural(n, 'dead letter', 'dead letters') + ' to ' + name + '? ' +
        (n === 1 ? 'It is' : 'They are') + ' re-queued now and delivered with the destination’s retry schedule; one that fails again returns to this list.';
      if (!(await confirmReplay(text))) return;
      replaySel.disabled = replayAll.disabled = true;
      try {
        const payload = {destination: name};
        if (ids) payload.ids = ids;
        const res = await api('POST', '/v1/replay', payload);
        const done = res && has(res.replayed) ? Num(res.replayed) : n;
        toast('Re-queued ' + plural(done, 'dead letter', 'dead letters') + ' for ' + name + '.');
        ids && ids.forEach((id) => selected.delete(id));
      } catch (e) {
        toast('Replay failed: ' + e.message, true);
      }
      deadSig = '';
      await Promise.all([loadDeadletters(), loadDestination(), loadAttempts()]);
    }

    replaySel.addEventListener('click', () => replay([...selected]));
    replayAll.addEventListener('click', () => replay(null));

    const OUTCOME_EMPTY = {
      '': 'No attempts recorded yet. Attempts appear here as activities are delivered.',
      delivered: 'No delivered attempts in the delivery log yet.',
      failed: 'No failed attempts in the delivery log — nothing has failed recently.',
      dead_letter: 'No attempts ended as a dead letter recently.',
    };

    let attemptsSig = '';
    async function loadAttempts() {
      const tbody = el('attempts-body');
      const want = outcome;
      let data;
      try {
        data = await api('GET', '/v1/deliveries?destination=' + encodeURIComponent(name) + '&limit=50' + (want ? '&outcome=' + want : ''));
      } catch (e) {
        attemptsSig = '';
        if (missing && e.status === 404) {
          el('attempts-section').hidden = true;
          return;
        }
        tbody.replaceChildren(emptyRow(8, e.missing
          ? 'This Relay does not keep a delivery log yet, so recent attempts cannot be shown. Dead letters above still list their attempts.'
          : 'Recent attempts could not be loaded: ' + e.message));
        return;
      }
      if (want !== outcome) return;
      const list = (data && data.deliveries) || [];
      const sig = want + JSON.stringify(list.map((d) => [d.id, d.attempt, d.at, d.outcome]));
      if (sig === attemptsSig) return;
      attemptsSig = sig;
      if (list.length === 0) {
        tbody.replaceChildren(emptyRow(8, OUTCOME_EMPTY[want] || OUTCOME_EMPTY['']));
        return;
      }
      tbody.replaceChildren(...list.map((d) => h('tr', {class: 'row attempt', dataset: {id: d.id || '', outcome: d.outcome || ''}},
        h('td', {}, fmtTime(d.at)),
        h('td', {}, d.name || DASH()),
        h('td', {}, has(d.id) ? h('a', {class: 'id', href: '/activities?id=' + encodeURIComponent(d.id)}, d.id) : DASH()),
        h('td', {class: 'num'}, has(d.attempt) ? String(d.attempt) : DASH()),
        h('td', {}, lookupBadge(STATUS, d.outcome)),
        h('td', {class: 'num'}, d.status ? String(d.status) : (has(d.status) ? 'no response' : DASH())),
        h('td', {class: 'num'}, fmtMs(d.latency_ms)),
        h('td', {class: 'error-cell', title: d.error || ''}, d.error || ''))));
    }

    for (const b of el('outcome-filter').querySelectorAll('button')) {
      b.addEventListener('click', () => {
        outcome = b.dataset.outcome;
        for (const o of el('outcome-filter').querySelectorAll('button')) o.setAttribute('aria-pressed', o === b ? 'true' : 'false');
        attemptsSig = '';
        el('attempts-body').replaceChildren(emptyRow(8, [h('span', {class: 'spinner', 'aria-hidden': 'true'}), 'Loading attempts…']));
        loadAttempts();
      });
    }

    let chartsSig = '';
    async function loadCharts() {
      const want = chartWindow;
      const box = el('charts');
      let s;
      try {
        s = await api('GET', '/v1/destinations/' + encodeURIComponent(name) + '/series?window=' + want);
      } catch (e) {
        chartsSig = '';
        if (e.status === 404) {
          el('charts-section').hidden = true;
          return;
        }
        box.replaceChildren(h('div', {class: 'empty'}, 'Charts could not be loaded: ' + e.message));
        return;
      }
      if (want !== chartWindow || !s || !s.points || !s.points.length) return;
      el('charts-section').hidden = false;
      const sig = JSON.stringify(s);
      if (sig === chartsSig) return;
      chartsSig = sig;
      const per = s.step_seconds >= 600 ? 'per 10 minutes' : 'per minute';
      box.replaceChildren(
        bigChart('chart-attempts', 'Attempts ' + per, s, ['delivered', 'failed', 'dead_letter'], 'bars', (v) => String(Num(v))),
        bigChart('chart-latency', 'Attempt latency', s, ['p50_ms', 'p99_ms'], 'lines', (v) => fmtMs(v)),
        bigChart('chart-pending', 'Pending', s, ['pending'], 'area', (v) => fmtInt(v)));
    }
    const reloadCharts = poll(loadCharts, 15000);
    for (const b of el('chart-window').querySelectorAll('button')) {
      b.addEventListener('click', () => {
        chartWindow = b.dataset.window;
        for (const o of el('chart-window').querySelectorAll('button')) o.setAttribute('aria-pressed', o === b ? 'true' : 'false');
        chartsSig = '';
        reloadCharts();
      });
    }

    poll(loadDestination, POLL_MS);
    poll(loadDeadletters, 5000);
    poll(loadAttempts, POLL_MS);
  }

  // ---------- activity trace ----------

  function activityPage() {
    const id = body.dataset.activity;
    const out = document.getElementById('trace');
    if (!id) return;
    out.replaceChildren(h('div', {class: 'card'}, h('div', {class: 'empty empty-lg'}, h('span', {class: 'spinner', 'aria-hidden': 'true'}), 'Tracing ' + id + '…')));

    function selectedCell(d) {
      if (d.selected) return h('span', {}, h('span', {class: 'sel sel-yes'}, '✓ Selected'), d.reason ? h('span', {class: 'sub'}, d.reason) : '');
      return h('span', {}, h('span', {class: 'sel sel-no'}, '✕ Not selected'), h('span', {class: 'sub'}, d.reason || 'no rule selected it'));
    }

    function destRows(dests) {
      const rows = [];
      for (const d of dests) {
        const attempts = d.attempts || [];
        const last = attempts[attempts.length - 1];
        rows.push(h('tr', {class: 'row trace-row', dataset: {destination: d.name, status: d.status || ''}},
          h('td', {}, h('a', {class: 'dest-link', href: '/destinations/' + encodeURIComponent(d.name)}, d.name)),
          h('td', {}, selectedCell(d)),
          h('td', {}, lookupBadge(STATUS, d.status)),
          h('td', {class: 'num'}, String(attempts.length)),
          h('td', {}, last ? fmtTime(last.at) : DASH()),
          h('td', {class: 'error-cell', title: (last && last.error) || ''}, (last && last.error) || '')));
        if (attempts.length) {
          rows.push(h('tr', {class: 'detail'}, h('td', {colspan: 6}, attemptsMini(attempts))));
        }
      }
      return rows;
    }

    function attemptsMini(attempts) {
      return h('table', {class: 'attempts-mini'},
        h('thead', {}, h('tr', {}, h('th', {}, '#'), h('th', {}, 'Time'), h('th', {}, 'Outcome'), h('th', {}, 'Status'), h('th', {}, 'Latency'), h('th', {}, 'Error'))),
        h('tbody', {}, numbered(attempts).map(([a, n, replayed]) => [
          replayed ? h('tr', {class: 'replay-mark'}, h('td', {colspan: 6}, '↻ Replayed: the attempts after a replay count from 1 again')) : null,
          h('tr', {class: 'trace-attempt', dataset: {attempt: n}},
            h('td', {}, String(n)), h('td', {}, fmtTime(a.at)),
            h('td', {}, lookupBadge(STATUS, a.outcome)),
            h('td', {}, a.status ? String(a.status) : 'no response'),
            h('td', {}, fmtMs(a.latency_ms)), h('td', {class: 'error-text'}, a.error || ''))])));
    }

    // numbered gives each attempt the delivery log's number (its place
    // when there is none) and marks the first after a replay.
    function numbered(attempts) {
      let prev = 0;
      return attempts.map((a, i) => {
        const n = Num(a.attempt) > 0 ? Num(a.attempt) : i + 1;
        const replayed = i > 0 && n <= prev;
        prev = n;
        return [a, n, replayed];
      });
    }

    function kv(label, value) {
      return h('div', {}, h('div', {class: 'kv-label'}, label), h('div', {class: 'kv-value'}, value));
    }

    (async () => {
      let t;
      try {
        t = await api('GET', '/v1/activities/' + encodeURIComponent(id));
      } catch (e) {
        let msg;
        if (e.missing) msg = 'This Relay does not serve activity traces yet. Update Relay to trace activities by id.';
        else if (e.status === 404) msg = 'No activity with id “' + id + '” is retained. Check the id, or it may be older than the retention period.';
        else msg = 'The trace could not be loaded: ' + e.message;
        out.replaceChildren(h('div', {class: 'card', id: 'trace-error'}, h('div', {class: 'empty empty-lg'}, msg)));
        return;
      }
      const act = t.activity || {};
      const dests = t.destinations || [];
      const contact = act.contact ? (act.contact.email || act.contact.id || act.contact.phone || '') : '';
      out.replaceChildren(
        h('div', {class: 'card', id: 'trace-result'},
          h('div', {class: 'trace-head'},
            kv('Activity', t.name || act.name || DASH()),
            kv('ID', h('span', {class: 'mono'}, t.id || id)),
            kv('Trace ID', t.trace_id ? h('span', {class: 'mono', id: 'trace-trace-id', title: 'the W3C trace id every attempt sends in traceparent'}, t.trace_id) : DASH()),
            kv('Received', fmtTime(t.received_at || act.received_at)),
            kv('Occurred', fmtTime(act.occurred_at)),
            kv('Contact', contact || DASH())),
          h('div', {class: 'table-wrap'}, h('table', {class: 'table', id: 'trace-table'},
            h('thead', {}, h('tr', {}, h('th', {}, 'Destination'), h('th', {}, 'Selected'), h('th', {}, 'Status'), h('th', {class: 'num'}, 'Attempts'), h('th', {}, 'Last attempt'), h('th', {}, 'Last error'))),
            h('tbody', {}, dests.length ? destRows(dests) : emptyRow(6, 'No destination is configured, so nothing selected this activity.'))))),
        h('section', {class: 'card section'},
          h('div', {class: 'card-head'}, h('h2', {}, 'Payload')),
          h('div', {class: 'detail-body'}, h('pre', {class: 'payload payload-flat'}, JSON.stringify(act, null, 2)))));
    })();
  }

  const pages = {destinations: destinationsPage, destination: destinationPage, activity: activityPage};
  if (pages[body.dataset.page]) pages[body.dataset.page]();
})();
