// detectflow live page: cameras, their latest boxes over the latest frame, and stats.
//
// Reads only the public API, so it is also a small example client:
//   GET  api/v1/detections/live?min_confidence=0   what every camera sees now
//   WS   api/v1/detections/ws/{client_id}          {"type":"subscribe"} -> detection/event broadcasts
//   GET  api/v1/detections/frames/{frame_id}       the frame's image, when the server kept it
//   GET  api/v1/detections/summary, WS get_stats    counts and queue stats
//   GET  api/v1/cameras/status                     each configured camera's status, polled
// A ?token=KEY in the page's URL is sent as a bearer token (REST) and in a first
// {"type":"auth"} message (WebSocket: browsers cannot set its headers).
// Every URL is relative to the page, so it also works behind a proxy under a path prefix.
"use strict";

(() => {
  const API = "api/v1/detections";
  const CAMERAS_API = "api/v1/cameras";
  const STATUS_EVERY_MS = 2000; // the flow writes a camera's status every 2 s
  const STATS_EVERY_MS = 5000;
  const STATS_SOON_MS = 1000;
  const RESOLVE_DELAY_MS = 200;
  const MAX_EVENTS = 12;
  const token = new URLSearchParams(window.location.search).get("token");
  const clientId = "page-" + Math.random().toString(36).slice(2, 10);

  const cameras = new Map(); // camera_id -> camera view (see makeCamera)
  const counts = { received: 0, events: 0, lagged: 0 };
  let socket = null;
  let retryMs = 500;
  let statsTimer = null;
  let statsSoon = null;

  const $ = (id) => document.getElementById(id);

  // -- talking to the server -------------------------------------------------------

  function authHeaders() {
    return token ? { Authorization: "Bearer " + token } : {};
  }

  async function getJson(path) {
    const response = await fetch(path, { headers: authHeaders(), cache: "no-store" });
    if (response.status === 401 || response.status === 403) {
      notice(token
        ? "The server refused this page's key (" + response.status + "): open the page as /?token=YOUR_KEY with a valid read key."
        : "This server needs an API key: open the page as /?token=YOUR_KEY.");
      throw new Error("not authorized");
    }
    if (!response.ok) throw new Error(path + " answered " + response.status);
    return (await response.json()).data;
  }

  function socketUrl() {
    const url = new URL(API + "/ws/" + clientId, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.toString(); // the key goes in the first message, not in a URL that gets logged
  }

  function connect() {
    setConnection("connecting");
    const ws = new WebSocket(socketUrl());
    socket = ws;
    ws.addEventListener("open", () => {
      retryMs = 500;
      if (token) ws.send(JSON.stringify({ type: "auth", token }));
      ws.send(JSON.stringify({ type: "subscribe" }));
      ws.send(JSON.stringify({ type: "get_stats" }));
      clearInterval(statsTimer);
      statsTimer = setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "get_stats" }));
        refreshSummary();
      }, STATS_EVERY_MS);
    });
    ws.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (_) {
        return; // the server only sends JSON; ignore anything else rather than break the page
      }
      onMessage(message);
    });
    ws.addEventListener("close", (event) => {
      if (socket !== ws) return;
      clearInterval(statsTimer);
      if (event.code === 4401) { // the key is missing or wrong: retrying cannot help
        setConnection("refused");
        notice("The live feed was refused: open the page as /?token=YOUR_KEY with a valid read key.");
        return;
      }
      setConnection("reconnecting");
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 10000);
    });
  }

  function onMessage(message) {
    switch (message.type) {
      case "detection":
        counts.received += 1;
        onDetection(message);
        scheduleStats();
        break;
      case "event":
        counts.events += 1;
        onEvent(message);
        break;
      case "subscription":
        setConnection("live");
        applySnapshot(message.current_detections || []);
        break;
      case "stats":
        showQueue(message.queue_stats);
        break;
      case "lagged":
        counts.lagged += message.dropped || 0;
        $("lagged").textContent = counts.lagged + " broadcasts dropped because this page fell behind";
        break;
      case "error":
        if (message.code === "unauthorized" || message.code === "forbidden") {
          notice("The live feed needs an API key: open the page as /?token=YOUR_KEY.");
        }
        break;
      default:
        break;
    }
    showCounts();
  }

  // -- cameras and their frames ----------------------------------------------------

  function timeOf(text) {
    const ms = Date.parse(text || "");
    return Number.isNaN(ms) ? 0 : ms;
  }

  function makeCamera(cameraId) {
    const card = document.createElement("article");
    card.className = "camera";
    card.dataset.cameraId = cameraId;

    const title = document.createElement("h2");
    title.className = "camera__title";
    title.textContent = cameraId;

    const stage = document.createElement("div");
    stage.className = "stage";
    const img = document.createElement("img");
    img.className = "stage__image";
    img.alt = "latest frame of " + cameraId;
    img.hidden = true;
    const placeholder = document.createElement("div");
    placeholder.className = "stage__placeholder";
    placeholder.textContent = "no image kept for this frame";
    const boxes = document.createElement("div");
    boxes.className = "stage__boxes";
    stage.append(img, placeholder, boxes);

    const status = document.createElement("p");
    status.className = "camera__status";
    status.dataset.status = "unknown";
    status.textContent = "status unknown";
    const error = document.createElement("p");
    error.className = "camera__error";
    error.hidden = true;

    const meta = document.createElement("p");
    meta.className = "camera__meta";

    card.append(title, status, error, stage, meta);
    const list = $("cameras");
    const after = [...list.querySelectorAll(".camera")].find((el) => el.dataset.cameraId > cameraId);
    list.insertBefore(card, after || null);
    $("no-cameras").hidden = true;

    const camera = {
      id: cameraId, card, stage, img, placeholder, boxes, meta, status, error,
      frameKey: null, frameId: null, frameTime: 0, detections: new Map(),
      imageFrameId: null, imageUrl: null, loading: null, resolveTimer: null, updated: 0,
    };
    img.addEventListener("load", () => {
      if (img.naturalWidth && img.naturalHeight) {
        stage.style.aspectRatio = img.naturalWidth + " / " + img.naturalHeight;
      }
    });
    cameras.set(cameraId, camera);
    return camera;
  }

  function cameraFor(cameraId) {
    return cameras.get(cameraId) || makeCamera(cameraId);
  }

  // A newer frame replaces the boxes; a late, older one is ignored. Returns false if ignored.
  function enterFrame(camera, key, frameId, time) {
    if (camera.frameKey === key) return true;
    if (camera.frameKey !== null && time < camera.frameTime) return false;
    camera.frameKey = key;
    camera.frameTime = time;
    camera.detections.clear();
    setFrameId(camera, frameId);
    return true;
  }

  function setFrameId(camera, frameId) {
    camera.frameId = frameId;
    if (frameId) camera.card.dataset.frameId = frameId;
    else delete camera.card.dataset.frameId;
  }

  function onDetection(message) {
    if (typeof message.camera_id !== "string" || !message.bbox) return;
    const camera = cameraFor(message.camera_id);
    const time = timeOf(message.timestamp);
    // Broadcasts carry no frame id (yet): the detections of one frame share its timestamp.
    const key = message.frame_id ? "f:" + message.frame_id : "t:" + message.timestamp;
    if (!enterFrame(camera, key, message.frame_id || null, time)) return;
    const previous = camera.detections.get(message.detection_id);
    camera.detections.set(message.detection_id, {
      id: message.detection_id,
      type: message.detection_type,
      label: previous ? previous.label : message.detection_type,
      confidence: message.confidence,
      bbox: message.bbox,
    });
    camera.updated = Date.now();
    render(camera);
    if (camera.frameId) loadFrame(camera, camera.frameId);
    else scheduleResolve(camera);
  }

  // Ask the live view which frame these boxes belong to (and their labels). Throttled, not
  // debounced: a camera streaming faster than the delay would otherwise never be resolved.
  function scheduleResolve(camera) {
    if (camera.resolveTimer) return;
    camera.resolveTimer = setTimeout(async () => {
      camera.resolveTimer = null;
      try {
        const data = await getJson(API + "/live?min_confidence=0&limit=1000&camera_id=" + encodeURIComponent(camera.id));
        applySnapshot(data.detections || []);
      } catch (error) {
        console.warn("live lookup for", camera.id, "failed:", error);
      }
    }, RESOLVE_DELAY_MS);
  }

  // Full detection dicts (REST /live, subscription's current_detections): newest frame per camera.
  function applySnapshot(detections) {
    const newest = new Map();
    for (const d of detections) {
      if (typeof d.camera_id !== "string" || !d.bbox) continue;
      const time = timeOf(d.frame_timestamp || d.createdAt);
      const best = newest.get(d.camera_id);
      if (!best || time > best.time) newest.set(d.camera_id, { time, frameId: d.frame_id, items: [] });
    }
    for (const d of detections) {
      const best = newest.get(d.camera_id);
      if (best && d.frame_id === best.frameId) best.items.push(d);
    }
    for (const [cameraId, frame] of newest) {
      const camera = cameraFor(cameraId);
      const sameFrameByTime = camera.frameKey && camera.frameKey.startsWith("t:") && camera.frameTime === frame.time;
      if (sameFrameByTime) {
        camera.frameKey = "f:" + frame.frameId;
        setFrameId(camera, frame.frameId);
      }
      if (!enterFrame(camera, "f:" + frame.frameId, frame.frameId, frame.time)) continue;
      for (const d of frame.items) {
        camera.detections.set(d.id, {
          id: d.id, type: d.detection_type, label: d.label || d.detection_type,
          confidence: d.confidence, bbox: d.bbox,
        });
      }
      camera.updated = Math.max(camera.updated, Date.now());
      render(camera);
      loadFrame(camera, frame.frameId);
    }
    showCounts();
  }

  // Fetch (not <img src>) so the bearer token goes along and a 404 means "use the placeholder".
  async function loadFrame(camera, frameId) {
    if (!frameId || camera.imageFrameId === frameId || camera.loading === frameId) return;
    camera.loading = frameId;
    let blob = null;
    try {
      const response = await fetch(API + "/frames/" + encodeURIComponent(frameId), { headers: authHeaders() });
      if (response.ok) blob = await response.blob();
    } catch (error) {
      console.warn("frame", frameId, "could not be fetched:", error);
    }
    if (camera.loading === frameId) camera.loading = null;
    if (camera.frameId !== frameId) return; // a newer frame arrived meanwhile
    camera.imageFrameId = frameId;
    if (camera.imageUrl) URL.revokeObjectURL(camera.imageUrl);
    camera.imageUrl = blob ? URL.createObjectURL(blob) : null;
    if (camera.imageUrl) {
      camera.img.src = camera.imageUrl;
      camera.img.hidden = false;
      camera.placeholder.hidden = true;
      camera.card.dataset.frame = "image";
    } else {
      camera.img.removeAttribute("src");
      camera.img.hidden = true;
      camera.placeholder.hidden = false;
      camera.card.dataset.frame = "placeholder";
    }
  }

  function kindOf(type) {
    return ["person", "face", "vehicle"].includes(type) ? type : "other";
  }

  function render(camera) {
    const nodes = [];
    for (const d of camera.detections.values()) {
      const { x, y, width, height } = d.bbox;
      const box = document.createElement("div");
      box.className = "box box--" + kindOf(d.type);
      box.dataset.detectionId = d.id;
      box.dataset.detectionType = d.type;
      if (y < 0.12) box.classList.add("box--label-inside"); // no room above: keep the label visible
      box.style.left = x * 100 + "%";
      box.style.top = y * 100 + "%";
      box.style.width = width * 100 + "%";
      box.style.height = height * 100 + "%";
      const tag = document.createElement("span");
      tag.className = "box__label";
      const confidence = typeof d.confidence === "number" ? " " + Math.round(d.confidence * 100) + "%" : "";
      tag.textContent = d.label + confidence;
      box.append(tag);
      nodes.push(box);
    }
    camera.boxes.replaceChildren(...nodes);
    showMeta(camera);
    showCounts();
  }

  function showMeta(camera) {
    const n = camera.detections.size;
    const ago = camera.updated ? Math.max(0, Math.round((Date.now() - camera.updated) / 1000)) : null;
    camera.meta.textContent = n + (n === 1 ? " detection" : " detections") +
      (ago === null ? "" : " · updated " + (ago < 2 ? "just now" : ago + " s ago"));
  }

  // -- camera status -------------------------------------------------------------

  function rate(value) {
    return (typeof value === "number" ? value : 0).toFixed(1);
  }

  // A configured camera gets its tile from its status, before any detection.
  function showStatus(entry) {
    if (typeof entry.camera_id !== "string") return;
    const camera = cameraFor(entry.camera_id);
    camera.card.dataset.status = entry.status;
    camera.status.dataset.status = entry.status;
    const parts = [entry.enabled === false ? entry.status + " (disabled)" : entry.status];
    if (entry.status === "online") {
      parts.push(rate(entry.sampled_fps) + " fps sampled", rate(entry.detect_fps) + " fps detected");
      const p50 = entry.inference_ms && entry.inference_ms.p50;
      if (typeof p50 === "number") parts.push(Math.round(p50) + " ms inference");
    }
    camera.status.textContent = parts.join(" · ");
    camera.error.textContent = entry.last_error || "";
    camera.error.hidden = !entry.last_error;
  }

  async function refreshStatus() {
    try {
      (await getJson(CAMERAS_API + "/status")).forEach(showStatus);
      showCounts();
    } catch (error) {
      console.warn("camera status failed:", error);
    }
  }

  // -- events and stats ------------------------------------------------------------

  function onEvent(message) {
    const item = document.createElement("li");
    item.className = "event event--" + (message.severity || "info");
    const when = document.createElement("time");
    when.textContent = message.timestamp ? new Date(message.timestamp).toLocaleTimeString() : "";
    const what = document.createElement("span");
    what.textContent = " " + (message.event_type || "event") + " · " + (message.camera_id || "?") +
      (message.message ? " · " + message.message : "");
    item.append(when, what);
    const list = $("events");
    list.prepend(item);
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
    $("no-events").hidden = true;
  }

  function showQueue(stats) {
    if (!stats) return;
    for (const cell of document.querySelectorAll("[data-queue]")) {
      const value = stats[cell.dataset.queue];
      cell.textContent = typeof value === "number" ? value.toLocaleString() : "–";
    }
  }

  function showCounts() {
    let boxes = 0;
    for (const camera of cameras.values()) boxes += camera.detections.size;
    $("stat-cameras").textContent = cameras.size.toLocaleString();
    $("stat-boxes").textContent = boxes.toLocaleString();
    $("stat-received").textContent = counts.received.toLocaleString();
    $("stat-events").textContent = counts.events.toLocaleString();
  }

  // New detections change the counts: refresh them soon, at most once a second.
  function scheduleStats() {
    if (statsSoon) return;
    statsSoon = setTimeout(() => {
      statsSoon = null;
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "get_stats" }));
      refreshSummary();
    }, STATS_SOON_MS);
  }

  async function refreshSummary() {
    try {
      const data = await getJson(API + "/summary");
      showQueue(data.queue_stats);
      const stored = data.detection_stats || {};
      $("stat-total").textContent = (stored.total_detections ?? "–").toLocaleString();
      $("stat-hour").textContent = (stored.detections_last_hour ?? "–").toLocaleString();
    } catch (error) {
      console.warn("summary failed:", error);
    }
  }

  function setConnection(state) {
    const pill = $("connection");
    pill.dataset.state = state;
    pill.className = "pill pill--" + state;
    pill.textContent = state;
  }

  function notice(text) {
    const el = $("notice");
    el.textContent = text;
    el.hidden = false;
  }

  async function start() {
    connect();
    refreshSummary();
    try {
      applySnapshot((await getJson(API + "/live?min_confidence=0&limit=1000")).detections || []);
    } catch (error) {
      console.warn("initial live read failed:", error);
    }
    setInterval(() => cameras.forEach(showMeta), 1000);
    refreshStatus();
    setInterval(refreshStatus, STATUS_EVERY_MS);
  }

  start();
})();
