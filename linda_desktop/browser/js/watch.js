// Linda Desktop's in-page watcher for WhatsApp Web (added as an init script to every page).
//
// It reads the page the way maintained clients do (whatsapp-web-reference.md): WhatsApp's
// internal models once the page has booted, the DOM markers of resources/selectors.json as the
// fallback, and it PUSHES every change through one binding, so the app never walks the DOM on
// a timer (issue 13):
//   - one MutationObserver on the document; mutations inside the chat list or an open chat
//     ('watch.ignore') are dropped at once;
//   - once booted, listeners on Socket / Stream / Conn (Backbone-style `.on`);
//   - before boot, no `require` at all: the page's own `window.Debug.VERSION` says when it has
//     booted; only when a build lacks it, `require` is probed a few times (seconds apart).
// It also captures the in-page logout reason before WhatsApp reloads the page (reference §3),
// pushes it at once and keeps it in sessionStorage for the reloaded page.
// __LINDA_CONFIG__ and __LINDA_BINDING__ are filled in by browser/watch.py.
(function () {
  'use strict';
  if (window.top !== window || window.__lindaWatch) return;
  const cfg = __LINDA_CONFIG__;
  const BINDING = __LINDA_BINDING__;
  const internalCfg = cfg.internal || {};
  const started = Date.now();
  const DOC = Math.random().toString(36).slice(2);   // this document (a logout reloads the page)
  let lastJson = null;
  let timer = null;
  let booted = false;
  let models = null;
  let requireProbes = 0;
  let bootTimer = null;
  let attachTries = 0;
  let qrInternal = null;
  let qrInternalRef = null;
  let qrBuilding = false;
  let logout = null;

  const emit = (kind, data) => {
    try {
      const fn = window[BINDING];
      if (typeof fn === 'function') {
        const result = fn(kind, data);
        if (result && typeof result.catch === 'function') result.catch(() => {});
      }
    } catch (e) { /* page going away */ }
  };

  // ------------------------------------------------------------------ logout reason
  const sessionKey = (cfg.logout || {}).sessionKey || '__linda_logout';
  try {
    const kept = sessionStorage.getItem(sessionKey);
    if (kept) logout = JSON.parse(kept);
  } catch (e) { logout = null; }

  const captureLogout = (reason, via) => {
    if (typeof reason !== 'string' || !reason) return;
    logout = {reason: reason, via: via, at: Date.now(), doc: DOC};
    try { sessionStorage.setItem(sessionKey, JSON.stringify(logout)); } catch (e) { /* storage gone */ }
    emit('logout', logout);
  };

  // The reason belongs to the logout: kept until a LATER document of this tab is connected
  // (during the logout itself Socket.state may still say CONNECTED).
  const forgetLogout = () => {
    if (!logout || logout.doc === DOC) return;
    logout = null;
    try { sessionStorage.removeItem(sessionKey); } catch (e) { /* ignore */ }
  };

  // ------------------------------------------------------------------ DOM helpers
  const visible = (el) => {
    if (!el) return false;
    try {
      return el.checkVisibility ? el.checkVisibility({visibilityProperty: true}) : el.getClientRects().length > 0;
    } catch (e) { return false; }
  };
  const all = (sel) => { try { return Array.from(document.querySelectorAll(sel)); } catch (e) { return []; } };
  const first = (sel) => { try { return document.querySelector(sel); } catch (e) { return null; } };
  const anyVisible = (sels) => sels.some((s) => all(s).some(visible));
  const anyExists = (sels) => sels.some((s) => first(s) !== null);
  let exclude = (cfg.textExclude || []).join(',');
  try { if (exclude) document.createElement('div').matches(exclude); } catch (e) { exclude = ''; }
  const ignore = ((cfg.watch || {}).ignore || []).join(',');
  const nodeLimit = (cfg.watch || {}).textNodeLimit || 400;

  // Visible text of the small subtrees a state's texts can appear in (never the chat list).
  const textOf = (scopes) => {
    const parts = [];
    let budget = nodeLimit;
    for (const sel of scopes) {
      for (const root of all(sel)) {
        if (!visible(root) || budget <= 0) continue;
        const walker = document.createTreeWalker(root, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT, {
          acceptNode(node) {
            if (node.nodeType === 1) {
              const tag = node.tagName;
              if (tag === 'SCRIPT' || tag === 'STYLE' || tag === 'NOSCRIPT' || tag === 'TEMPLATE') return NodeFilter.FILTER_REJECT;
              if (exclude && node.matches(exclude)) return NodeFilter.FILTER_REJECT;
              return NodeFilter.FILTER_SKIP;
            }
            return NodeFilter.FILTER_ACCEPT;
          }});
        while (budget-- > 0 && walker.nextNode()) {
          const value = (walker.currentNode.nodeValue || '').trim();
          if (value && visible(walker.currentNode.parentElement)) parts.push(value);
        }
      }
    }
    return parts.join('\n');
  };

  // ------------------------------------------------------------------ internal models
  const isBooted = () => {
    const path = internalCfg.boot || ['Debug', 'VERSION'];
    try {
      let v = window;
      for (const key of path) { v = v == null ? undefined : v[key]; }
      return v != null && v !== '';
    } catch (e) { return false; }
  };

  const req = (name) => {
    const r = window[internalCfg.require || 'require'];
    if (typeof r !== 'function') return undefined;
    try { return r(name); } catch (e) { return undefined; }
  };
  const objectOf = (spec) => {
    if (!spec) return undefined;
    const mod = req(spec.module);
    if (mod == null) return undefined;
    return spec.object ? mod[spec.object] : mod;
  };
  const listen = (model, events) => {
    if (!model || typeof model.on !== 'function') return;
    for (const ev of events || []) {
      try { model.on(ev, schedule); } catch (e) { /* not an event emitter */ }
    }
  };

  const hookLogout = (cmd) => {
    const spec = cfg.logout || {};
    for (const hook of spec.hooks || []) {
      const mod = req(hook.module);
      if (!mod) continue;
      try {
        const original = mod[hook.function];
        if (typeof original !== 'function' || original.__linda) continue;
        const wrapped = function () {
          captureLogout(arguments[hook.arg], hook.module);
          return original.apply(this, arguments);
        };
        wrapped.__linda = true;
        mod[hook.function] = wrapped;
      } catch (e) { /* frozen module: the other hooks still work */ }
    }
    if (cmd && typeof cmd.on === 'function') {
      for (const ev of spec.cmdEvents || []) {
        try {
          cmd.on(ev, function () {
            // whatsapp-web.js listens here; the event itself may carry no reason (the hooks
            // above see it then): record a string argument only.
            const found = Array.from(arguments).find((a) => typeof a === 'string' && a);
            if (found) captureLogout(found, 'Cmd.' + ev);
            schedule();
          });
        } catch (e) { /* ignore */ }
      }
    }
  };

  const attachModels = () => {
    const socket = objectOf(internalCfg.socket);
    if (!socket) return false;
    models = {
      socket: socket,
      stream: objectOf(internalCfg.stream),
      conn: objectOf(internalCfg.conn),
      cmd: objectOf(internalCfg.cmd),
    };
    listen(models.socket, internalCfg.socket.events);
    listen(models.stream, (internalCfg.stream || {}).events);
    listen(models.conn, (internalCfg.conn || {}).events);
    hookLogout(models.cmd);
    return true;
  };

  const tryBoot = () => {
    if (booted) return;
    if (isBooted()) {
      // Booted, but the modules are not resolvable (yet, or at all: a build that hides them):
      // a few retries with back-off, then the DOM alone.
      if (bootTimer || attachTries >= 8) return;
      attachTries += 1;
      if (attachModels()) { booted = true; return; }
      bootTimer = setTimeout(() => { bootTimer = null; tryBoot(); schedule(); }, Math.min(10000, 250 * 2 ** attachTries));
      return;
    }
    // A build without Debug.VERSION: probe `require` a few times, seconds apart.
    const probes = internalCfg.require_probe_seconds || [];
    const age = (Date.now() - started) / 1000;
    if (requireProbes < probes.length && age >= probes[requireProbes]) {
      requireProbes += 1;
      if (attachModels()) booted = true;
    }
  };

  // WhatsApp announces its boot by assigning window.Debug (whatsapp-web.js waits for
  // Debug.VERSION): an accessor notices that assignment at once, so the logout hooks are in
  // place before the page can act on a broken profile. It behaves like a plain property.
  const trapBootSignal = () => {
    const key = (internalCfg.boot || ['Debug'])[0];
    try {
      const own = Object.getOwnPropertyDescriptor(window, key);
      if (own && !own.configurable) return;
      if (own && (own.get || own.set)) return;
      let value = own ? own.value : undefined;
      Object.defineProperty(window, key, {
        configurable: true, enumerable: true,
        get() { return value; },
        set(v) { value = v; Promise.resolve().then(() => { if (!booted) { tryBoot(); if (booted) schedule(); } }); },
      });
    } catch (e) { /* the timer and the mutations still notice the boot */ }
  };

  // Before boot, a cheap property check every 250 ms (no `require`, no DOM walk) for the first
  // minute of a page; mutations check it too. After boot the models' own events take over.
  const bootWatch = () => {
    tryBoot();
    if (booted) { schedule(); return; }
    const probes = internalCfg.require_probe_seconds || [];
    const age = (Date.now() - started) / 1000;
    const horizon = Math.max(60, probes.length ? probes[probes.length - 1] + 1 : 0);
    if (age < horizon) setTimeout(bootWatch, 250);
  };

  const internalReading = () => {
    if (!booted || !models) return null;
    const s = internalCfg.socket;
    const out = {state: null, synced: false, info: null, mode: null, ref: null};
    try { out.state = models.socket[s.state] == null ? null : String(models.socket[s.state]); } catch (e) { /* ignore */ }
    try { out.synced = !!models.socket[s.synced]; } catch (e) { /* ignore */ }
    try { if (models.stream) { out.info = models.stream.info == null ? null : String(models.stream.info); out.mode = models.stream.mode == null ? null : String(models.stream.mode); } } catch (e) { /* ignore */ }
    try { if (models.conn) { const ref = models.conn[internalCfg.conn.ref]; out.ref = ref == null ? null : String(ref); } } catch (e) { /* ignore */ }
    return out;
  };

  // The QR payload from the internals, for a page whose QR lives only in the canvas (§2).
  const b64 = (bytes) => {
    const tool = (internalCfg.qr_parts || {}).base64;
    const mod = tool && req(tool.module);
    if (mod && typeof mod[tool.call] === 'function') return mod[tool.call](bytes);
    let s = '';
    const view = new Uint8Array(bytes.buffer ? bytes.buffer : bytes);
    for (let i = 0; i < view.length; i++) s += String.fromCharCode(view[i]);
    return btoa(s);
  };
  const dig = (obj, path) => (path || []).reduce((v, k) => (v == null ? v : v[k]), obj);
  // As whatsapp-web.js builds it from the modules (ref,noise,identity,adv,platform); wa-js's
  // WPP.conn.getAuthCode() (ref,noise,identity,adv) only when the modules do not answer.
  const buildQr = async (ref) => {
    const parts = internalCfg.qr_parts || {};
    const call = async (spec) => {
      const mod = spec && req(spec.module);
      if (!mod) return undefined;
      const owner = spec.object ? mod[spec.object] : mod;
      if (!owner) return undefined;
      if (spec.field) return owner[spec.field];
      return typeof owner[spec.call] === 'function' ? await owner[spec.call]() : undefined;
    };
    try {
      const noise = dig(await call(parts.noise), parts.noise.key);
      const identity = dig(await call(parts.identity), parts.identity.key);
      const adv = await call(parts.adv);
      const platform = await call(parts.platform);
      if (noise && identity && adv && platform != null) {
        const toB64 = (v) => (typeof v === 'string' ? v : b64(v));
        return [ref, toB64(noise), toB64(identity), toB64(adv), String(platform)].join(',');
      }
    } catch (e) { /* fall through to wa-js */ }
    const wpp = window.WPP;
    if (wpp && wpp.conn && typeof wpp.conn.getAuthCode === 'function') {
      const code = await wpp.conn.getAuthCode();
      if (code && typeof code.fullCode === 'string') return code.fullCode;
    }
    return null;
  };
  const maybeBuildQr = (ref, domQr) => {
    if (domQr || !ref || !booted) return;
    if (ref === qrInternalRef || qrBuilding) return;
    qrBuilding = true;
    buildQr(ref).then((full) => {
      qrInternal = full;
      qrInternalRef = ref;
    }).catch(() => { qrInternal = null; qrInternalRef = ref; }).finally(() => { qrBuilding = false; schedule(); });
  };

  // ------------------------------------------------------------------ one reading
  const read = () => {
    tryBoot();
    const internal = internalReading();
    const matches = {};
    for (const name of cfg.order) {
      const spec = cfg.states[name];
      if (!spec) continue;
      if (spec.unless.length && anyExists(spec.unless)) { matches[name] = false; continue; }
      let hit = anyVisible(spec.selectors);
      if (!hit && spec.texts.length && spec.textIn.length) {
        const text = textOf(spec.textIn);
        hit = spec.texts.some((t) => text.includes(t));
      }
      matches[name] = hit;
    }
    let qr = null;
    for (const sel of cfg.qr.container) {
      const el = first(sel);
      if (el) { qr = el.getAttribute(cfg.qr.attribute); break; }
    }
    if (internal && (internal.state === 'UNPAIRED' || internal.state === 'UNPAIRED_IDLE')) {
      maybeBuildQr(internal.ref, qr);
    }
    let progress = null;
    if (matches.loading) {
      for (const sel of cfg.progress) {
        const el = all(sel).find(visible);
        if (el && el.max > 0) { progress = Math.round((el.value / el.max) * 100); break; }
      }
    }
    let passkey = null;
    const screen = first(cfg.passkey.screen);
    if (screen && visible(screen)) {
      passkey = {step: null, error: false, code: null};
      for (const [step, sel] of cfg.passkey.steps) {
        const card = screen.querySelector(sel);
        if (card && visible(card)) { passkey.step = step; break; }
      }
      const alert = screen.querySelector(cfg.passkey.error);
      passkey.error = !!alert && visible(alert);
      const code = screen.querySelector(cfg.passkey.code);
      if (code && visible(code)) passkey.code = (code.textContent || '').trim();
    }
    let pairingCode = null;
    for (const sel of cfg.pairing.code) {
      const el = all(sel).find(visible);
      if (el) {
        pairingCode = (cfg.pairing.attribute && el.getAttribute(cfg.pairing.attribute)) || (el.textContent || '').trim();
        break;
      }
    }
    if (pairingCode && anyVisible(cfg.pairing.expired || [])) pairingCode = null;   // expired: ask for a new one
    let account = null;
    try {
      for (const key of cfg.accountKeys) { const v = localStorage.getItem(key); if (v) { account = v; break; } }
    } catch (e) { /* opaque origin */ }
    if (internal && internal.state === 'CONNECTED') forgetLogout();
    return {
      href: location.href, doc: DOC, booted: booted, internal: internal, matches: matches, qr: qr,
      qrInternal: internal && internal.ref === qrInternalRef ? qrInternal : null,
      progress: progress, passkey: passkey, pairingCode: pairingCode, account: account, logout: logout,
    };
  };

  const push = () => {
    timer = null;
    let reading;
    try { reading = read(); } catch (e) { return; }
    const json = JSON.stringify(reading);
    if (json === lastJson) return;
    lastJson = json;
    emit('reading', reading);
  };

  function schedule() {
    if (timer === null) timer = setTimeout(push, (cfg.watch || {}).debounceMs || 30);
  }

  // ------------------------------------------------------------------ watching
  const inIgnored = (node) => {
    if (!ignore) return false;
    const el = node.nodeType === 1 ? node : node.parentElement;
    try { return !!el && el.closest(ignore) !== null; } catch (e) { return false; }
  };
  const observer = new MutationObserver((records) => {
    for (const record of records) {
      if (!inIgnored(record.target)) { if (!booted) tryBoot(); schedule(); return; }
    }
  });
  const observe = () => {
    const options = {childList: true, subtree: true, attributes: true};
    const attrs = (cfg.watch || {}).attributes || [];
    if (attrs.length) options.attributeFilter = attrs;
    observer.observe(document.documentElement || document, options);
    schedule();
  };

  const act = async (name, arg) => {
    tryBoot();
    const m = models || {};
    try {
      if (name === 'takeover') {
        const fn = m.socket && m.socket[internalCfg.socket.takeover || 'takeover'];
        if (typeof fn !== 'function') return {ok: false, why: 'no_internal'};
        await fn.call(m.socket);
        return {ok: true};
      }
      if (name === 'refreshQR') {
        const fn = m.cmd && m.cmd[internalCfg.cmd.refresh_qr || 'refreshQR'];
        if (typeof fn !== 'function') return {ok: false, why: 'no_internal'};
        await fn.call(m.cmd);
        return {ok: true};
      }
      if (name === 'pairingCode') {
        const wpp = window.WPP;
        const fn = wpp && wpp.conn && wpp.conn.genLinkDeviceCodeForPhoneNumber;
        if (typeof fn !== 'function') return {ok: false, why: 'no_wpp'};
        const code = await fn.call(wpp.conn, arg);
        return {ok: true, code: code == null ? null : String(code)};
      }
    } catch (e) {
      return {ok: false, why: 'error', message: String((e && e.message) || e).slice(0, 200)};
    }
    return {ok: false, why: 'unknown_action'};
  };

  Object.defineProperty(window, '__lindaWatch', {
    value: Object.freeze({
      read: read,
      ping: () => ({href: location.href, booted: booted}),
      push: () => { lastJson = null; push(); },
      act: act,
    }),
    enumerable: false, configurable: false, writable: false,
  });

  // The URL can change without a new document (history API): the reading's href tells the app.
  for (const name of ['pushState', 'replaceState']) {
    try {
      const original = history[name];
      if (typeof original === 'function') {
        history[name] = function () { const out = original.apply(this, arguments); schedule(); return out; };
      }
    } catch (e) { /* ignore */ }
  }
  window.addEventListener('popstate', schedule);
  window.addEventListener('hashchange', schedule);

  if (document.documentElement) observe();
  else document.addEventListener('readystatechange', observe, {once: true});
  document.addEventListener('DOMContentLoaded', schedule);
  trapBootSignal();
  bootWatch();
})();
