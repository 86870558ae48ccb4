// velesio's console. Plain ES module, no dependencies: the page is served with a CSP that allows
// only this file and app.css. The key lives in sessionStorage and travels in a header, never in a
// URL or a cookie. Every text from the server goes in with textContent, never as HTML.

const KEY_STORAGE = "velesio.key";
const SCOPES = ["llm", "embeddings", "images", "metrics", "mint", "admin"];
const LIMITS = [
  ["rpm", "Requests / min"], ["tpm", "Tokens / min"], ["parallel", "Parallel"],
  ["tokens_per_day", "Tokens / day"], ["images_per_day", "Images / day"],
];

const $ = (id) => document.getElementById(id);
const state = { key: null, me: null, admin: false, canMint: false, view: null, cluster: null, keys: [], keyNames: {}, models: [] };

// -- DOM helper -------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function table(headers, rows, empty) {
  if (!rows.length) return h("p", { class: "muted empty" }, empty);
  return h("div", { class: "table-wrap" },
    h("table", {}, h("thead", {}, h("tr", {}, headers.map((name) => h("th", {}, name)))),
      h("tbody", {}, rows)));
}

const short = (id) => (id || "").slice(0, 8);
const seconds = (s) => (s === null || s === undefined ? "–" : s < 90 ? `${s.toFixed(s < 10 ? 1 : 0)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`);
const keyName = (id) => (id ? state.keyNames[id] || short(id) : "API_TOKENS");

