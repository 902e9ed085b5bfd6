// WhatsApp Web simulator page. Follows /work/shared/whatsapp-web-reference.md; see README.md.
// Loaded from <head>: window.require exists before any other script of the page runs.
(() => {
  'use strict';
  const CFG = Object.assign({boot_seconds: 0.3, loading_seconds: 1, internals: true, qr_data_ref: true,
    language: '', post_logout_variant: 'always', fresh_redirect: true, chat_rows: 4, poll_ms: 150,
    wpp_api: true}, window.__SIM_CONFIG__ || {});
  const PAGE_ID = (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2));
  const SALT_KEY = 'WAWebEncKeySalt';
  const WID_KEY = 'last-wid-md';
  const VERSION = '2.3000.1031234567';
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // ============================================================= the module system (always there)
  // Before boot every require() throws, as on the real page; calls are counted (the app must
  // wait for window.Debug.VERSION). With internals=false it keeps throwing after boot.
  const loader = {booted: false, before: 0, total: 0, modules: Object.create(null)};
  window.require = function require(name) {
    loader.total += 1;
    if (!loader.booted) loader.before += 1;
    if (!loader.booted || !CFG.internals || !Object.prototype.hasOwnProperty.call(loader.modules, name)) {
      throw new Error(`Requiring unknown module "${name}"`);
    }
    return loader.modules[name];
  };

  // Backbone-like models: attributes as fields, on/off/once/trigger, 'change:<attr>' (model, value).
  function makeModel(attrs, methods) {
    const handlers = new Map();
    const m = Object.assign({}, attrs, methods || {});
    const split = (events) => String(events || '').split(/\s+/).filter(Boolean);
    Object.defineProperties(m, {
      on: {value(events, fn, ctx) {
        for (const ev of split(events)) { if (!handlers.has(ev)) handlers.set(ev, []); handlers.get(ev).push({fn, ctx}); }
        return m;
      }},
      once: {value(events, fn, ctx) {
        const wrapper = function (...args) { m.off(events, wrapper); return fn.apply(this, args); };
        return m.on(events, wrapper, ctx);
      }},
      off: {value(events, fn) {
        if (!events) { handlers.clear(); return m; }
        for (const ev of split(events)) {
          if (!fn) handlers.delete(ev); else handlers.set(ev, (handlers.get(ev) || []).filter((h) => h.fn !== fn));
        }
        return m;
      }},
      trigger: {value(ev, ...args) {
        for (const h of (handlers.get(ev) || []).slice()) {
          try { h.fn.apply(h.ctx || m, args); } catch (e) { setTimeout(() => { throw e; }); }
        }
        return m;
      }},
      get: {value(key) { return m[key]; }},
    });
    return m;
  }
  function setAttr(model, key, value) {
    if (model[key] === value) return;
    model[key] = value;
    model.trigger(`change:${key}`, model, value);
    model.trigger('change', model);
  }

  const SOCKET_STATE = Object.freeze(Object.fromEntries(['UNLAUNCHED', 'OPENING', 'PAIRING', 'CONNECTED', 'UNPAIRED',
    'UNPAIRED_IDLE', 'CONFLICT', 'TIMEOUT', 'DEPRECATED_VERSION', 'PROXYBLOCK', 'TOS_BLOCK', 'SMB_TOS_BLOCK']
    .map((s) => [s, s])));
  const STREAM_INFO = Object.freeze(Object.fromEntries(['OFFLINE', 'OPENING', 'PAIRING', 'SYNCING', 'RESUMING',
    'CONNECTING', 'NORMAL', 'TIMEOUT'].map((s) => [s, s])));
  const STREAM_MODE = Object.freeze(Object.fromEntries(['QR', 'MAIN', 'SYNCING', 'OFFLINE', 'CONFLICT', 'PROXYBLOCK',
    'TOS_BLOCK', 'SMB_TOS_BLOCK', 'DEPRECATED_VERSION'].map((s) => [s, s])));
  const LOGOUT_REASON_CODE = Object.freeze({CLIENT_FATAL: '0', SYNC_FAIL: '1', INITIAL_HISTORY_SYNC_TIMEOUT: '2',
    ACCOUNT_LOCKED: '3'});
  const CODE_OF_REASON = {
    web_fail_add_chat: '0', web_fail_enc_salt: '0', web_fail_offline_resume: '0', web_fail_storage_initialization: '0',
    syncd_failure: '1', syncd_error_during_bootstrap: '1', account_sync_error: '1', syncd_timeout: '1',
    critical_sync_timeout: '1', history_sync_timeout: '2', account_locked: '3',
  };
  const LOGOUT_REASONS = ['user_initiated', 'syncd_failure', 'invalid_adv_status', 'critical_sync_timeout',
    'syncd_timeout', 'history_sync_timeout', 'account_sync_timeout', 'md_opt_out', 'unknown_companion',
    'client_version_outdated', 'syncd_error_during_bootstrap', 'account_sync_error', 'storage_quota_exceeded',
    'primary_identity_key_change', 'missing_enc_salt', 'missing_screen_lock_salt', 'account_locked',
    'web_fail_add_chat', 'web_fail_offline_resume', 'web_fail_storage_initialization', 'web_fail_enc_salt',
    'cache_storage_open_failed'];
  const LogoutReason = Object.freeze(Object.fromEntries(LOGOUT_REASONS.map(
    (r) => [r.replace(/(^|_)([a-z])/g, (_, __, c) => c.toUpperCase()), r])));

  const Socket = makeModel({state: 'UNLAUNCHED', hasSynced: false}, {
    takeover() { return takeOver('takeover'); },
    logout() { return logout('user_initiated'); },
  });
  const Stream = makeModel({info: 'OFFLINE', mode: 'OFFLINE', displayInfo: 'OFFLINE', available: false}, {
    markAvailable() { presenceOverride = true; refreshPresence(); },
    markUnavailable() { presenceOverride = false; refreshPresence(); },
  });
  const Conn = makeModel({ref: null, wid: null, pushname: '', platform: 'android', connected: false});
  const Cmd = makeModel({}, {
    refreshQR() { return refreshQr('refresh_qr'); },
  });
  const Shortcake = makeModel({stage: null, code: null, error: null});
  let qrKeys = null;          // {noise, identity, adv} of the QR shown now
  const b64ToBytes = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const bytesToB64 = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)));
  const b64url = (buf) => bytesToB64(buf).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  const b64urlToBytes = (s) => b64ToBytes(s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4));

  const modules = {
    WAWebSocketModel: {Socket, SOCKET_STATE},
    WAWebSocketConstants: {SOCKET_STATE},
    WAWebStreamModel: {Stream, StreamInfo: STREAM_INFO, StreamMode: STREAM_MODE},
    WAWebConnModel: {Conn},
    WAWebCmd: {Cmd},
    WAWebLogoutReason: {
      LogoutReason, LOGOUT_REASON_CODE,
      getErrorCodeFromLogoutReason(reason) { return Object.prototype.hasOwnProperty.call(CODE_OF_REASON, reason) ? CODE_OF_REASON[reason] : null; },
    },
    WAWebReloadAfterLogout: {reloadAfterLogout(errorDuringStorageClear, reason, msg) { reloadAfterLogout(errorDuringStorageClear, reason, msg); }},
    WABase64: {encodeB64: bytesToB64, decodeB64: b64ToBytes},
    WAWebCompanionRegClientUtils: {DEVICE_PLATFORM: 'WEB'},
    WAWebAdvSignatureApi: {getADVSecretKey: async () => (qrKeys ? qrKeys.adv : null)},
    WAWebSignalStoreApi: {waSignalStore: {getRegistrationInfo: async () => (qrKeys ? {identityKeyPair: {pubKey: b64ToBytes(qrKeys.identity)}} : null)}},
    WAWebUserPrefsInfoStore: {waNoiseInfo: {get: async () => (qrKeys ? {staticKeyPair: {pubKey: b64ToBytes(qrKeys.noise)}} : null)}},
    WAWebAltDeviceLinkingApi: {
      setPairingType() {}, initializeAltDeviceLinking: async () => {},
      startAltLinkingFlow: (phone) => requestPairingCode(phone, false),
      genLinkDeviceCodeForPhoneNumber: (phone) => requestPairingCode(phone, false),
    },
    WAWebShortcakeLinkingApi: {Shortcake, getStage: () => Shortcake.stage},
  };
  Object.assign(loader.modules, modules);

  // ============================================================= texts (en, pt, de)
  const TEXTS = {
    en: {
      login_title: 'Steps to log in', step1: 'Open WhatsApp on your phone',
      step2: 'Tap Menu or Settings and select Linked devices', step3: 'Tap Link a device',
      step4: 'Point your phone at this screen to scan the QR code',
      qr_label: 'Scan this QR code to link a device!', reload_qr: 'Click to reload QR code',
      phone_link: 'Link with phone number instead', qr_link: 'Link with QR code instead',
      loading: 'Loading your chats', e2e: 'End-to-end encrypted',
      search: 'Search or start a new chat', chat_list: 'Chat list',
      main_hint: 'Send and receive messages without keeping your phone online.',
      conflict: 'WhatsApp is open in another window. Click “Use here” to use WhatsApp in this window.',
      use_here: 'Use here', close: 'Close',
      offline_title: 'Computer not connected', offline_text: 'Make sure your computer has an active Internet connection.',
      connecting: 'Connecting…',
      TOS_BLOCK: 'This account is not allowed to use WhatsApp',
      SMB_TOS_BLOCK: 'This account is not allowed to use WhatsApp Business',
      block_text: 'Your phone number is banned from using WhatsApp. Contact support for help.',
      PROXYBLOCK: 'WhatsApp is blocked on this network',
      proxy_text: 'Your network or proxy blocks the connection to WhatsApp.',
      deprecated: 'This version of WhatsApp Web is out of date',
      deprecated_text: 'Reload the page to get the latest version.',
      locked_header: 'Your account is locked', locked_subtext: 'Open WhatsApp on your phone to unlock your account.',
      pk_title: 'Link this device with your passkey',
      pk_prompt: 'Your phone says “Continue on WhatsApp Web”. To finish linking, confirm it is you with your passkey.',
      pk_continue: 'Continue', pk_cancel: 'Cancel', pk_wait: 'Waiting for your passkey…',
      pk_phone_title: 'Check your phone', pk_phone_text: 'Waiting for your phone…',
      pk_code_title: 'Confirm the code', pk_code_text: 'Check that your phone shows the same code.',
      pk_confirm: 'Confirm', pk_error: 'Couldn’t verify your passkey. Try again.',
      pk_expired: 'You may need to scan another QR code.',
      pc_title: 'Enter phone number', pc_phone: 'Phone number', pc_next: 'Next',
      pc_code_title: 'Enter code on phone', pc_code_text: 'Linking WhatsApp account +{phone}',
      pc_invalid: 'Invalid phone number.', pc_refused: 'Couldn’t link device. Check the phone number and try again.',
      pc_expired: 'The code expired.', pc_new: 'Get a new code',
    },
    pt: {
      login_title: 'Etapas para entrar', step1: 'Abra o WhatsApp no seu celular',
      step2: 'Toque em Mais opções ou Configurações e selecione Dispositivos conectados',
      step3: 'Toque em Conectar um dispositivo', step4: 'Aponte seu celular para esta tela para escanear o código QR',
      qr_label: 'Escaneie este código QR para conectar um dispositivo!', reload_qr: 'Clique para recarregar o código QR',
      phone_link: 'Conectar com número de telefone', qr_link: 'Conectar com código QR',
      loading: 'Carregando suas conversas', e2e: 'Protegido com a criptografia de ponta a ponta',
      search: 'Pesquisar ou começar uma nova conversa', chat_list: 'Lista de conversas',
      main_hint: 'Envie e receba mensagens sem precisar manter seu celular conectado.',
      conflict: 'O WhatsApp está aberto em outra janela. Clique em “Usar aqui” para usar o WhatsApp nesta janela.',
      use_here: 'Usar aqui', close: 'Fechar',
      offline_title: 'Computador não conectado', offline_text: 'Verifique se o seu computador tem uma conexão ativa com a internet.',
      connecting: 'Conectando…',
      TOS_BLOCK: 'Esta conta não tem permissão para usar o WhatsApp',
      SMB_TOS_BLOCK: 'Esta conta não tem permissão para usar o WhatsApp Business',
      block_text: 'Seu número de telefone foi banido do WhatsApp. Entre em contato com o suporte.',
      PROXYBLOCK: 'O WhatsApp está bloqueado nesta rede',
      proxy_text: 'Sua rede ou proxy bloqueia a conexão com o WhatsApp.',
      deprecated: 'Esta versão do WhatsApp Web está desatualizada',
      deprecated_text: 'Recarregue a página para obter a versão mais recente.',
      locked_header: 'Sua conta está bloqueada', locked_subtext: 'Abra o WhatsApp no seu celular para desbloquear sua conta.',
      pk_title: 'Conecte este dispositivo com sua chave de acesso',
      pk_prompt: 'Seu celular diz “Continue no WhatsApp Web”. Para concluir, confirme que é você com sua chave de acesso.',
      pk_continue: 'Continuar', pk_cancel: 'Cancelar', pk_wait: 'Aguardando sua chave de acesso…',
      pk_phone_title: 'Verifique seu celular', pk_phone_text: 'Aguardando seu celular…',
      pk_code_title: 'Confirme o código', pk_code_text: 'Verifique se o seu celular mostra o mesmo código.',
      pk_confirm: 'Confirmar', pk_error: 'Não foi possível verificar sua chave de acesso. Tente novamente.',
      pk_expired: 'Talvez seja necessário escanear outro código QR.',
      pc_title: 'Insira o número de telefone', pc_phone: 'Número de telefone', pc_next: 'Avançar',
      pc_code_title: 'Insira o código no celular', pc_code_text: 'Conectando a conta do WhatsApp +{phone}',
      pc_invalid: 'Número de telefone inválido.', pc_refused: 'Não foi possível conectar. Verifique o número e tente novamente.',
      pc_expired: 'O código expirou.', pc_new: 'Gerar novo código',
    },
    de: {
      login_title: 'Schritte zur Anmeldung', step1: 'Öffne WhatsApp auf deinem Telefon',
      step2: 'Tippe auf Menü oder Einstellungen und wähle Verknüpfte Geräte',
      step3: 'Tippe auf Gerät hinzufügen', step4: 'Richte dein Telefon auf diesen Bildschirm, um den QR-Code zu scannen',
      qr_label: 'Scanne diesen QR-Code, um ein Gerät zu verknüpfen!', reload_qr: 'Klicke, um den QR-Code neu zu laden',
      phone_link: 'Stattdessen mit Telefonnummer verknüpfen', qr_link: 'Stattdessen mit QR-Code verknüpfen',
      loading: 'Deine Chats werden geladen', e2e: 'Ende-zu-Ende-verschlüsselt',
      search: 'Suchen oder neuen Chat beginnen', chat_list: 'Chatliste',
      main_hint: 'Sende und empfange Nachrichten, ohne dass dein Telefon online sein muss.',
      conflict: 'WhatsApp ist in einem anderen Fenster geöffnet. Klicke auf „Hier verwenden“, um WhatsApp in diesem Fenster zu verwenden.',
      use_here: 'Hier verwenden', close: 'Schließen',
      offline_title: 'Computer nicht verbunden', offline_text: 'Stelle sicher, dass dein Computer eine aktive Internetverbindung hat.',
      connecting: 'Verbindung wird hergestellt …',
      TOS_BLOCK: 'Dieses Konto darf WhatsApp nicht verwenden',
      SMB_TOS_BLOCK: 'Dieses Konto darf WhatsApp Business nicht verwenden',
      block_text: 'Deine Telefonnummer ist für WhatsApp gesperrt. Wende dich an den Support.',
      PROXYBLOCK: 'WhatsApp ist in diesem Netzwerk blockiert',
      proxy_text: 'Dein Netzwerk oder Proxy blockiert die Verbindung zu WhatsApp.',
      deprecated: 'Diese Version von WhatsApp Web ist veraltet',
      deprecated_text: 'Lade die Seite neu, um die neueste Version zu erhalten.',
      locked_header: 'Dein Konto ist gesperrt', locked_subtext: 'Öffne WhatsApp auf deinem Telefon, um dein Konto zu entsperren.',
      pk_title: 'Verknüpfe dieses Gerät mit deinem Passkey',
      pk_prompt: 'Dein Telefon zeigt „Weiter in WhatsApp Web“. Bestätige mit deinem Passkey, dass du es bist.',
      pk_continue: 'Weiter', pk_cancel: 'Abbrechen', pk_wait: 'Warten auf deinen Passkey …',
      pk_phone_title: 'Sieh auf dein Telefon', pk_phone_text: 'Warten auf dein Telefon …',
      pk_code_title: 'Code bestätigen', pk_code_text: 'Prüfe, ob dein Telefon denselben Code anzeigt.',
      pk_confirm: 'Bestätigen', pk_error: 'Dein Passkey konnte nicht überprüft werden. Versuche es erneut.',
      pk_expired: 'Möglicherweise musst du einen anderen QR-Code scannen.',
      pc_title: 'Telefonnummer eingeben', pc_phone: 'Telefonnummer', pc_next: 'Weiter',
      pc_code_title: 'Code auf dem Telefon eingeben', pc_code_text: 'WhatsApp-Konto +{phone} wird verknüpft',
      pc_invalid: 'Ungültige Telefonnummer.', pc_refused: 'Gerät konnte nicht verknüpft werden. Prüfe die Telefonnummer.',
      pc_expired: 'Der Code ist abgelaufen.', pc_new: 'Neuen Code anfordern',
    },
  };
  function pickLanguage() {
    if (CFG.language && TEXTS[CFG.language]) return CFG.language;
    for (const tag of navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language]) {
      const code = String(tag || '').slice(0, 2).toLowerCase();
      if (TEXTS[code]) return code;
    }
    return 'en';
  }
  const LANG = pickLanguage();
  const T = TEXTS[LANG];

  // ============================================================= page state
  let mode = 'loading';   // loading|qr|qr_idle|pairing_code|passkey|linking|connected|conflict|conflict_closed|blocked|deprecated|logged_out
  let creds = null;       // {device_id, gen, key, wid} (IndexedDB wawc/user/device)
  let session = null;     // this page's session token (from its login)
  let firstSync = false;
  let lastQr = null;
  let failures = 0;
  let stopped = false;
  let presenceOverride = null;   // markAvailable/markUnavailable, else focus + visibility
  let scView = null;             // {stage, code, error} shown in the Shortcake screen
  let pairingPhone = null;
  let app = null;

  function setState(state, info, streamMode) {
    if (info) { setAttr(Stream, 'info', info); setAttr(Stream, 'displayInfo', info === 'TIMEOUT' ? 'OFFLINE' : info); }
    if (streamMode) setAttr(Stream, 'mode', streamMode);
    setAttr(Socket, 'state', state);
  }
  function setSynced(value) {
    setAttr(Socket, 'hasSynced', !!value);
    if (value && Socket.state === 'CONNECTED') setState('CONNECTED', 'NORMAL', 'MAIN');
  }
  function refreshPresence() {
    const auto = document.visibilityState === 'visible' && document.hasFocus();
    setAttr(Stream, 'available', presenceOverride === null ? auto : presenceOverride);
  }
  window.addEventListener('focus', refreshPresence);
  window.addEventListener('blur', refreshPresence);
  document.addEventListener('visibilitychange', refreshPresence);

  function report() {
    return {rb: loader.before, rc: loader.total, mode, state: Socket.state, url: location.href, lang: LANG};
  }

  // ============================================================= WPP (wa-js) API subset
  // On the real site @wppconnect/wa-js builds window.WPP out of WhatsApp's internal modules.
  // The simulator serves the part of WPP's public API that Linda's bot bridge uses, with objects
  // shaped like wa-js's: WPP.isReady, WPP.on/off, WPP.conn.*, WPP.chat.sendTextMessage(chatId,
  // text, options) and the 'chat.new_message' event with MsgModel-like messages (id {fromMe,
  // remote, id, _serialized}, from, to, author, body, type, t, notifyName, isNewMsg, isGroupMsg).
  let msgAck = null;            // highest message seq this page has handled
  const wppListeners = new Map();
  function wid(serialized) {
    const [user, server] = String(serialized).split('@');
    return {user, server, _serialized: serialized, toString() { return serialized; }};
  }
  function myWid() {
    try { const w = JSON.parse(localStorage.getItem(WID_KEY) || 'null'); return w ? w.replace(/:\d+@/, '@') : null; }
    catch (e) { return null; }
  }
  function msgModel({id, fromMe, chat, sender, body, t, name}) {
    const remote = wid(chat);
    const me = myWid();
    const group = remote.server === 'g.us';
    return {
      id: {fromMe, remote, id, _serialized: `${fromMe}_${chat}_${id}`},
      from: fromMe ? wid(me) : remote, to: fromMe ? remote : wid(me),
      author: group && !fromMe ? wid(sender) : undefined,
      body, type: 'chat', t, notifyName: name || '', isNewMsg: true, isGroupMsg: group, isStatusV3: false,
    };
  }
  function emitWpp(name, payload) {
    for (const fn of wppListeners.get(name) || []) { try { fn(payload); } catch (e) { /* a listener's bug */ } }
  }
  function authCode() {
    if (!qrKeys || !Conn.ref || (mode !== 'qr' && mode !== 'qr_idle')) return null;
    const fullCode = [Conn.ref, qrKeys.noise, qrKeys.identity, qrKeys.adv].join(',');
    return {type: 'multidevice', ref: Conn.ref, staticKeyPair: qrKeys.noise, identityKeyPair: qrKeys.identity,
            secretKey: qrKeys.adv, fullCode};
  }
  let mainReady = false;   // wa-js isMainReady(): a one-shot latch, already true on the QR screen
  const WPP = {
    __simulated: true, version: 'simulator', isInjected: true, isReady: false, isFullReady: false,
    on(name, fn) { if (!wppListeners.has(name)) wppListeners.set(name, new Set()); wppListeners.get(name).add(fn); },
    off(name, fn) { wppListeners.get(name)?.delete(fn); },
    conn: {
      isMainReady: () => mainReady,
      isAuthenticated: () => !!creds,
      isIdle: () => Socket.state === 'UNPAIRED_IDLE',
      needsUpdate: () => Socket.state === 'DEPRECATED_VERSION',
      getMyUserId: () => (myWid() ? wid(myWid()) : undefined),
      getAuthCode: async () => authCode(),
      refreshQR: () => refreshQr('refresh_qr'),
      markAvailable: async (available = true) => { if (available) Stream.markAvailable(); else Stream.markUnavailable(); return true; },
      markUnavailable: async () => { Stream.markUnavailable(); return true; },
      genLinkDeviceCodeForPhoneNumber: async (phone) => {
        if (!phone || typeof phone !== 'string') throw new Error('send_the_phone_number_to_connect');
        if (creds) throw new Error('cannot_get_code_for_already_authenticated');
        return requestPairingCode(phone, false);
      },
      logout: () => logout('user_initiated'),
    },
    chat: {
      async sendTextMessage(chatId, content, options) {
        const to = typeof chatId === 'string' ? chatId : String(chatId && (chatId._serialized || chatId));
        if (!creds || mode !== 'connected') throw new Error('WhatsApp is not connected');
        const r = await post('/_sim/api/send', {device_id: creds.device_id, secret: session, to,
                                                text: String(content)});
        if (r.status !== 'ok') throw new Error(r.message || r.status);
        const msg = msgModel({id: r.id, fromMe: true, chat: to, body: String(content), t: r.t});
        setTimeout(() => emitWpp('chat.new_message', msg), 0);  // WhatsApp adds our own message too
        return {id: msg.id._serialized, ack: r.ack, from: r.from, to, sendMsgResult: Promise.resolve({})};
      },
    },
  };
  if (CFG.wpp_api !== false) {
    // Non-writable: a real wa-js injected into this page later cannot replace the stand-in.
    Object.defineProperty(window, 'WPP', {value: WPP, writable: false, configurable: false, enumerable: true});
  }
  // Chats as the page holds them (bot API, issue 14): what the phone sent while no page was open
  // arrives in the first batch after boot as WhatsApp's offline queue does: added to its chat as
  // unread, with isNewMsg false and no chat.new_message (a bot listening only to "new" misses it;
  // WPP.chat.list/getMessages find it). Later messages fire chat.new_message and stay unread too.
  const BOOT_SECONDS = Date.now() / 1000;
  // Kept in localStorage as WhatsApp keeps its messages in IndexedDB: a reload or a browser
  // restart still has them (unread) although the server will not hand them over again.
  const CHATS_KEY = 'sim-chats';
  const chatStore = new Map();   // chatId -> {id: wid, unreadCount, t, msgs: [MsgModel]}
  function saveChats() {
    try {
      const plain = [...chatStore.values()].map((c) => ({unread: c.unreadCount, t: c.t,
        msgs: c.msgs.map((m) => m.__raw)}));
      localStorage.setItem(CHATS_KEY, JSON.stringify(plain));
    } catch (e) { /* storage full: the page goes on */ }
  }
  function storeMsg(msg, unread, raw, save = true) {
    msg.__raw = raw;
    const key = msg.id.remote._serialized;
    let chat = chatStore.get(key);
    if (!chat) { chat = {id: wid(key), name: null, unreadCount: 0, t: 0, msgs: []}; chatStore.set(key, chat); }
    chat.msgs.push(msg);
    if (chat.msgs.length > 500) chat.msgs.shift();
    chat.t = msg.t || chat.t;
    if (unread) {
      chat.unreadCount += 1;
      if (save) emitWpp('chat.unread_count_changed', {chat, unreadCount: chat.unreadCount,
                                                      previousUnreadCount: chat.unreadCount - 1});
    }
    if (save) saveChats();
  }
  try {
    for (const c of JSON.parse(localStorage.getItem(CHATS_KEY) || '[]')) {
      for (const raw of c.msgs || []) { const m = msgModel(raw); m.isNewMsg = false; storeMsg(m, false, raw, false); }
      const last = c.msgs && c.msgs[c.msgs.length - 1];
      if (last) chatStore.get(last.chat).unreadCount = c.unread || 0;
    }
  } catch (e) { /* a damaged copy: start empty */ }
  WPP.chat.list = async (opts = {}) => {
    let chats = [...chatStore.values()].sort((a, b) => b.t - a.t);
    if (opts.onlyWithUnreadMessage) chats = chats.filter((c) => c.unreadCount > 0);
    if (opts.onlyNewsletter) chats = chats.filter((c) => c.id.server === 'newsletter');
    return chats.slice(0, opts.count || chats.length);
  };
  WPP.chat.getMessages = async (chatId, opts = {}) => {
    const chat = chatStore.get(String(chatId && (chatId._serialized || chatId)));
    if (!chat) return [];
    const count = opts.count === -1 ? chat.msgs.length : (opts.count || 20);
    return chat.msgs.slice(-count);
  };
  WPP.conn.getStreamData = () => ({mode: Stream.mode || 'MAIN', info: Stream.info || 'NORMAL'});
  WPP.conn.isOnline = () => mode === 'connected';
  // tests/whatsapp_sim/messaging.py: lid → phone number, a server round trip, acks, ciphertext.
  const getJson = async (path) => (await fetch(path, {cache: 'no-store'})).json();
  WPP.contact = {
    async getPnLidEntry(id) {
      const lid = String(id && (id._serialized || id));
      const r = await getJson(`/_sim/msg/lid?lid=${encodeURIComponent(lid)}`);
      return {lid: wid(r.lid), phoneNumber: r.phoneNumber ? wid(r.phoneNumber) : undefined};
    },
    async queryExists(id) {
      const r = await getJson(`/_sim/msg/query_exists?wid=${encodeURIComponent(String(id && (id._serialized || id)))}`);
      if (r.error) throw new Error(r.error);
      return {wid: wid(r.wid)};
    },
  };
  let ackSeq = 0;
  async function ackLoop() {
    for (;;) {
      await sleep(300);
      if (mode !== 'connected') continue;
      try {
        const r = await getJson(`/_sim/msg/poll?since=${ackSeq}`);
        for (const a of r.acks || []) {
          ackSeq = Math.max(ackSeq, a.seq);
          const remote = wid(a.chat_id);
          emitWpp('chat.msg_ack_change', {ack: a.ack, chat: remote,
                                          ids: [{fromMe: true, remote, id: a.id, _serialized: `true_${a.chat_id}_${a.id}`}]});
        }
      } catch (e) { /* server away: next turn */ }
    }
  }
  if (CFG.wpp_api !== false) ackLoop();
  let receiving = Promise.resolve();
  function receive(messages) {
    const fresh = [];
    for (const m of messages) {
      if (msgAck !== null && m.seq <= msgAck) continue;
      msgAck = m.seq;
      fresh.push(m);
    }
    if (fresh.length) receiving = receiving.then(() => deliver(fresh)).catch(() => {});
  }
  async function deliver(messages) {
    let flags = {};
    try { flags = (await getJson(`/_sim/msg/flags?ids=${messages.map((m) => m.id).join(',')}`)).flags || {}; }
    catch (e) { flags = {}; }
    for (const m of messages) {
      const raw = {id: m.id, fromMe: false, chat: m.chat_id, sender: m.sender, body: m.text, t: m.t, name: m.name};
      const msg = msgModel(raw);
      const backlog = typeof m.t === 'number' && m.t < Math.floor(BOOT_SECONDS);
      if (backlog) msg.isNewMsg = false;
      storeMsg(msg, true, raw);
      if (backlog) continue;
      if ((flags[m.id] || {}).ciphertext) {
        // WhatsApp adds the message before it can decrypt it, then again (same id) once it has.
        emitWpp('chat.new_message', {...msg, type: 'ciphertext', body: undefined});
        await sleep(300);
      }
      emitWpp('chat.new_message', msg);
    }
  }

  // ============================================================= storage
  function idbOpen() {
    return new Promise((resolve, reject) => {
      const req = indexedDB.open('wawc', 1);
      req.onupgradeneeded = () => req.result.createObjectStore('user');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }
  async function idbGet() {
    const db = await idbOpen();
    return new Promise((resolve, reject) => {
      const req = db.transaction('user', 'readonly').objectStore('user').get('device');
      req.onsuccess = () => { db.close(); resolve(req.result || null); };
      req.onerror = () => { db.close(); reject(req.error); };
    });
  }
  async function idbPut(value) {
    const db = await idbOpen();
    return new Promise((resolve, reject) => {
      const tx = db.transaction('user', 'readwrite');
      tx.objectStore('user').put(value, 'device');
      tx.oncomplete = () => { db.close(); resolve(); };
      tx.onerror = () => { db.close(); reject(tx.error); };
    });
  }
  function idbOpenNamed(name) {
    return new Promise((resolve, reject) => {
      const req = indexedDB.open(name, 1);
      req.onupgradeneeded = () => req.result.createObjectStore('keys');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }
  async function hasDatabase() {
    try { return (await indexedDB.databases()).some((d) => d.name === 'wawc'); } catch (e) { return true; }
  }
  async function wipe() {
    try { localStorage.clear(); sessionStorage.clear(); } catch (e) { /* ignore */ }
    for (const name of ['wawc', 'signal-storage', 'model-storage']) {
      await new Promise((resolve) => {
        const req = indexedDB.deleteDatabase(name);
        req.onsuccess = req.onerror = req.onblocked = () => resolve();
      });
    }
    (await idbOpen()).close();   // the page initialises empty storage again (so no "fresh" boot next)
  }

  // ============================================================= server
  async function post(path, body) {
    const res = await fetch(path, {method: 'POST', headers: {'Content-Type': 'application/json'},
                                   body: JSON.stringify(Object.assign({page_id: PAGE_ID}, body || {})),
                                   cache: 'no-store'});
    return res.json();
  }
  async function postRetry(path, body) {  // the server may be restarting: keep trying
    for (;;) {
      try { return await post(path, body); } catch (e) { await sleep(300); }
    }
  }
  function beacon(path, body) {
    navigator.sendBeacon(path, new Blob([JSON.stringify(Object.assign({page_id: PAGE_ID, report: report()}, body || {}))],
                                        {type: 'application/json'}));
  }
  function countClick(label, testid) { post('/_sim/api/click', {label, testid: !!testid}).catch(() => {}); }

  // ============================================================= views
  function el(html) { const t = document.createElement('template'); t.innerHTML = html.trim(); return t.content.firstChild; }
  function show(node) { app.replaceChildren(node); }
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c]));
  const WORDMARK = '<span data-icon="wa-wordmark-refreshed" class="wordmark"><svg viewBox="0 0 104 28" width="104" height="28">' +
    '<title>wa-wordmark-refreshed</title><text x="0" y="21" font-size="20" fill="#25d366">WhatsApp</text></svg></span>';

  function renderSplash(pct, text) {
    let box = document.getElementById('wa_web_initial_startup');
    if (!box) {
      box = el('<div id="wa_web_initial_startup" class="startup"><progress value="0" max="100"></progress></div>');
      show(box);
    }
    box.querySelector('progress').value = pct;
    if (text !== undefined) {
      let line = box.querySelector('.loading-text');
      if (!line) {
        line = el('<div class="loading-text"></div>');
        box.appendChild(line);
        box.appendChild(el(`<div class="lock">${esc(T.e2e)}</div>`));
      }
      line.textContent = text ? `${text} [${pct}%]` : '';
    }
  }
  function animateSplash(seconds, withText) {
    const total = Math.max(0, seconds * 1000);
    const start = performance.now();
    return new Promise((resolve) => {
      const step = () => {
        const pct = total ? Math.min(100, Math.floor(((performance.now() - start) / total) * 100)) : 100;
        renderSplash(pct, withText ? T.loading : undefined);
        if (pct >= 100) resolve(); else setTimeout(step, 50);
      };
      step();
    });
  }

  function drawQr(canvas, payload) {
    const ctx = canvas.getContext('2d');
    const n = 33, cell = 8;
    canvas.width = canvas.height = n * cell;
    ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = '#122e31';
    let h = 2166136261;
    for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) {
      h ^= payload.charCodeAt((x + y * n) % payload.length); h = Math.imul(h, 16777619);
      const finder = (x < 7 && y < 7) || (x > n - 8 && y < 7) || (x < 7 && y > n - 8);
      const on = finder ? (x % 6 === 0 || y % 6 === 0 || (x % 6 > 1 && x % 6 < 5 && y % 6 > 1 && y % 6 < 5)) : (h & 1);
      if (on) ctx.fillRect(x * cell, y * cell, cell, cell);
    }
  }
  function landingNotice() {
    // The post-logout texts of an account_locked logout (logout_reason=3) come in the URL.
    const params = new URLSearchParams(location.search);
    const header = params.get('logout_message_header');
    if (!header) return '';
    return `<div role="alert" class="notice"><strong>${esc(header)}</strong><span>${esc(params.get('logout_message_subtext') || '')}</span></div>`;
  }
  function qrBox() {
    const inner = `<canvas aria-label="${esc(T.qr_label)}" role="img"></canvas>`;
    return CFG.qr_data_ref ? `<div data-ref="" class="qr">${inner}</div>` : `<div class="qr">${inner}</div>`;
  }
  function renderLanding(notice) {
    const view = el(`<div class="landing-wrapper">${WORDMARK}<div class="landing">${landingNotice()}` +
      (notice ? `<div role="alert" class="notice">${esc(notice)}</div>` : '') +
      `<div><h1>${esc(T.login_title)}</h1><ol><li>${esc(T.step1)}</li><li>${esc(T.step2)}</li>` +
      `<li>${esc(T.step3)}</li><li>${esc(T.step4)}</li></ol>` +
      `<span role="button" tabindex="0" class="phone-link">${esc(T.phone_link)}</span></div>${qrBox()}</div></div>`);
    view.querySelector('.phone-link').addEventListener('click', () => { countClick('link_with_phone_number'); renderPhoneForm(); });
    show(view);
    return view.querySelector('.qr');
  }
  function qrContainer(notice) {
    const box = app.querySelector('.landing .qr');
    return box && !notice ? box : renderLanding(notice);
  }
  function showQr(r, notice) {
    if (!r.qr) { renderQrIdle(r); return; }
    lastQr = r.qr;
    mode = 'qr';
    qrKeys = r.keys || qrKeys;
    if (qrKeys) {   // the noise key pair exists before any link (so WANoiseInfo alone is no "linked")
      localStorage.setItem('WANoiseInfo', JSON.stringify({staticKeyPair: {pubKey: qrKeys.noise}}));
      localStorage.setItem('WANoiseInfoIv', JSON.stringify(bytesToB64(crypto.getRandomValues(new Uint8Array(12)))));
    }
    const box = qrContainer(notice);
    box.classList.remove('idle');
    box.querySelector('button')?.remove();
    if (CFG.qr_data_ref) box.setAttribute('data-ref', r.qr);
    drawQr(box.querySelector('canvas'), r.qr);
    setState('UNPAIRED', 'NORMAL', 'QR');
    setAttr(Conn, 'ref', r.ref);
    emitWpp('conn.auth_code_change', authCode());
  }
  function renderQrIdle(r) {
    mode = 'qr_idle';
    const box = qrContainer();
    box.classList.add('idle');
    if (!box.querySelector('button')) {
      const button = el(`<button aria-label="${esc(T.reload_qr)}"><span>${esc(T.reload_qr)}</span></button>`);
      button.addEventListener('click', () => { countClick('reload_qr'); button.disabled = true; refreshQr('click'); });
      box.appendChild(button);
    }
    setState('UNPAIRED_IDLE', 'NORMAL', 'QR');
    emitWpp('conn.qrcode_idle');
    void r;
  }
  async function refreshQr(via) {
    if (mode !== 'qr' && mode !== 'qr_idle') return;
    const r = await postRetry('/_sim/api/qr', {via});
    showQr(r);
  }
  async function enterQr(notice) {
    mode = 'qr';
    const r = await postRetry('/_sim/api/qr');
    showQr(r, notice);
  }

  // ---- pairing code ("Link with phone number instead")
  function renderPhoneForm(message) {
    mode = 'pairing_code';
    const view = el(`<div class="landing-wrapper">${WORDMARK}<div class="landing pairing-form"><div>` +
      `<h1>${esc(T.pc_title)}</h1><input type="tel" autocomplete="tel" aria-label="${esc(T.pc_phone)}" value="${esc(pairingPhone || '')}">` +
      (message ? `<div role="alert" class="notice">${esc(message)}</div>` : '') +
      `<button type="button" class="next">${esc(T.pc_next)}</button>` +
      `<span role="button" tabindex="0" class="qr-link">${esc(T.qr_link)}</span></div></div></div>`);
    view.querySelector('.next').addEventListener('click', () => {
      countClick('pairing_next');
      requestPairingCode(view.querySelector('input').value, true).catch(() => {});
    });
    view.querySelector('.qr-link').addEventListener('click', () => { countClick('link_with_qr_code'); enterQr(); });
    show(view);
  }
  function renderPairingCode(code) {
    mode = 'pairing_code';
    const shown = `${code.slice(0, 4)}-${code.slice(4)}`;
    const cells = [...shown].map((c) => (c === '-' ? '<span class="dash">-</span>' : `<span>${esc(c)}</span>`)).join('');
    const view = el(`<div class="landing-wrapper">${WORDMARK}<div class="landing pairing-code"><div>` +
      `<h1>${esc(T.pc_code_title)}</h1><p>${esc(T.pc_code_text.replace('{phone}', pairingPhone))}</p>` +
      `<div class="link-code" data-link-code="${esc(shown)}" aria-label="${esc(shown)}">${cells}</div>` +
      `<div class="expired" hidden><div role="alert">${esc(T.pc_expired)}</div>` +
      `<button type="button" class="new-code">${esc(T.pc_new)}</button></div>` +
      `<span role="button" tabindex="0" class="qr-link">${esc(T.qr_link)}</span></div></div></div>`);
    view.querySelector('.new-code').addEventListener('click', () => {
      countClick('pairing_new_code');
      requestPairingCode(pairingPhone, true).catch(() => {});
    });
    view.querySelector('.qr-link').addEventListener('click', () => { countClick('link_with_qr_code'); enterQr(); });
    show(view);
  }
  async function requestPairingCode(phone, fromForm) {
    if (!['qr', 'qr_idle', 'pairing_code'].includes(mode)) throw new Error('not_on_the_qr_screen');
    pairingPhone = String(phone || '').replace(/[^\d]/g, '');
    const r = await postRetry('/_sim/api/pairing_code', {phone: String(phone || '')});
    if (r.status !== 'ok') {
      renderPhoneForm(r.status === 'invalid_phone' ? T.pc_invalid : T.pc_refused);
      throw new Error(r.status);
    }
    renderPairingCode(r.code);
    void fromForm;
    return r.code;
  }

  // ---- passkey ("Shortcake")
  function isHeadless() {
    // A headless window has no browser frame: its outer size equals its viewport.
    return /HeadlessChrome/.test(navigator.userAgent) ||
      (window.outerHeight <= window.innerHeight && window.outerWidth <= window.innerWidth);
  }
  function setStage(stage, extra) {
    scView = Object.assign({stage, code: null, error: null}, extra || {});
    setAttr(Shortcake, 'code', scView.code);
    setAttr(Shortcake, 'error', scView.error);
    setAttr(Shortcake, 'stage', stage);
    renderShortcake();
  }
  function renderShortcake() {
    mode = 'passkey';
    const s = scView;
    let card;
    if (s.stage === 'prompt' || s.stage === 'webauthn') {
      card = `<div data-testid="shortcake_passkey_prompt_card" class="card"><h1>${esc(T.pk_title)}</h1><p>${esc(T.pk_prompt)}</p>` +
        (s.error && s.stage === 'prompt' ? `<div role="alert" class="notice">${esc(T.pk_error)}</div>` : '') +
        (s.stage === 'webauthn' ? `<p class="hint" aria-live="polite">${esc(T.pk_wait)}</p>` : '') +
        `<button type="button" data-testid="shortcake_passkey_continue_button">${esc(T.pk_continue)}</button></div>`;
    } else if (s.stage === 'waiting_for_phone') {
      card = `<div data-testid="shortcake_waiting_for_phone_card" class="card"><h1>${esc(T.pk_phone_title)}</h1>` +
        `<p>${esc(T.pk_phone_text)}</p></div>`;
    } else {
      card = `<div data-testid="shortcake_code_matching_card" class="card"><h1>${esc(T.pk_code_title)}</h1>` +
        `<p>${esc(T.pk_code_text)}</p><div data-testid="shortcake_verification_code_display" role="status" class="link-code">` +
        `${esc(s.code || '')}</div><button type="button" data-testid="shortcake_code_confirm_button">${esc(T.pk_confirm)}</button></div>`;
    }
    const view = el(`<div data-testid="shortcake_passkey_screen" class="shortcake">${WORDMARK}${card}` +
      `<button type="button" data-testid="shortcake_cancel_button" class="cancel">${esc(T.pk_cancel)}</button></div>`);
    view.querySelector('[data-testid="shortcake_passkey_continue_button"]')?.addEventListener('click', onContinue);
    view.querySelector('[data-testid="shortcake_code_confirm_button"]')?.addEventListener('click', async () => {
      countClick('shortcake_code_confirm_button', true);
      await postRetry('/_sim/api/shortcake', {action: 'confirm'});
    });
    view.querySelector('[data-testid="shortcake_cancel_button"]').addEventListener('click', async () => {
      countClick('shortcake_cancel_button', true);
      await postRetry('/_sim/api/shortcake', {action: 'cancel'});
      scView = null;
      setAttr(Shortcake, 'stage', null);
      await enterQr();
    });
    show(view);
  }
  let scChallenge = null;
  async function onContinue() {
    countClick('shortcake_passkey_continue_button', true);
    if (!scView || scView.stage !== 'prompt') return;
    setStage('webauthn');
    if (isHeadless()) return;   // WebAuthn cannot complete headless: the stage times out
    const mine = scView;
    try {
      const cred = await navigator.credentials.get({publicKey: {
        rpId: location.hostname, challenge: b64urlToBytes(scChallenge), userVerification: 'required', timeout: 600000}});
      if (scView !== mine) return;   // the stage timed out or was cancelled meanwhile
      const r = await post('/_sim/api/shortcake', {action: 'assertion', id: cred.id,
        clientDataJSON: b64url(cred.response.clientDataJSON), authenticatorData: b64url(cred.response.authenticatorData),
        signature: b64url(cred.response.signature)});
      if (r.status === 'refused') setStage('prompt', {error: r.error});
      else if (r.status === 'waiting_for_phone') setStage('waiting_for_phone');
    } catch (e) {
      if (scView !== mine) return;
      await post('/_sim/api/shortcake', {action: 'error', name: e && e.name}).catch(() => {});
      setStage('prompt', {error: (e && e.name) || 'error'});
    }
  }
  function onShortcake(sc) {
    if (sc.stage === 'expired') {
      scView = null;
      setAttr(Shortcake, 'stage', null);
      return 'expired';
    }
    scChallenge = sc.challenge;
    if (!scView) {   // the prologue arrived: the page regenerated its ADV secret; the QR is gone
      qrKeys = null;
      setAttr(Conn, 'ref', null);
      setState('UNPAIRED', 'NORMAL', 'QR');
      setStage('prompt', {error: sc.error});
      return null;
    }
    if (scView.stage === 'webauthn' && sc.stage === 'prompt') return null;   // the browser is asking
    if (scView.stage !== sc.stage || scView.code !== (sc.code || null) || scView.error !== (sc.error || null)) {
      setStage(sc.stage, {code: sc.code || null, error: sc.error || null});
    }
    return null;
  }

  // ---- connected
  function renderChatList() {
    const names = ['Alice', 'Bob', 'Family', 'Work'];
    const count = Math.max(0, CFG.chat_rows | 0);
    const rows = [];
    for (let i = 0; i < count; i++) {
      const name = i < names.length ? names[i] : `Chat ${i + 1}`;
      rows.push(`<div role="row" aria-rowindex="${i + 1}"><div role="gridcell"><span title="${name}">${name}</span></div></div>`);
    }
    show(el(`<div class="two"><div id="side"><header>${WORDMARK}` +
      `<input type="text" aria-label="${esc(T.search)}" placeholder="${esc(T.search)}" title="${esc(T.search)}">` +
      `</header><div id="pane-side"><div aria-label="${esc(T.chat_list)}" role="grid" aria-rowcount="${count}">` +
      rows.join('') + `</div></div></div><div id="main"><p>${esc(T.main_hint)}</p></div></div>`));
  }
  function setBanner(kind) {
    const side = document.getElementById('side');
    if (!side) return;
    const current = side.querySelector('.banner');
    if ((current ? current.dataset.kind : null) === (kind || null)) return;
    current?.remove();
    if (kind === 'offline') setState('TIMEOUT', 'OFFLINE', 'MAIN');
    else if (kind === 'connecting') setState('OPENING', 'CONNECTING', 'MAIN');
    else if (mode === 'connected') setState('CONNECTED', Socket.hasSynced ? 'NORMAL' : (firstSync ? 'SYNCING' : 'RESUMING'), 'MAIN');
    if (!kind) return;
    const html = kind === 'offline'
      ? `<div class="banner" data-kind="offline"><span>${esc(T.offline_title)}</span><span>${esc(T.offline_text)}</span></div>`
      : `<div class="banner" data-kind="connecting"><span>${esc(T.connecting)}</span></div>`;
    side.insertBefore(el(html), side.querySelector('#pane-side'));
  }

  // ---- conflict
  async function takeOver(via) {
    if (mode !== 'conflict' && mode !== 'conflict_closed') return false;
    const r = await postRetry('/_sim/api/use_here', {via});
    if (r.status === 'revoked') { await logout(r.reason || 'unknown_companion'); return false; }
    document.querySelector('.modal-backdrop')?.remove();
    if (!document.getElementById('pane-side')) renderChatList();
    mode = 'connected';
    setState('CONNECTED', Socket.hasSynced ? 'NORMAL' : 'RESUMING', 'MAIN');
    return true;
  }
  function showConflict() {
    mode = 'conflict';
    setState('CONFLICT', 'NORMAL', 'CONFLICT');
    if (document.querySelector('.modal-backdrop')) return;
    const modal = el('<div class="modal-backdrop"><div role="dialog" data-animate-modal-popup="true">' +
      `<div class="text">${esc(T.conflict)}</div><div class="actions">` +
      `<button type="button" class="close">${esc(T.close)}</button><button type="button" class="use-here">${esc(T.use_here)}</button>` +
      '</div></div></div>');
    const useHere = () => { countClick('use_here'); takeOver('click'); };
    modal.querySelector('.use-here').addEventListener('click', useHere);
    modal.querySelector('.close').addEventListener('click', async () => {
      countClick('close_conflict');
      await postRetry('/_sim/api/close_conflict');
      mode = 'conflict_closed';
      const view = el(`<div class="closed">${WORDMARK}<div class="text">${esc(T.conflict)}</div>` +
                      `<button type="button" class="use-here">${esc(T.use_here)}</button></div>`);
      view.querySelector('.use-here').addEventListener('click', useHere);
      show(view);
    });
    document.body.appendChild(modal);
  }

  // ---- blocked, deprecated
  function renderBlocked(kind) {
    if (mode === 'blocked' && Socket.state === kind) return;
    mode = 'blocked';
    setState(kind, 'NORMAL', kind);
    const text = kind === 'PROXYBLOCK' ? T.proxy_text : T.block_text;
    show(el(`<div class="closed blocked">${WORDMARK}<h1>${esc(T[kind])}</h1><p>${esc(text)}</p></div>`));
  }
  function renderDeprecated() {
    mode = 'deprecated';
    setState('DEPRECATED_VERSION', 'NORMAL', 'DEPRECATED_VERSION');
    emitWpp('conn.needs_update');
    show(el(`<div class="closed deprecated">${WORDMARK}<h1>${esc(T.deprecated)}</h1><p>${esc(T.deprecated_text)}</p></div>`));
  }

  // ============================================================= logout
  // Like WAWebReloadAfterLogout.reloadAfterLogout: post_logout=1 (always, or only when clearing
  // storage failed: post_logout_variant), logout_reason=<code> only when the reason has one.
  function reloadAfterLogout(errorDuringStorageClear, reason, msg) {
    emitWpp('conn.logout_reason', reason);
    const code = loader.modules.WAWebLogoutReason.getErrorCodeFromLogoutReason(reason);  // looked up now: hooks see it
    const url = new URL(location.href);
    for (const k of ['post_logout', 'logout_reason', 'logout_message_header', 'logout_message_subtext']) url.searchParams.delete(k);
    if (CFG.post_logout_variant === 'always' || errorDuringStorageClear) url.searchParams.set('post_logout', '1');
    if (code !== null && code !== undefined) url.searchParams.set('logout_reason', code);
    if (code === '3' && msg) {
      url.searchParams.set('logout_message_header', msg.header);
      url.searchParams.set('logout_message_subtext', msg.subtext);
    }
    setTimeout(() => location.replace(url.pathname + url.search), 100);
  }
  async function logout(reason) {
    if (stopped) return;
    stopped = true;
    mode = 'logged_out';
    const code = Object.prototype.hasOwnProperty.call(CODE_OF_REASON, reason) ? CODE_OF_REASON[reason] : null;
    if (loader.booted) { Cmd.trigger('logout'); emitWpp('conn.logout'); }
    try {
      await post('/_sim/api/logout', {device_id: creds && creds.device_id, reason, code, report: report()});
    } catch (e) { /* the server may be gone */ }
    let failed = false;
    try { await wipe(); } catch (e) { failed = true; }
    const msg = reason === 'account_locked' ? {header: T.locked_header, subtext: T.locked_subtext} : null;
    loader.modules.WAWebReloadAfterLogout.reloadAfterLogout(failed, reason, msg);
  }

  // ============================================================= flows
  async function login() {
    const r = await postRetry('/_sim/api/login', {device_id: creds.device_id, gen: creds.gen, key: creds.key,
                                                  salt: localStorage.getItem(SALT_KEY)});
    if (r.status === 'blocked') { renderBlocked(r.reason); return false; }
    if (r.status !== 'ok') { await logout(r.reason || ''); return false; }
    creds = r.creds;
    session = r.session;
    firstSync = !!r.first_sync;
    await idbPut(creds);   // the next key generation
    return true;
  }
  async function resumeLinked() {   // UNLAUNCHED -> OPENING -> PAIRING -> CONNECTED
    const part = Math.max(0, CFG.loading_seconds) / 4;   // UNLAUNCHED had the first quarter
    setState('OPENING', 'OPENING', 'SYNCING');
    await animateSplash(part, true);
    setState('PAIRING', 'PAIRING', 'SYNCING');
    await animateSplash(part * 2, true);
    if (!await login()) return false;   // the server's answer ends PAIRING
    connected();
    return true;
  }
  function connected() {
    mode = 'connected';
    setAttr(Socket, 'hasSynced', false);
    setAttr(Conn, 'wid', creds.wid ? wid(creds.wid.replace(/:\d+@/, '@')) : null);
    setAttr(Conn, 'connected', true);
    setAttr(Conn, 'ref', null);
    setState('CONNECTED', firstSync ? 'SYNCING' : 'RESUMING', 'MAIN');
    renderChatList();
    refreshPresence();
  }
  async function acceptLink(link) {
    mode = 'linking';
    scView = null;
    setAttr(Shortcake, 'stage', null);
    creds = {device_id: link.device_id, gen: link.gen, key: link.key, wid: link.wid};
    await idbPut(creds);
    localStorage.setItem(SALT_KEY, link.salt);
    localStorage.setItem(WID_KEY, JSON.stringify(link.wid));   // with WANoiseInfo: "logged in" (§6)
    localStorage.setItem('WALid', JSON.stringify(link.lid));
    for (const name of ['signal-storage', 'model-storage']) (await idbOpenNamed(name)).close();
    await resumeLinked();
  }
  async function resume() {  // the server forgot this page (it restarted)
    if (creds && ['connected', 'conflict', 'conflict_closed'].includes(mode)) {
      const keep = mode;
      const r = await postRetry('/_sim/api/login', {device_id: creds.device_id, gen: creds.gen, key: creds.key,
                                                    salt: localStorage.getItem(SALT_KEY)});
      if (r.status === 'blocked') { renderBlocked(r.reason); return; }
      if (r.status !== 'ok') { await logout(r.reason || ''); return; }
      creds = r.creds; session = r.session;
      await idbPut(creds);
      if (keep !== 'connected') mode = keep;
    } else if (['qr', 'qr_idle', 'passkey', 'pairing_code'].includes(mode)) {
      scView = null;
      await enterQr();
    } else {
      await postRetry('/_sim/api/hello', {report: report()});
    }
  }

  async function pollOnce() {
    let r;
    try {
      const ack = msgAck === null ? '' : `&ack=${msgAck}`;
      const vis = document.visibilityState === 'visible' ? 1 : 0;
      const av = mode === 'connected' ? `&av=${Stream.available ? 1 : 0}` : '';
      const res = await fetch(`/_sim/api/poll?page_id=${PAGE_ID}&mode=${mode}&state=${Socket.state}` +
                              `&rb=${loader.before}&rc=${loader.total}&vis=${vis}${av}${ack}`, {cache: 'no-store'});
      r = await res.json();
      failures = 0;
    } catch (e) {
      failures += 1;
      if (mode === 'connected' || mode === 'conflict') setBanner(failures >= 5 ? 'offline' : 'connecting');
      return;
    }
    if (!r.known) { await resume(); return; }
    if (r.revoked !== undefined && creds) { await logout(r.revoked); return; }
    if (r.block) { renderBlocked(r.block); return; }
    if (mode === 'blocked') return;
    if (r.link && ['qr', 'qr_idle', 'pairing_code', 'passkey'].includes(mode)) { acceptLink(r.link); return; }
    if (r.shortcake) {
      if (onShortcake(r.shortcake) === 'expired') { showQr(r, T.pk_expired); return; }
    }
    if (mode === 'qr' || mode === 'qr_idle') {
      if (r.idle) { if (mode !== 'qr_idle') renderQrIdle(r); }
      else if (r.qr && (r.qr !== lastQr || mode !== 'qr')) showQr(r);
    }
    if (mode === 'pairing_code' && r.pairing_expired) {
      app.querySelector('.pairing-code .expired')?.removeAttribute('hidden');
    }
    if (mode === 'connected' || mode === 'conflict') {
      if (r.synced && !Socket.hasSynced) setSynced(true);
      if (r.messages && mode === 'connected') receive(r.messages);
      setBanner(r.offline ? 'offline' : null);
      if (r.conflict && mode === 'connected') showConflict();
    }
  }
  async function pollLoop() {
    while (!stopped) {
      try { await pollOnce(); } catch (e) { /* keep polling */ }
      await sleep(CFG.poll_ms || 150);
    }
  }

  function boot() {   // the module graph is ready
    window.Debug = {VERSION};
    loader.booted = true;
    mainReady = true;
    WPP.isReady = true;
    WPP.isFullReady = true;
    emitWpp('conn.main_init');
    setState('UNLAUNCHED', 'OFFLINE', 'OFFLINE');
  }

  async function main() {
    app = document.getElementById('app');
    document.documentElement.lang = LANG;
    if (/HeadlessChrome/.test(navigator.userAgent)) {  // same check as the server's
      show(el(`<div class="unsupported"><h1>WhatsApp works with Google Chrome 100+</h1></div>`));
      return;
    }
    window.addEventListener('pagehide', () => { if (!stopped) beacon('/_sim/api/bye'); });
    renderSplash(0);
    const fresh = CFG.fresh_redirect && !new URLSearchParams(location.search).has('post_logout') &&
      localStorage.length === 0 && !await hasDatabase();
    if (fresh) {   // a never-used profile boots through ?post_logout=1&logout_reason=0 (field report)
      (await idbOpen()).close();
      stopped = true;
      beacon('/_sim/api/bye');
      location.replace('/?post_logout=1&logout_reason=0');
      return;
    }
    const hello = await postRetry('/_sim/api/hello', {report: report()});
    await animateSplash(CFG.boot_seconds, false);
    boot();
    pollLoop();
    if (hello.block === 'DEPRECATED_VERSION') { renderDeprecated(); return; }
    if (hello.block) { renderBlocked(hello.block); return; }
    try { creds = await idbGet(); } catch (e) { creds = null; }
    await sleep(Math.max(0, CFG.loading_seconds) * 250);   // UNLAUNCHED: the socket is not open yet
    if (creds && !localStorage.getItem(SALT_KEY)) { await logout('missing_enc_salt'); return; }
    if (creds) {
      await resumeLinked();
    } else {
      setState('OPENING', 'OPENING', 'OFFLINE');
      await enterQr();
    }
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', main);
  else main();
})();