// -- API --------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, { method = "GET", body, signal } = {}) {
  const headers = { Authorization: `Bearer ${state.key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!resp.ok) throw new ApiError(resp.status, await errorText(resp));
  return resp;
}

async function errorText(resp) {
  const text = await resp.text();
  try {
    const body = JSON.parse(text);
    const error = body.error ?? body.detail ?? body;
    return `${resp.status}: ${typeof error === "string" ? error : error.message || JSON.stringify(error)}`;
  } catch {
    return `${resp.status}: ${text.slice(0, 200) || resp.statusText}`;
  }
}

// Server-sent events over fetch (EventSource cannot send a header); calls onEvent(name, data).
async function readEvents(resp, onEvent) {
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      let name = "message";
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, data.join("\n"));
    }
  }
}

// -- sign-in and navigation -------------------------------------------------------------------

async function signIn(key) {
  state.key = key;
  try {
    state.me = await (await api("/admin/me")).json();
  } catch (error) {
    state.key = null;
    throw error;
  }
  // A key without the admin scope gets the playground and Connect, and its own minted keys
  // when it has the mint scope; the server checks every call anyway.
  state.admin = state.me.admin;
  state.canMint = !state.admin && state.me.scopes.includes("mint");
  sessionStorage.setItem(KEY_STORAGE, key);
  $("view-signin").hidden = true;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  for (const link of document.querySelectorAll("#nav a[data-admin]")) {
    link.hidden = !(state.admin || (link.dataset.view === "keys" && state.canMint));
  }
  loadModels();
  if (state.admin) startLive();
  if (state.admin || state.canMint) loadKeys();
  route();
}

function signOut() {
  sessionStorage.removeItem(KEY_STORAGE);
  location.hash = "";
  location.reload();
}

function route() {
  if (!state.key) return;
  const fallback = state.admin ? "overview" : "chat";
  let view = location.hash.slice(1) || fallback;
  const link = document.querySelector(`#nav a[data-view="${CSS.escape(view)}"]`);
  if (!link || link.hidden) view = fallback;
  state.view = view;
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${view}`;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === view);
  render();
  if (view === "keys") loadKeys();
  if (view === "connect") {
    renderConnect();
    api("/admin/me").then((r) => r.json()).then((me) => { state.me = me; renderMe(); }).catch(() => {});
  }
}

function render() {
  if (!state.cluster) return;
  if (state.view === "overview") renderOverview();
  if (state.view === "jobs") renderJobs();
}

// -- live cluster state -----------------------------------------------------------------------

function setLive(text, ok) {
  const live = $("live");
  live.hidden = false;
  live.textContent = text;
  live.classList.toggle("ok", ok);
}

async function startLive() {
  for (;;) {
    try {
      const resp = await api("/admin/events");
      setLive("live", true);
      await readEvents(resp, (name, data) => {
        if (name !== "cluster") return;
        state.cluster = JSON.parse(data);
        render();
      });
    } catch (error) {
      if (error.status === 401 || error.status === 403) { setLive("no live view", false); return; }
    }
    setLive("reconnecting…", false);
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function renderOverview() {
  const { workers, queues, errors, jobs } = state.cluster;
  const stat = (label, value, alert) => h("div", { class: `stat${alert ? " alert" : ""}` },
    h("div", { class: "value" }, value), h("div", { class: "label" }, label));
  const down = workers.filter((w) => !w.alive).length;
  $("stats").replaceChildren(
    stat("Workers up", `${workers.length - down}/${workers.length}`, down > 0 || !workers.length),
    stat("Jobs running", jobs.filter((j) => j.state === "running").length),
    stat("Jobs waiting", jobs.filter((j) => j.state !== "running").length),
    stat("Recent errors", errors.length, errors.length > 0));
  $("workers").replaceChildren(table(
    ["Worker", "Host", "Models (slots busy)", "Images", "Health", "Heartbeat"],
    workers.map((w) => h("tr", {},
      h("td", { title: w.id }, short(w.id)),
      h("td", {}, w.host),
      h("td", {}, w.models.map((m) => h("div", { class: "slot" },
        h("span", {}, m.id), h("meter", { min: 0, max: m.slots, value: m.busy }), h("span", { class: "muted" }, ` ${m.busy}/${m.slots}`)))),
      h("td", {}, w.images ? [h("div", {}, w.images.checkpoint || "none loaded"),
        h("div", { class: "muted" }, `${w.images.checkpoints.length} checkpoints · ${w.images.device}${w.images.busy ? " · busy" : ""}`)] : "–"),
      h("td", {}, h("span", { class: `badge ${w.alive ? "ok" : "bad"}` }, w.alive ? "up" : "down")),
      h("td", {}, `${seconds(w.heartbeat_age_s)} ago`))),
    "No worker has registered yet."));
  $("queues").replaceChildren(table(
    ["Queue", "Waiting", "Held", "Oldest wait", "Per key"],
    queues.map((q) => h("tr", {},
      h("td", { class: "mono" }, q.name),
      h("td", { class: "num" }, q.depth),
      h("td", { class: "num" }, q.held),
      h("td", {}, seconds(q.oldest_wait_s)),
      h("td", {}, Object.entries(q.per_key).map(([id, n]) => `${keyName(id)}: ${n}`).join(", ") || "–"))),
    "No queues yet."));
  $("errors").replaceChildren(errors.length ? h("ul", { class: "errors" }, errors.map((e) => h("li", {},
    h("span", { class: "badge bad" }, e.code ?? "error"), " ", e.message,
    h("div", { class: "muted" }, `${e.kind} · ${e.model} · ${keyName(e.key_id)} · ${new Date(e.at * 1000).toLocaleTimeString()}`))))
    : h("p", { class: "muted empty" }, "No errors since this console's server process started watching."));
}

function renderJobs() {
  const jobs = state.cluster.jobs;
  $("jobs").replaceChildren(table(
    ["Job", "State", "Kind", "Model", "Key", "Age", "Position", ""],
    jobs.map((j) => h("tr", { "data-job": j.id },
      h("td", { class: "mono", title: j.id }, short(j.id)),
      h("td", {}, h("span", { class: `badge ${j.state === "running" ? "ok" : "wait"}` }, j.state)),
      h("td", {}, j.kind), h("td", {}, j.model), h("td", {}, keyName(j.key_id)),
      h("td", {}, seconds(j.age_s)), h("td", { class: "num" }, j.position ?? "–"),
      h("td", {}, h("button", { type: "button", class: "danger small", onclick: () => cancelJob(j.id) }, "Cancel")))),
    "No job is running or waiting."));
}

async function cancelJob(id) {
  try {
    await api(`/admin/jobs/${encodeURIComponent(id)}`, { method: "DELETE" });
  } catch (error) {
    alertError(error);
  }
}

function alertError(error) {
  console.warn("velesio:", error.message);
  setLive(error.message, false);
}

// -- keys -------------------------------------------------------------------------------------

function buildKeyForm() {
  $("key-scopes").append(...SCOPES.map((scope) => h("label", { class: "check" },
    h("input", { type: "checkbox", value: scope, checked: scope === "llm" || scope === "images" }), ` ${scope}`)));
  $("key-limits").append(
    ...LIMITS.map(([name, label]) => h("label", {}, label, h("input", { id: `key-limit-${name}`, type: "number", min: 1, placeholder: "∞" }))),
    h("label", {}, "Weight", h("input", { id: "key-weight", type: "number", min: 1, max: 1000, value: 1 })),
    h("label", {}, "Expires in (s)", h("input", { id: "key-expires", type: "number", min: 1, placeholder: "never" })));
  $("key-form").addEventListener("submit", submitKey);
  $("key-cancel-edit").addEventListener("click", resetKeyForm);
  $("secret-close").addEventListener("click", () => { $("secret-box").hidden = true; $("secret-value").textContent = ""; });
  $("secret-copy").addEventListener("click", async () => {
    await navigator.clipboard.writeText($("secret-value").textContent).catch(() => {});
    $("secret-copy").textContent = "Copied";
  });
}

function keyFormValue() {
  const number = (id) => { const v = $(id).value.trim(); return v === "" ? null : Number(v); };
  const models = $("key-models").value.split(",").map((m) => m.trim()).filter(Boolean);
  const spec = {
    name: $("key-name").value.trim(),
    scopes: [...$("key-scopes").querySelectorAll("input:checked")].map((input) => input.value),
    models: models.length ? models : null,
    limits: Object.fromEntries(LIMITS.map(([name]) => [name, number(`key-limit-${name}`)])),
    weight: number("key-weight") ?? 1,
    disabled: $("key-disabled").checked,
  };
  const expires = number("key-expires");
  if (expires !== null) spec.expires_in = expires;
  return spec;
}

async function submitKey(event) {
  event.preventDefault();
  $("key-error").textContent = "";
  const editing = $("key-edit-id").value;
  try {
    const resp = await api(editing ? `/admin/keys/${encodeURIComponent(editing)}` : "/admin/keys",
      { method: editing ? "PATCH" : "POST", body: keyFormValue() });
    const body = await resp.json();
    if (body.key) showSecret(body.key);
    resetKeyForm();
    await loadKeys();
  } catch (error) {
    $("key-error").textContent = error.message;
  }
}

function resetKeyForm() {
  $("key-form").reset();
  $("key-edit-id").value = "";
  $("key-form-title").textContent = "New key";
  $("key-submit").textContent = "Create key";
  $("key-cancel-edit").hidden = true;
  for (const input of $("key-scopes").querySelectorAll("input")) input.checked = input.value === "llm" || input.value === "images";
}

function editKey(key) {
  $("key-edit-id").value = key.id;
  $("key-form-title").textContent = `Edit ${key.name}`;
  $("key-submit").textContent = "Save";
  $("key-cancel-edit").hidden = false;
  $("key-name").value = key.name;
  for (const input of $("key-scopes").querySelectorAll("input")) input.checked = key.scopes.includes(input.value);
  $("key-models").value = (key.models || []).join(", ");
  for (const [name] of LIMITS) $(`key-limit-${name}`).value = key.limits?.[name] ?? "";
  $("key-weight").value = key.weight ?? 1;
  $("key-disabled").checked = !!key.disabled;
  $("key-name").focus();
}

function showSecret(secret) {
  $("secret-value").textContent = secret;
  $("secret-copy").textContent = "Copy";
  $("secret-box").hidden = false;
}

async function keyAction(key, action) {
  try {
    if (action === "rotate") {
      const body = await (await api(`/admin/keys/${encodeURIComponent(key.id)}/rotate`, { method: "POST", body: { grace_s: 60 } })).json();
      showSecret(body.key);
    } else if (action === "revoke") {
      if (!confirm(`Revoke ${key.name}? Clients using it stop working at once.`)) return;
      await api(`/admin/keys/${encodeURIComponent(key.id)}`, { method: "DELETE" });
    }
    await loadKeys();
  } catch (error) {
    $("key-error").textContent = error.message;
  }
}

async function loadKeys() {
  let keys;
  try {
    keys = (await (await api("/admin/keys")).json()).keys;
  } catch (error) {
    // A 404 says why: stored keys are off on this server (no KEY_SECRET), so only API_TOKENS work.
    $("keys-note").textContent = error.message;
    $("keys").replaceChildren();
    return;
  }
  state.keys = keys;
  state.keyNames = Object.fromEntries(keys.map((k) => [k.id, k.name]));
  $("keys-note").textContent = "";
  const usage = await Promise.all(keys.map((k) => api(`/admin/keys/${encodeURIComponent(k.id)}`)
    .then((r) => r.json()).then((b) => b.usage || {}).catch(() => ({}))));
  const limitText = (k) => LIMITS.filter(([n]) => k.limits?.[n]).map(([n]) => `${n} ${k.limits[n]}`).join(", ") || "none";
  const todayText = (k, u) => [
    h("div", {}, `${u.tokens_today ?? 0}${k.limits?.tokens_per_day ? ` / ${k.limits.tokens_per_day}` : ""} tokens · `
      + `${u.images_today ?? 0}${k.limits?.images_per_day ? ` / ${k.limits.images_per_day}` : ""} images`),
    h("div", { class: "muted" }, `${u.requests_last_minute ?? 0} req/min · ${u.in_flight ?? 0} in flight`),
  ];
  $("keys").replaceChildren(table(
    ["Name", "Id", "Scopes", "Limits", "Today", "Expires", ""],
    keys.map((k, i) => h("tr", { "data-key": k.id, class: k.disabled ? "disabled" : "" },
      h("td", {}, k.name, k.parent ? h("div", { class: "muted" }, `minted by ${keyName(k.parent)}`) : null),
      h("td", { class: "mono" }, k.id),
      h("td", {}, k.scopes.join(" ")),
      h("td", {}, limitText(k), k.models ? h("div", { class: "muted" }, `models: ${k.models.join(", ")}`) : null),
      h("td", {}, todayText(k, usage[i])),
      h("td", {}, k.disabled ? "disabled" : k.expires_at ? new Date(k.expires_at * 1000).toLocaleString() : "never"),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "small quiet", onclick: () => editKey(k) }, "Edit"),
        h("button", { type: "button", class: "small quiet", onclick: () => keyAction(k, "rotate") }, "Rotate"),
        h("button", { type: "button", class: "small danger", onclick: () => keyAction(k, "revoke") }, "Revoke")))),
    "No stored keys yet: create one."));
  render();
}

// -- models -----------------------------------------------------------------------------------

async function loadModels() {
  try {
    const models = (await (await api("/v1/models")).json()).data.map((m) => m.id);
    state.models = models;
    $("chat-model").replaceChildren(...models.map((id) => h("option", { value: id }, id)));
  } catch (error) {
    $("chat-error").textContent = error.message;
  }
  try {
    const checkpoints = await (await api("/sdapi/v1/sd-models")).json();
    $("image-checkpoint").replaceChildren(...checkpoints.map((c) => h("option", { value: c.title }, c.model_name)));
  } catch (error) {
    $("image-checkpoint").replaceChildren(h("option", { value: "" }, error.status === 503 ? "no image worker" : "unavailable"));
  }
  updateCurl();
  renderConnect();
}

// -- chat -------------------------------------------------------------------------------------

const chat = { messages: [], controller: null };

function chatRequest() {
  const number = (id) => { const v = $(id).value.trim(); return v === "" ? undefined : Number(v); };
  const system = $("chat-system").value.trim();
  const stop = $("chat-stop-words").value.split("\n").filter((s) => s !== "");
  const pending = $("chat-text").value.trim();
  const messages = [...(system ? [{ role: "system", content: system }] : []), ...chat.messages,
    ...(pending ? [{ role: "user", content: pending }] : [])];
  const body = {
    model: $("chat-model").value || undefined, messages, stream: true,
    temperature: number("chat-temperature"), top_p: number("chat-top-p"), top_k: number("chat-top-k"),
    max_tokens: number("chat-max-tokens"), seed: number("chat-seed"),
  };
  if (stop.length) body.stop = stop;
  return JSON.parse(JSON.stringify(body)); // drops the unset (undefined) fields
}

function shellQuote(text) { return `'${text.replaceAll("'", "'\\''")}'`; }

function updateCurl() {
  $("chat-curl").textContent = `curl -N ${location.origin}/v1/chat/completions \\\n  -H "Authorization: Bearer $VELESIO_KEY" \\\n  -H 'Content-Type: application/json' \\\n  -d ${shellQuote(JSON.stringify(chatRequest(), null, 2))}`;
}

function renderChatLog(streaming) {
  $("chat-log").replaceChildren(...chat.messages.map((m, i) => h("div", {
    class: `msg ${m.role}${streaming && i === chat.messages.length - 1 ? " streaming" : ""}`,
  }, h("div", { class: "who" }, m.role), h("div", { class: "text" }, m.content))));
  $("chat-log").scrollTop = $("chat-log").scrollHeight;
}

async function sendChat(event) {
  event.preventDefault();
  if (chat.controller || !$("chat-text").value.trim()) return;
  $("chat-error").textContent = "";
  const body = chatRequest();
  chat.messages.push({ role: "user", content: $("chat-text").value.trim() });
  $("chat-text").value = "";
  const answer = { role: "assistant", content: "" };
  chat.messages.push(answer);
  renderChatLog(true);
  chat.controller = new AbortController();
  $("chat-send").hidden = true;
  $("chat-stop").hidden = false;
  try {
    const resp = await api("/v1/chat/completions", { method: "POST", body, signal: chat.controller.signal });
    await readEvents(resp, (_name, data) => {
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new ApiError(chunk.error.code, chunk.error.message);
      answer.content += chunk.choices?.[0]?.delta?.content ?? "";
      renderChatLog(true);
    });
  } catch (error) {
    if (error.name !== "AbortError") $("chat-error").textContent = error.message;
  } finally {
    chat.controller = null;
    $("chat-send").hidden = false;
    $("chat-stop").hidden = true;
    renderChatLog(false);
    updateCurl();
  }
}

// -- images -----------------------------------------------------------------------------------

function imageMode() { return document.querySelector("input[name=image-mode]:checked").value; }

function readFileBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).replace(/^data:[^,]*,/, ""));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function generateImage(event) {
  event.preventDefault();
  $("image-error").textContent = "";
  const mode = imageMode();
  const number = (id) => Number($(id).value);
  const body = {
    prompt: $("image-prompt").value, negative_prompt: $("image-negative").value,
    steps: number("image-steps"), width: number("image-width"), height: number("image-height"),
    cfg_scale: number("image-cfg"), seed: number("image-seed"),
  };
  if ($("image-checkpoint").value) body.override_settings = { sd_model_checkpoint: $("image-checkpoint").value };
  if (mode === "img2img") {
    const file = $("image-init").files[0];
    if (!file) { $("image-error").textContent = "img2img needs an init image."; return; }
    body.init_images = [await readFileBase64(file)];
    body.denoising_strength = number("image-denoise");
  }
  $("image-go").disabled = true;
  $("image-progress").value = 0;
  $("image-progress-text").textContent = "queued…";
  const out = $("image-out");
  out.dataset.progressSeen = "0";
  const startedAt = performance.now();
  let done = false;
  const watch = (async () => {
    // Once a second: the step progress that the image job's events report, as A1111 shows it.
    while (!done) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      if (done) break;
      try {
        const progress = await (await api("/sdapi/v1/progress?skip_current_image=true")).json();
        if (done) break;
        if (progress.state?.sampling_steps) {
          $("image-progress").value = progress.progress;
          $("image-progress-text").textContent = `step ${progress.state.sampling_step} of ${progress.state.sampling_steps}`;
          out.dataset.progressSeen = String(Number(out.dataset.progressSeen) + 1);
        }
      } catch { /* the generation's own request reports what matters */ }
    }
  })();
  try {
    const result = await (await api(`/sdapi/v1/${mode}`, { method: "POST", body })).json();
    const info = JSON.parse(result.info || "{}");
    out.replaceChildren(...result.images.map((b64) => h("img", { src: `data:image/png;base64,${b64}`, alt: body.prompt })),
      h("p", { class: "muted" }, `seed ${info.seed ?? "?"} · ${body.width}×${body.height} · ${body.steps} steps`));
    $("image-progress").value = 1;
    $("image-progress-text").textContent = "done";
  } catch (error) {
    $("image-error").textContent = error.message;
    $("image-progress-text").textContent = "";
  } finally {
    done = true;
    out.dataset.tookMs = String(Math.round(performance.now() - startedAt));
    await watch;
    $("image-go").disabled = false;
  }
}

// -- connect ----------------------------------------------------------------------------------

function renderMe() {
  const me = state.me;
  if (!me) return;
  const u = me.usage || {};
  const limits = LIMITS.filter(([n]) => me.limits?.[n]).map(([n, label]) => `${label} ${me.limits[n]}`).join(" · ");
  $("me").replaceChildren(h("h2", {}, `Signed in as ${me.name}`),
    h("p", {}, me.admin ? "Admin: every scope." : `Scopes: ${me.scopes.join(", ")}`,
      me.models ? ` · models: ${me.models.join(", ")}` : ""),
    me.usage ? h("p", { class: "muted" },
      `Today: ${u.tokens_today ?? 0}${me.limits?.tokens_per_day ? ` / ${me.limits.tokens_per_day}` : ""} tokens, `
      + `${u.images_today ?? 0}${me.limits?.images_per_day ? ` / ${me.limits.images_per_day}` : ""} images · `
      + `last minute: ${u.requests_last_minute ?? 0} requests · limits: ${limits || "none"}`) : null);
}

function renderConnect() {
  if (!state.key) return;
  renderMe();
  const url = location.origin;
  const host = `${location.protocol}//${location.hostname}`;
  const port = location.port || (location.protocol === "https:" ? "443" : "80");
  const key = $("connect-fill-key").checked ? state.key : "<your key>";
  const model = state.models[0] || "<model>";
  const clients = [
    ["LLM for Unity v3 (LLMAgent)", "In the LLMAgent component turn on Remote, then:",
      `host:    ${host}\nport:    ${port}\nAPI key: ${key}`],
    ["LLM for Unity v2 (LLMCharacter)", "In the LLMCharacter component turn on Remote, then (v2.2.3 or later sends the key):",
      `host:    ${host}\nport:    ${port}\nAPI key: ${key}`],
    ["Stable Diffusion for Unity", "In SDSettings (the client can only send HTTP Basic; the password is the key):",
      `Server URL: ${url}\nUse auth:   on\nUser:       unity\nPassword:   ${key}`],
    ["OpenAI SDK (Python)", "pip install openai",
      `from openai import OpenAI\n\nclient = OpenAI(base_url="${url}/v1", api_key="${key}")\nreply = client.chat.completions.create(\n    model="${model}",\n    messages=[{"role": "user", "content": "Hello"}],\n)\nprint(reply.choices[0].message.content)`],
    ["Ollama SDK (Python)", "pip install ollama",
      `from ollama import Client\n\nclient = Client(host="${url}", headers={"Authorization": "Bearer ${key}"})\nreply = client.chat(model="${model}", messages=[{"role": "user", "content": "Hello"}])\nprint(reply.message.content)`],
    ["Codex CLI", "In ~/.codex/config.toml (Codex speaks OpenAI's Responses API, /v1/responses):",
      `model = "${model}"\nmodel_provider = "velesio"\n\n[model_providers.velesio]\nname = "velesio"\nbase_url = "${url}/v1"\nenv_key = "VELESIO_API_KEY"\nwire_api = "responses"\n\n# then: VELESIO_API_KEY=${key} codex`],
    ["Claude Code", "Claude Code speaks Anthropic's Messages API (/v1/messages); the base URL has no /v1:",
      `export ANTHROPIC_BASE_URL=${url}\nexport ANTHROPIC_API_KEY=${key}\nexport CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1\nclaude --model ${model}`],
    ["curl", "A streamed chat:",
      `curl -N ${url}/v1/chat/completions \\\n  -H 'Authorization: Bearer ${key}' \\\n  -H 'Content-Type: application/json' \\\n  -d '{"model": "${model}", "stream": true, "messages": [{"role": "user", "content": "Hello"}]}'`],
  ];
  $("connect").replaceChildren(...clients.map(([title, note, snippet]) => {
    const code = h("pre", { class: "code" }, snippet);
    const copy = h("button", { type: "button", class: "small quiet", onclick: async () => {
      await navigator.clipboard.writeText(snippet).catch(() => {});
      copy.textContent = "Copied";
    } }, "Copy");
    return h("div", { class: "card connect-card" }, h("div", { class: "row spread" }, h("h2", {}, title), copy),
      h("p", { class: "muted" }, note), code);
  }));
}

// -- start ------------------------------------------------------------------------------------

function start() {
  buildKeyForm();
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("signin-error").textContent = "";
    try {
      await signIn($("signin-key").value.trim());
      $("signin-key").value = "";
    } catch (error) {
      $("signin-error").textContent = error.status === 401 ? "This key is not valid." : error.message;
    }
  });
  $("sign-out").addEventListener("click", signOut);
  $("chat-form").addEventListener("submit", sendChat);
  $("chat-text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("chat-form").requestSubmit(); }
  });
  $("chat-stop").addEventListener("click", () => chat.controller?.abort());
  $("chat-clear").addEventListener("click", () => { chat.messages = []; renderChatLog(false); updateCurl(); });
  for (const id of ["chat-model", "chat-system", "chat-temperature", "chat-top-p", "chat-top-k", "chat-max-tokens", "chat-seed", "chat-stop-words", "chat-text"]) {
    $(id).addEventListener("input", updateCurl);
  }
  $("image-form").addEventListener("submit", generateImage);
  for (const radio of document.querySelectorAll("input[name=image-mode]")) {
    radio.addEventListener("change", () => {
      const img2img = imageMode() === "img2img";
      $("image-init-label").hidden = !img2img;
      $("image-denoise-label").hidden = !img2img;
    });
  }
  $("connect-fill-key").addEventListener("change", renderConnect);
  window.addEventListener("hashchange", route);
  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) signIn(saved).catch(() => sessionStorage.removeItem(KEY_STORAGE));
}

start();
