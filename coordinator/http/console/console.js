// The StableQueue web console: one page per task, all of it through /api/v1 (the same
// routes any script uses). No framework and no build step; DOM built with `h`, never
// from HTML strings, so nothing a user typed is ever parsed as markup.

const API = "/api/v1";
const KEY = "sq_key";
const main = document.getElementById("main");
const state = { key: sessionStorage.getItem(KEY) || localStorage.getItem(KEY) || "", cleanup: [] };

// ---- DOM ----------------------------------------------------------------------

export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "checked") node.checked = value;
    else if (name === "value") {
      if ("defaultValue" in node) node.defaultValue = value; // what form.reset() returns to
      node.value = value;
    }
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function toast(message, bad = false) {
  const box = h("div", { class: bad ? "toast bad" : "toast", text: message });
  document.getElementById("toasts").append(box);
  setTimeout(() => box.remove(), bad ? 8000 : 3500);
}

function field(labelText, input, extra = {}) {
  return h("label", extra, labelText, input);
}

function select(name, options, value) {
  return h("select", { name }, options.map(([v, t]) => h("option", { value: v, selected: v === value }, t)));
}

const label = (name) => (name || "").replace(/^[A-Z]+(_[A-Z]+)*?_(STATE|STATUS|STAGE|TYPE|HEALTH|KIND|SCOPE)_/, "").toLowerCase().replace(/_/g, " ");
const short = (text, n = 80) => (text.length > n ? text.slice(0, n - 1) + "…" : text);
const when = (stamp) => (stamp ? new Date(stamp).toLocaleString() : "");
const bytes = (n) => {
  n = Number(n || 0);
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
};

// ---- the API --------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, error) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "";
    this.field = error.field || "";
  }
}

function headers(json) {
  const out = {};
  if (json) out["content-type"] = "application/json";
  if (state.key) out.authorization = `Bearer ${state.key}`;
  return out;
}

function url(path, params) {
  const target = new URL(API + path, location.origin);
  for (const [name, value] of Object.entries(params || {})) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== undefined && item !== null && item !== "") target.searchParams.append(name, item);
    }
  }
  return target;
}

async function failure(answer) {
  let error = { message: answer.statusText };
  try { error = (await answer.json()).error || error; } catch { /* not JSON */ }
  if (answer.status === 401) login(error.message);
  return new ApiError(answer.status, error);
}

export async function api(verb, path, body, params) {
  const answer = await fetch(url(path, params), {
    method: verb,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!answer.ok) throw await failure(answer);
  const type = answer.headers.get("content-type") || "";
  return type.startsWith("application/json") ? answer.json() : answer.blob();
}

// Server-sent events read with fetch (EventSource cannot send the key).
export function parseEvents(buffer, onEvent) {
  const blocks = buffer.split("\n\n");
  const rest = blocks.pop();
  for (const block of blocks) {
    let kind = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event: ")) kind = line.slice(7);
      else if (line.startsWith("data: ")) data.push(line.slice(6));
    }
    if (data.length) onEvent(kind, JSON.parse(data.join("\n")));
  }
  return rest;
}

async function follow(verb, path, params, onEvent, signal) {
  const answer = await fetch(url(path, params), { method: verb, headers: headers(false), signal });
  if (!answer.ok) throw await failure(answer);
  const reader = answer.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer = parseEvents(buffer + decoder.decode(value, { stream: true }), (kind, data) => {
      if (kind === "error") throw new ApiError(data.error.status, data.error);
      onEvent(data);
    });
  }
}

// A stream that lives as long as the page shown; reconnects after a drop.
function live(path, params, onEvent, verb = "GET") {
  const control = new AbortController();
  state.cleanup.push(() => control.abort());
  (async () => {
    while (!control.signal.aborted) {
      try {
        await follow(verb, path, params, onEvent, control.signal);
      } catch (error) {
        if (control.signal.aborted) return;
        if (error.status && error.status < 500) { toast(error.message, true); return; }
      }
      await new Promise((done) => setTimeout(done, 1500));
    }
  })();
  return control;
}

const images = new Map();
async function image(path) {
  if (!images.has(path)) {
    images.set(path, api("GET", path).then((blob) => URL.createObjectURL(blob)));
  }
  try { return await images.get(path); } catch (error) { images.delete(path); throw error; }
}

function picture(path, props = {}) {
  const img = h("img", { alt: props.alt || "", loading: "lazy", ...props });
  image(path).then((src) => { img.src = src; }).catch(() => img.classList.add("missing"));
  return img;
}

// Shows an error on the form field it names (spec.params.steps -> [data-field=steps]).
function showError(form, error) {
  form.querySelectorAll(".field-error").forEach((n) => n.classList.remove("field-error"));
  const box = form.querySelector(".error");
  if (box) box.textContent = error.message;
  const name = (error.field || "").split(".").pop().replace(/\[\d+\]$/, "");
  const input = name && form.querySelector(`[data-field="${CSS.escape(name)}"]`);
  if (input) { input.classList.add("field-error"); input.focus(); }
  if (!box) toast(error.message, true);
}

async function act(work, okText) {
  try {
    const out = await work();
    if (okText) toast(okText);
    return out;
  } catch (error) {
    toast(error.message, true);
    return undefined;
  }
}

// ---- sign in --------------------------------------------------------------------

function login(why) {
  const dialog = document.getElementById("login");
  document.getElementById("login-why").textContent = why || "This coordinator needs an API key.";
  if (!dialog.open) dialog.showModal();
}

document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = document.getElementById("login-key").value.trim();
  const remember = document.getElementById("login-remember").checked;
  const previous = state.key;
  state.key = key;
  try {
    await api("GET", "/queue/stats");
  } catch (error) {
    state.key = previous;
    document.getElementById("login-error").textContent = error.message;
    return;
  }
  (remember ? localStorage : sessionStorage).setItem(KEY, key);
  document.getElementById("login-key").value = "";
  document.getElementById("login").close();
  document.getElementById("logout").hidden = false;
  route();
});

document.getElementById("logout").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
  state.key = "";
  location.reload();
});
document.getElementById("logout").hidden = !state.key;

// ---- Generate -----------------------------------------------------------------

const generateDraft = { spec: null };

function numberInput(name, value, min, max, step = 1) {
  return h("input", { name, "data-field": name, type: "number", value, min, max, step, inputmode: "decimal" });
}

async function pageGenerate() {
  const chosen = { model: null, loras: [] };
  const form = h("form", { class: "panel", id: "generate-form", novalidate: true });
  const modelBox = h("div", { class: "picked", id: "model-picked" }, h("span", { class: "dim", text: "whatever the server has loaded" }));
  const loraBox = h("div", { class: "chips", id: "lora-chips" });
  const initBox = h("div", { class: "dim small" });
  const initImages = [];
  const servers = h("select", { name: "target_server", "data-field": "target_server" }, h("option", { value: "" }, "any server with the model"));
  const result = h("div", { id: "generate-result" });
  // The sampler and scheduler names the chosen server lists (all servers' for "any").
  const samplerList = h("datalist", { id: "samplers" });
  const schedulerList = h("datalist", { id: "schedulers" });
  let known = [];
  const offerNames = () => {
    const from = known.filter((s) => !servers.value || s.alias === servers.value);
    const names = (key) => [...new Set(from.flatMap((s) => s[key] || []))].map((n) => h("option", { value: n }));
    samplerList.replaceChildren(...names("samplers"));
    schedulerList.replaceChildren(...names("schedulers"));
  };
  servers.addEventListener("change", offerNames);

  function renderModel() {
    modelBox.replaceChildren(...(chosen.model
      ? [chosen.model.has_preview ? picture(`/models/${chosen.model.id}/preview`) : "",
         h("span", {}, h("strong", { text: chosen.model.name }), " ", h("span", { class: "badge", text: chosen.model.base_model || label(chosen.model.type) })),
         h("button", { type: "button", class: "quiet", onclick: () => { chosen.model = null; renderModel(); } }, "Clear")]
      : [h("span", { class: "dim", text: "whatever the server has loaded" })]));
  }
  function renderLoras() {
    loraBox.replaceChildren(...chosen.loras.map((lora, i) => h("span", { class: "chip", "data-lora": lora.name },
      lora.title,
      h("input", { type: "number", step: "0.05", min: -10, max: 10, value: lora.weight, "aria-label": `${lora.title} weight`, "data-field": "weight",
        oninput: (e) => { lora.weight = Number(e.target.value); } }),
      lora.words.length ? h("span", { class: "words" }, lora.words.map((w) => h("button", { type: "button", class: "quiet", title: "Add to the prompt",
        onclick: () => { const p = form.elements.prompt; p.value = p.value ? `${p.value}, ${w}` : w; } }, `+ ${w}`))) : "",
      h("button", { type: "button", class: "quiet", "aria-label": `Remove ${lora.title}`, onclick: () => { chosen.loras.splice(i, 1); renderLoras(); } }, "×"))));
  }

  form.append(
    h("div", { class: "grid2" },
      h("div", {},
        field("Prompt", h("textarea", { name: "prompt", "data-field": "prompt", rows: 4, placeholder: "a lighthouse at dusk, oil painting" })),
        field("Negative prompt", h("textarea", { name: "negative_prompt", "data-field": "negative_prompt", rows: 2 })),
        h("h2", { text: "Model" }), modelBox,
        h("div", { class: "row" }, h("button", { type: "button", class: "quiet", id: "pick-model", onclick: () => pickModel("MODEL_TYPE_CHECKPOINT", (m) => { chosen.model = m; renderModel(); }) }, "Choose a model…")),
        h("h2", { text: "LoRAs" }), loraBox,
        h("div", { class: "row" }, h("button", { type: "button", class: "quiet", id: "pick-lora", onclick: () => pickModel("MODEL_TYPE_LORA", (m) => {
          chosen.loras.push({ name: m.hashes.sha256 || m.name, title: m.name, weight: 1, words: m.trained_words || [] }); renderLoras();
        }) }, "Add a LoRA…")),
        h("h2", { text: "img2img" }),
        h("div", { class: "row" },
          field("Source image", h("input", { type: "file", name: "init", accept: "image/png,image/jpeg,image/webp", "data-field": "init_images",
            onchange: async (e) => {
              initImages.length = 0;
              for (const file of e.target.files) initImages.push(await base64(file));
              initBox.textContent = initImages.length ? `${initImages.length} image(s): img2img` : "";
            } })),
          field("Strength", numberInput("denoising_strength", 0.6, 0, 1, 0.05))),
        initBox),
      h("div", {},
        h("div", { class: "row" },
          field("Sampler", h("input", { name: "sampler", "data-field": "sampler", list: "samplers", placeholder: "server default" })),
          field("Scheduler", h("input", { name: "scheduler", "data-field": "scheduler", list: "schedulers", placeholder: "server default" }))),
        samplerList, schedulerList,
        h("div", { class: "row" },
          field("Width", numberInput("width", 512, 64, 8192, 8)),
          field("Height", numberInput("height", 512, 64, 8192, 8))),
        h("div", { class: "row" },
          field("Steps", numberInput("steps", 20, 1, 500)),
          field("CFG", numberInput("cfg_scale", 7, 0, 100, 0.5))),
        h("div", { class: "row" },
          field("Seed (-1: random)", numberInput("seed", -1, -1, 4294967295)),
          field("Seed mode", select("seed_mode", [["SEED_MODE_INCREMENT", "increment"], ["SEED_MODE_RANDOM", "random"], ["SEED_MODE_FIXED", "fixed"]], "SEED_MODE_INCREMENT")),
          field("Count", numberInput("count", 1, 1, 1000))),
        h("div", { class: "row" },
          field("Server", servers),
          field("Priority", numberInput("priority", 0, -1000, 1000))),
        h("p", { class: "error" }),
        h("div", { class: "row submit-bar" }, h("button", { type: "submit", id: "queue-button" }, "Queue")),
        result)));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = form.elements;
    const params = {
      prompt: f.prompt.value, negative_prompt: f.negative_prompt.value,
      sampler: f.sampler.value, scheduler: f.scheduler.value,
      width: Number(f.width.value), height: Number(f.height.value), steps: Number(f.steps.value),
      cfg_scale: Number(f.cfg_scale.value), seed: String(f.seed.value === "" ? -1 : f.seed.value),
      loras: chosen.loras.map((l) => ({ name: l.name, weight: l.weight })),
      model: chosen.model ? chosen.model.hashes.sha256 || chosen.model.name : "",
    };
    if (initImages.length) {
      Object.assign(params, { mode: "GENERATION_MODE_IMG2IMG", init_images: initImages, denoising_strength: Number(f.denoising_strength.value) });
    }
    const spec = { params, target_server: f.target_server.value, priority: Number(f.priority.value) };
    const count = Number(f.count.value || 1);
    try {
      const answer = count > 1
        ? await api("POST", "/jobs/bulk", { spec, count, seed_mode: f.seed_mode.value })
        : await api("POST", "/jobs", { spec });
      showError(form, { message: "" });
      const jobs = answer.jobs || [answer.job];
      toast(`Queued ${jobs.length} job${jobs.length > 1 ? "s" : ""}`);
      result.replaceChildren(...jobs.slice(0, 4).map((job) => jobCard(job)));
      for (const job of jobs.slice(0, 4)) watchInto(job.id, result);
    } catch (error) {
      showError(form, error);
    }
  });

  main.replaceChildren(h("h1", { text: "Generate" }), form);
  renderModel();
  renderLoras();
  api("GET", "/servers").then((answer) => {
    known = answer.servers;
    for (const s of known) servers.append(h("option", { value: s.alias }, `${s.alias} (${label(s.kind)})`));
    offerNames();
  }).catch(() => { /* a submit key may not list servers: any server it is, names typed */ });

  if (generateDraft.spec) { // "use these settings" from the gallery
    const spec = generateDraft.spec;
    generateDraft.spec = null;
    const p = spec.params || {};
    for (const name of ["prompt", "negative_prompt", "sampler", "scheduler", "width", "height", "steps", "cfg_scale", "seed"]) {
      if (p[name] !== undefined && p[name] !== "" && p[name] !== 0) form.elements[name].value = p[name];
    }
    if (spec.priority) form.elements.priority.value = spec.priority;
    if (p.model) {
      api("GET", "/models/locate", undefined, { reference: p.model }).then((a) => { chosen.model = a.model; renderModel(); }).catch(() => {});
    }
    for (const lora of p.loras || []) {
      chosen.loras.push({ name: lora.name, title: lora.name, weight: lora.weight, words: [] });
    }
    renderLoras();
  }
}

function base64(file) {
  return new Promise((done, fail) => {
    const reader = new FileReader();
    reader.onload = () => done(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => fail(reader.error);
    reader.readAsDataURL(file);
  });
}

function jobCard(job) {
  return h("div", { class: "job", "data-job": job.id },
    h("div", { class: "what" }, h("strong", { text: short(job.spec?.params?.prompt || job.spec?.label || "workflow", 60) })),
    h("span", { class: "badge status", text: label(job.status) }),
    h("progress", { max: 1, value: job.progress?.fraction || 0 }),
    h("span", { class: "dim small stage", text: label(job.stage) }),
    h("div", { class: "out" }));
}

function updateCard(card, job) {
  card.querySelector(".status").textContent = label(job.status);
  card.querySelector(".stage").textContent = job.progress?.total_steps
    ? `${label(job.stage)} · step ${job.progress.step}/${job.progress.total_steps}` : label(job.stage);
  card.querySelector("progress").value = job.status === "JOB_STATUS_COMPLETED" ? 1 : job.progress?.fraction || 0;
  const out = card.querySelector(".out");
  if (job.progress?.preview_image && job.status === "JOB_STATUS_PROCESSING") {
    out.replaceChildren(h("img", { class: "preview", alt: "preview", src: `data:${job.progress.preview_mime || "image/png"};base64,${job.progress.preview_image}` }));
  }
  if (job.status === "JOB_STATUS_COMPLETED" && job.results?.length) {
    out.replaceChildren(...job.results.map((r) => picture(`/results/${r.id}/image?max_edge=768`, { class: "preview", alt: r.filename })));
  }
  if (job.status === "JOB_STATUS_FAILED") out.replaceChildren(h("p", { class: "error", text: job.reason }));
}

function watchInto(id, root) {
  live(`/jobs/${id}/events`, {}, async (event) => {
    const card = root.querySelector(`[data-job="${id}"]`);
    if (!card) return;
    let job = event.job;
    if (job.status === "JOB_STATUS_COMPLETED" && !job.results?.length) job = (await api("GET", `/jobs/${id}`)).job;
    updateCard(card, job);
  });
}

// The model picker: cards with previews, type/base filters and where each model is.
async function pickModel(type, onPick) {
  const dialog = h("dialog", { id: "picker" });
  const search = h("input", { type: "search", placeholder: "Search", "aria-label": "Search models" });
  const base = h("select", { "aria-label": "Base model" }, h("option", { value: "" }, "any base"));
  const typeSelect = select("type", MODEL_TYPES, type);
  const cards = h("div", { class: "cards" });
  let all = [];
  const draw = () => {
    const text = search.value.toLowerCase();
    cards.replaceChildren(...all.filter((m) => (!base.value || m.base_model === base.value)
      && (!text || `${m.name} ${(m.locations || []).map((l) => l.path).join(" ")}`.toLowerCase().includes(text)))
      .map((m) => modelCard(m, { onChoose: () => { dialog.close(); onPick(m); } })));
  };
  const load = async () => {
    all = await listAll("/models", { type: typeSelect.value }, "models");
    const bases = [...new Set(all.map((m) => m.base_model).filter(Boolean))].sort();
    base.replaceChildren(h("option", { value: "" }, "any base"), ...bases.map((b) => h("option", { value: b }, b)));
    draw();
  };
  search.addEventListener("input", draw);
  base.addEventListener("change", draw);
  typeSelect.addEventListener("change", load);
  dialog.append(h("div", { class: "row" }, h("h2", { text: type === "MODEL_TYPE_LORA" ? "Add a LoRA" : "Choose a model" }),
    h("button", { type: "button", class: "quiet", onclick: () => dialog.close() }, "Close")),
  h("div", { class: "row" }, search, typeSelect, base), h("p"), cards);
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  await act(load);
}

async function listAll(path, params, key) {
  const out = [];
  let token = "";
  do {
    const page = await api("GET", path, undefined, { ...params, "page.page_size": 500, "page.page_token": token });
    out.push(...page[key]);
    token = page.next_page_token;
  } while (token);
  return out;
}

const MODEL_TYPES = [["", "all types"], ["MODEL_TYPE_CHECKPOINT", "checkpoint"], ["MODEL_TYPE_DIFFUSION_MODEL", "diffusion model"],
  ["MODEL_TYPE_LORA", "LoRA"], ["MODEL_TYPE_VAE", "VAE"], ["MODEL_TYPE_TEXT_ENCODER", "text encoder"], ["MODEL_TYPE_EMBEDDING", "embedding"],
  ["MODEL_TYPE_UPSCALER", "upscaler"], ["MODEL_TYPE_CONTROLNET", "ControlNet"], ["MODEL_TYPE_OTHER", "other"]];

function modelCard(m, { onChoose, admin } = {}) {
  const hosts = [...new Set((m.locations || []).map((l) => l.host))];
  const civitai = Number(m.civitai_model_id) ? `https://civitai.com/models/${m.civitai_model_id}${Number(m.civitai_version_id) ? `?modelVersionId=${m.civitai_version_id}` : ""}` : "";
  return h("div", { class: onChoose ? "card choose" : "card", "data-model": m.id, tabindex: onChoose ? 0 : undefined, role: onChoose ? "button" : undefined,
    onclick: onChoose, onkeydown: onChoose ? (e) => { if (e.key === "Enter") onChoose(); } : undefined },
  m.has_preview ? picture(`/models/${m.id}/preview`, { alt: m.name }) : h("div", { class: "noimg" }),
  h("div", { class: "body" },
    h("span", { class: "name", text: m.name }),
    h("span", {}, h("span", { class: "badge", text: label(m.type) }), " ", m.base_model ? h("span", { class: "badge", text: m.base_model }) : ""),
    h("span", { class: "dim small", text: hosts.length ? `on ${hosts.join(", ")}` : "no copy anywhere" }),
    m.trained_words?.length ? h("span", { class: "dim small", text: `words: ${m.trained_words.join(", ")}` }) : "",
    onChoose ? "" : h("span", { class: "mono", title: "SHA-256", text: m.hashes?.sha256 ? `SHA-256 ${m.hashes.sha256.slice(0, 16)}… AutoV2 ${m.hashes.autov2 || ""}` : "not hashed yet" }),
    onChoose ? "" : h("span", { class: "dim small" }, Number(m.size_bytes) ? bytes(m.size_bytes) : "", (m.locations || []).map((l) => h("div", { class: "mono", text: `${l.host}: ${l.path}` }))),
    civitai ? h("a", { href: civitai, target: "_blank", rel: "noopener noreferrer" }, "Civitai") : "",
    admin || ""));
}

// ---- Queue ------------------------------------------------------------------------

async function pageQueue() {
  const jobs = new Map();
  const list = h("div", { class: "jobs", id: "queue-list" });
  const finished = h("div", { class: "jobs", id: "queue-finished" });
  const pauseButton = h("button", { type: "button", class: "quiet", id: "pause-all" }, "Pause queue");
  const serverPauses = h("div", { class: "row", id: "server-pauses" });
  let paused = false;
  let pausedServers = [];

  const order = () => [...jobs.values()].filter((j) => j.status === "JOB_STATUS_PENDING" || j.status === "JOB_STATUS_PROCESSING")
    .sort((a, b) => (a.status === b.status ? 0 : a.status === "JOB_STATUS_PROCESSING" ? -1 : 1)
      || (b.spec.priority || 0) - (a.spec.priority || 0) || Number(a.position) - Number(b.position));
  const draw = () => {
    const open = order();
    const pending = open.filter((j) => j.status === "JOB_STATUS_PENDING");
    list.replaceChildren(...(open.length ? open.map((job) => queueRow(job, pending)) : [h("p", { class: "dim", text: "Nothing queued." })]));
    pauseButton.textContent = paused ? "Resume queue" : "Pause queue";
  };
  const queueRow = (job, pending) => {
    const i = pending.indexOf(job);
    const card = jobCard(job);
    updateCard(card, job);
    card.querySelector(".what").append(h("div", { class: "dim small", text: [job.server && `on ${job.server}`, job.spec.priority ? `priority ${job.spec.priority}` : "", `#${job.id.slice(0, 8)}`].filter(Boolean).join(" · ") }));
    const move = (body) => act(() => api("POST", `/jobs/${job.id}/move`, body));
    card.append(h("div", { class: "actions" },
      job.status === "JOB_STATUS_PENDING" ? [
        h("button", { type: "button", class: "quiet", title: "Move to the front", disabled: i === 0, onclick: () => move({ placement: "MOVE_PLACEMENT_FRONT" }) }, "⤒ Front"),
        h("button", { type: "button", class: "quiet", "aria-label": "Move up", disabled: i === 0, onclick: () => move({ placement: "MOVE_PLACEMENT_BEFORE", anchor_id: pending[i - 1].id }) }, "↑"),
        h("button", { type: "button", class: "quiet", "aria-label": "Move down", disabled: i === pending.length - 1, onclick: () => move({ placement: "MOVE_PLACEMENT_AFTER", anchor_id: pending[i + 1].id }) }, "↓"),
        h("button", { type: "button", class: "quiet", title: "Move to the back", disabled: i === pending.length - 1, onclick: () => move({ placement: "MOVE_PLACEMENT_BACK" }) }, "⤓ Back"),
        h("button", { type: "button", class: "quiet", onclick: async () => {
          const value = prompt("Priority (higher runs first)", job.spec.priority || 0);
          if (value !== null) await act(() => api("POST", `/jobs/${job.id}/priority`, { priority: Number(value) }));
        } }, "Priority…"),
      ] : "",
      h("button", { type: "button", class: "danger", onclick: () => act(() => api("POST", `/jobs/${job.id}/cancel`), "Cancelled") }, "Cancel")));
    return card;
  };
  const drawFinished = async () => {
    const answer = await api("GET", "/jobs", undefined, { statuses: ["JOB_STATUS_COMPLETED", "JOB_STATUS_FAILED", "JOB_STATUS_CANCELLED"], order: "JOB_ORDER_NEWEST", "page.page_size": 20 });
    finished.replaceChildren(...answer.jobs.map((job) => {
      const card = jobCard(job);
      updateCard(card, job);
      card.append(h("div", { class: "actions" },
        h("button", { type: "button", class: "quiet", onclick: () => act(() => api("POST", `/jobs/${job.id}/retry`), "Queued again") }, "Retry"),
        h("button", { type: "button", class: "danger", onclick: async () => { if (await act(() => api("DELETE", `/jobs/${job.id}`), "Deleted")) drawFinished(); } }, "Delete")));
      return card;
    }));
  };
  const drawServers = async () => {
    try {
      const answer = await api("GET", "/servers");
      serverPauses.replaceChildren(...answer.servers.map((s) => {
        const on = pausedServers.includes(s.alias);
        return h("button", { type: "button", class: "quiet", "data-server": s.alias,
          onclick: () => act(() => api("POST", on ? "/queue/resume" : "/queue/pause", { server: s.alias })) }, `${on ? "Resume" : "Pause"} ${s.alias}`);
      }));
    } catch { serverPauses.replaceChildren(); }
  };
  const stats = (s) => {
    paused = s.paused;
    pausedServers = s.paused_servers || [];
    draw();
    drawServers();
  };
  pauseButton.addEventListener("click", () => act(() => api("POST", paused ? "/queue/resume" : "/queue/pause", {})));

  main.replaceChildren(h("h1", { text: "Queue" }),
    h("div", { class: "row panel" }, pauseButton, serverPauses),
    list, h("h2", { text: "Finished" }), finished);
  stats((await api("GET", "/queue/stats")).stats);
  let refresh = 0;
  live("/queue/events", { snapshot: "true", omit_previews: "true" }, (event) => {
    if (event.stats) { stats(event.stats); return; }
    const { type, job } = event.job_event;
    if (type === "JOB_EVENT_TYPE_DELETED") jobs.delete(job.id);
    else jobs.set(job.id, { ...jobs.get(job.id), ...job });
    draw();
    if (job.status !== "JOB_STATUS_PENDING" && job.status !== "JOB_STATUS_PROCESSING") {
      clearTimeout(refresh);
      refresh = setTimeout(drawFinished, 300);
    }
  });
  drawFinished();
}

// ---- Gallery --------------------------------------------------------------------

// Tiles show scaled copies (WebP, made once by the coordinator): a page of full-size
// images would be tens of MB on a phone. The full image opens on a tap.
const TILE_EDGE = 384;

async function pageGallery() {
  const grid = h("div", { class: "gallery", id: "gallery" });
  const sentinel = h("div", { class: "sentinel" });
  const text = h("input", { type: "search", placeholder: "Prompt text", "aria-label": "Filter by prompt" });
  const model = h("input", { type: "search", placeholder: "Model", "aria-label": "Filter by model" });
  let token = "";
  let done = false;
  let loading = false;
  const more = async () => {
    if (loading || done) return;
    loading = true;
    try {
      const page = await api("GET", "/results", undefined, { text: text.value, model: model.value, "page.page_size": 40, "page.page_token": token });
      for (const r of page.results) {
        grid.append(h("button", { type: "button", class: "tile", "data-result": r.id, "aria-label": `Open ${r.filename}`, onclick: () => openResult(r, grid) },
          picture(`/results/${r.id}/image?max_edge=${TILE_EDGE}`, { alt: short(r.infotext, 60) })));
      }
      token = page.next_page_token;
      done = !token;
      if (!grid.children.length) grid.append(h("p", { class: "dim", text: "No images yet." }));
    } catch (error) {
      toast(error.message, true);
      done = true;
    } finally {
      loading = false;
    }
    if (!done && sentinel.getBoundingClientRect().top < innerHeight + 400) more();
  };
  const restart = () => { grid.replaceChildren(); token = ""; done = false; more(); };
  let timer = 0;
  for (const input of [text, model]) input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(restart, 300); });
  const observer = new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) more(); }, { rootMargin: "400px" });
  observer.observe(sentinel);
  state.cleanup.push(() => observer.disconnect());
  main.replaceChildren(h("h1", { text: "Gallery" }), h("div", { class: "row panel" }, text, model), grid, sentinel);
  more();
}

function openResult(r, grid) {
  const dialog = h("dialog", { id: "result" },
    h("div", { class: "row" }, h("h2", { text: r.filename }), h("button", { type: "button", class: "quiet", onclick: () => dialog.close() }, "Close")),
    picture(`/results/${r.id}/image`, { class: "full", alt: r.filename }),
    h("pre", { class: "infotext", text: r.infotext || "(no parameters)" }),
    h("p", { class: "dim small", text: `${r.width}×${r.height} · seed ${r.seed} · ${bytes(r.size_bytes)} · ${when(r.created_at)}` }),
    h("div", { class: "row" },
      h("button", { type: "button", onclick: async () => {
        const job = await act(() => api("GET", `/jobs/${r.job_id}`));
        if (!job) return;
        generateDraft.spec = { ...job.job.spec, params: { ...job.job.spec.params, seed: r.seed } };
        dialog.close();
        location.hash = "#/generate";
      } }, "Use these settings"),
      h("button", { type: "button", class: "danger", onclick: async () => {
        if (!confirm("Delete this image?")) return;
        if (await act(() => api("DELETE", `/results/${r.id}`), "Deleted") !== undefined) {
          grid.querySelector(`[data-result="${r.id}"]`)?.remove();
          dialog.close();
        }
      } }, "Delete")));
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}

// ---- Models -----------------------------------------------------------------------

async function pageModels() {
  const cards = h("div", { class: "cards", id: "models" });
  const typeSelect = select("type", MODEL_TYPES, "");
  const base = h("input", { type: "search", placeholder: "Base model (SDXL, SD1…)", "aria-label": "Base model" });
  const text = h("input", { type: "search", placeholder: "Search", "aria-label": "Search models" });
  const progress = h("div", { class: "dim small", id: "scan-progress" });
  const draw = async () => {
    const models = text.value
      ? (await api("GET", "/models/search", undefined, { query: text.value, type: typeSelect.value })).models
      : await listAll("/models", { type: typeSelect.value, base_model: base.value }, "models");
    cards.replaceChildren(...(models.length ? models.map((m) => modelCard(m, { admin: modelActions(m, draw) })) : [h("p", { class: "dim", text: "No models. Scan the model folders, or download one." })]));
  };
  let timer = 0;
  for (const input of [typeSelect, base, text]) input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => act(draw), 250); });
  const scan = async () => {
    progress.textContent = "Scanning…";
    try {
      await follow("POST", "/models/scan", {}, (p) => {
        progress.textContent = p.done
          ? `Scan done: ${p.files_found} files, ${p.files_hashed} hashed${p.errors?.length ? `, ${p.errors.length} unreadable` : ""}`
          : `Scanning: ${p.files_hashed}/${p.files_found} files, ${bytes(p.bytes_hashed)} of ${bytes(p.bytes_total)} ${p.current_path || ""}`;
      });
      await draw();
    } catch (error) { progress.textContent = ""; toast(error.message, true); }
  };
  main.replaceChildren(h("h1", { text: "Models" }),
    h("div", { class: "row panel" }, text, typeSelect, base, h("button", { type: "button", id: "scan", onclick: scan }, "Scan folders")),
    progress, cards);
  await act(draw);
}

function modelActions(m, redraw) {
  return h("div", { class: "row" },
    h("button", { type: "button", class: "quiet", onclick: async () => { if (await act(() => api("POST", `/models/${m.id}/refresh`, { fetch_civitai: true }), "Metadata refreshed")) redraw(); } }, "Refresh"),
    h("button", { type: "button", class: "quiet", onclick: () => { downloadDraft.library = m.hashes?.sha256 || m.id; location.hash = "#/downloads"; } }, "Copy to a node…"),
    h("button", { type: "button", class: "danger", onclick: async () => {
      const where = (m.locations || []).map((l) => `${l.host}: ${l.path}`).join("\n");
      if (!confirm(`Delete this model's file(s)?\n${where}`)) return;
      if (await act(() => api("DELETE", `/models/${m.id}`), "Deleted") !== undefined) redraw();
    } }, "Delete"));
}

// ---- Servers and nodes --------------------------------------------------------------

async function pageServers() {
  const servers = h("div", { class: "table-wrap", id: "servers" });
  const nodes = h("div", { id: "nodes" });
  const form = h("form", { class: "panel", id: "server-form", novalidate: true },
    h("h2", { text: "Add a server" }),
    h("div", { class: "row" },
      field("Alias", h("input", { name: "alias", "data-field": "alias", required: true, placeholder: "gpu-1" })),
      field("Kind", select("kind", [["APP_KIND_FORGE", "Forge / A1111"], ["APP_KIND_COMFYUI", "ComfyUI"], ["APP_KIND_SDCPP", "stable-diffusion.cpp"]], "APP_KIND_FORGE")),
      field("URL", h("input", { name: "base_url", "data-field": "base_url", type: "url", placeholder: "http://192.168.1.20:7860" }))),
    h("div", { class: "row" },
      field("User (optional)", h("input", { name: "username", "data-field": "username", autocomplete: "off" })),
      field("Password (optional)", h("input", { name: "password", "data-field": "password", type: "password", autocomplete: "new-password" })),
      field("Jobs at once", numberInput("max_concurrency", 1, 1, 64))),
    h("p", { class: "error" }),
    h("button", { type: "submit" }, "Add server"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = form.elements;
    const body = { alias: f.alias.value, kind: f.kind.value, base_url: f.base_url.value, username: f.username.value,
      password: f.password.value, max_concurrency: Number(f.max_concurrency.value) };
    try {
      await api("POST", "/servers", body);
      form.reset();
      showError(form, { message: "" });
      toast(`Added ${body.alias}`);
      drawServers();
    } catch (error) { showError(form, error); }
  });
  const drawServers = async () => {
    const [list, stats] = await Promise.all([api("GET", "/servers"), api("GET", "/queue/stats")]);
    const paused = stats.stats.paused_servers || [];
    servers.replaceChildren(h("table", {}, h("thead", {}, h("tr", {}, ["Server", "Health", "Model", "Jobs", ""].map((t) => h("th", { text: t })))),
      h("tbody", {}, list.servers.map((s) => h("tr", { "data-server": s.alias },
        h("td", {}, h("strong", { text: s.alias }), h("div", { class: "dim small", text: `${label(s.kind)} · ${s.base_url}${s.node ? ` · node ${s.node}` : ""}` })),
        h("td", {}, h("span", { class: `badge ${s.health === "SERVER_HEALTH_UP" ? "ok" : s.health === "SERVER_HEALTH_DOWN" ? "bad" : "warn"}`, text: label(s.health) }),
          s.enabled ? "" : h("span", { class: "badge warn", text: "disabled" }), paused.includes(s.alias) ? h("span", { class: "badge warn", text: "paused" }) : "",
          s.health_reason ? h("div", { class: "dim small", text: s.health_reason }) : ""),
        h("td", { class: "small", text: s.loaded_model }),
        h("td", { text: `${s.running_jobs}/${s.max_concurrency}` }),
        h("td", {}, h("div", { class: "row" },
          h("button", { type: "button", class: "quiet", onclick: () => act(async () => { await api("POST", `/servers/${s.alias}/check`); drawServers(); }) }, "Check"),
          h("button", { type: "button", class: "quiet", onclick: () => act(async () => { await api("POST", `/servers/${s.alias}/enabled`, { enabled: !s.enabled }); drawServers(); }) }, s.enabled ? "Disable" : "Enable"),
          h("button", { type: "button", class: "quiet", onclick: () => act(async () => { await api("POST", paused.includes(s.alias) ? "/queue/resume" : "/queue/pause", { server: s.alias }); drawServers(); }) }, paused.includes(s.alias) ? "Resume" : "Pause"),
          h("button", { type: "button", class: "quiet", onclick: () => editServer(s, drawServers) }, "Edit"),
          h("button", { type: "button", class: "danger", onclick: () => { if (confirm(`Remove ${s.alias}?`)) act(async () => { await api("DELETE", `/servers/${s.alias}`); drawServers(); }, "Removed"); } }, "Remove"))))))));
    if (!list.servers.length) servers.append(h("p", { class: "dim", text: "No servers yet." }));
  };
  const drawNodes = async () => {
    const list = (await api("GET", "/nodes")).nodes;
    nodes.replaceChildren(...(list.length ? list.map((n) => nodeCard(n, drawNodes)) : [h("p", { class: "dim", text: "No node agents have connected (run sq-agent on a GPU host)." })]));
  };
  main.replaceChildren(h("h1", { text: "Servers" }), servers, form, h("h1", { text: "Nodes" }), nodes);
  await act(() => Promise.all([drawServers(), drawNodes()]));
  // Health, loaded models and heartbeats change on their own: keep them current.
  const timer = setInterval(() => { drawServers().catch(() => {}); drawNodes().catch(() => {}); }, 3000);
  state.cleanup.push(() => clearInterval(timer));
}

function editServer(s, redraw) {
  const form = h("form", { novalidate: true },
    h("h2", { text: `Edit ${s.alias}` }),
    field("URL", h("input", { name: "base_url", "data-field": "base_url", value: s.base_url })),
    field("User", h("input", { name: "username", "data-field": "username", value: s.username })),
    field("New password (empty: keep)", h("input", { name: "password", "data-field": "password", type: "password", autocomplete: "new-password" })),
    field("Jobs at once", numberInput("max_concurrency", s.max_concurrency, 1, 64)),
    h("p", { class: "error" }),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Save"), h("button", { type: "button", class: "quiet", onclick: () => dialog.close() }, "Cancel")));
  const dialog = h("dialog", {}, form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = form.elements;
    const body = { base_url: f.base_url.value, username: f.username.value, max_concurrency: Number(f.max_concurrency.value) };
    if (f.password.value) body.password = f.password.value;
    try {
      await api("PATCH", `/servers/${s.alias}`, body);
      dialog.close();
      redraw();
    } catch (error) { showError(form, error); }
  });
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}

function nodeCard(n, redraw) {
  const processes = new Map((n.processes || []).map((p) => [p.model, p]));
  const logs = h("pre", { class: "logs", hidden: true });
  const gpus = (n.info.gpus || []).map((g) => `${g.name || "GPU"} ${bytes(Number(g.memory_total_mb || 0) * 1048576)}`).join(", ");
  return h("div", { class: "panel", "data-node": n.info.name },
    h("div", { class: "row" }, h("h3", { text: n.info.name }),
      h("span", { class: `badge ${n.connected ? "ok" : "bad"}`, text: n.connected ? "online" : "offline" }),
      n.draining ? h("span", { class: "badge warn", text: "draining" }) : "",
      h("button", { type: "button", class: "quiet", onclick: () => act(async () => { await api("POST", `/nodes/${n.info.name}/drain`, { drain: !n.draining }); redraw(); }) }, n.draining ? "Undrain" : "Drain")),
    h("p", { class: "dim small", text: [n.info.hostname, gpus || "no GPU", `${n.info.cpu_count} CPUs`, n.last_heartbeat_at ? `heartbeat ${when(n.last_heartbeat_at)}` : ""].filter(Boolean).join(" · ") }),
    h("div", { class: "table-wrap" }, h("table", {}, h("tbody", {}, (n.info.models || []).map((m) => {
      const p = processes.get(m.key);
      const running = p && ["PROCESS_STATE_READY", "PROCESS_STATE_STARTING"].includes(p.state);
      return h("tr", { "data-model": m.key },
        h("td", {}, h("strong", { text: m.name || m.key }), h("div", { class: "dim small", text: m.description || m.key })),
        h("td", {}, h("span", { class: `badge ${running ? "ok" : ""}`, text: p ? label(p.state) : "stopped" }), p?.reason ? h("div", { class: "dim small", text: p.reason }) : ""),
        h("td", {}, h("div", { class: "row" },
          h("button", { type: "button", class: "quiet", onclick: () => act(async () => { await api("POST", running ? "/processes/stop" : "/processes/start", { node: n.info.name, model: m.key }); redraw(); }) }, running ? "Stop" : "Start"),
          h("button", { type: "button", class: "quiet", onclick: () => act(async () => {
            const answer = await api("GET", "/processes/logs", undefined, { node: n.info.name, model: m.key, lines: 200 });
            logs.hidden = false;
            logs.textContent = answer.lines.join("\n") || "(no output yet)";
          }) }, "Logs"))));
    })))),
    logs);
}

// ---- Downloads ----------------------------------------------------------------------

const downloadDraft = { library: "" };

async function pageDownloads() {
  const list = h("div", { class: "jobs", id: "downloads" });
  const nodes = h("select", { name: "node", "data-field": "node" }, h("option", { value: "" }, "this coordinator's model folders"));
  const form = h("form", { class: "panel", id: "download-form", novalidate: true },
    h("div", { class: "row" },
      field("From", select("source", [["url", "a URL"], ["huggingface", "Hugging Face"], ["civitai", "Civitai"], ["library", "the library (copy to a node)"]], downloadDraft.library ? "library" : "url")),
      field("URL, repo, Civitai version or model", h("input", { name: "where", "data-field": "url", value: downloadDraft.library, placeholder: "https://… · org/repo · 12345 · a model hash" }))),
    h("div", { class: "row" },
      field("Files (Hugging Face, comma separated)", h("input", { name: "files", "data-field": "files" })),
      field("Folder", select("dest", [["", "by type"], ["Stable-diffusion", "checkpoints"], ["Lora", "LoRAs"], ["VAE", "VAEs"], ["embeddings", "embeddings"], ["ESRGAN", "upscalers"], ["ControlNet", "ControlNet"]], "")),
      field("SHA-256 (optional)", h("input", { name: "sha256", "data-field": "sha256" })),
      field("To", nodes)),
    h("p", { class: "error" }),
    h("button", { type: "submit" }, "Download"));
  downloadDraft.library = "";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = form.elements;
    const source = f.source.value;
    const where = f.where.value.trim();
    const body = { dest: f.dest.value, sha256: f.sha256.value.trim(), node: f.node.value };
    if (source === "url") body.url = { url: where };
    else if (source === "huggingface") body.huggingface = { repo: where, files: f.files.value.split(",").map((s) => s.trim()).filter(Boolean) };
    else body[source] = { reference: where };
    try {
      await api("POST", "/downloads", body);
      showError(form, { message: "" });
      toast("Download started");
      draw();
    } catch (error) { showError(form, error); }
  });
  const draw = async () => {
    const answer = await api("GET", "/downloads");
    list.replaceChildren(...(answer.downloads.length ? answer.downloads.map(downloadRow) : [h("p", { class: "dim", text: "No downloads." })]));
  };
  const downloadRow = (d) => {
    const active = ["DOWNLOAD_STATE_QUEUED", "DOWNLOAD_STATE_DOWNLOADING", "DOWNLOAD_STATE_VERIFYING"].includes(d.state);
    const total = Number(d.bytes_total);
    return h("div", { class: "job", "data-download": d.id },
      h("div", { class: "what" }, h("strong", { text: short(d.source, 90) }), h("div", { class: "dim small", text: [d.dest_path, d.node && `on ${d.node}`].filter(Boolean).join(" · ") })),
      h("span", { class: `badge ${d.state === "DOWNLOAD_STATE_COMPLETED" ? "ok" : d.state === "DOWNLOAD_STATE_FAILED" ? "bad" : ""}`, text: label(d.state) }),
      h("progress", { max: total || 1, value: total ? Number(d.bytes_done) : 0 }),
      h("span", { class: "dim small", text: active && total
        ? `${bytes(d.bytes_done)} of ${bytes(total)} · ${bytes(d.bytes_per_second)}/s${d.eta_seconds ? ` · ${Math.ceil(d.eta_seconds)} s left` : ""}`
        : d.error || bytes(d.bytes_done) }),
      h("div", { class: "actions" }, active ? h("button", { type: "button", class: "danger", onclick: () => act(async () => { await api("POST", `/downloads/${d.id}/cancel`); draw(); }, "Cancelled") }, "Cancel") : ""));
  };
  main.replaceChildren(h("h1", { text: "Downloads" }), form, list);
  api("GET", "/nodes").then((answer) => {
    for (const n of answer.nodes) nodes.append(h("option", { value: n.info.name }, `node ${n.info.name}`));
  }).catch(() => {});
  await act(draw);
  const timer = setInterval(() => { draw().catch(() => {}); }, 1000);
  state.cleanup.push(() => clearInterval(timer));
}

// ---- API keys -----------------------------------------------------------------------

async function pageKeys() {
  const list = h("div", { class: "table-wrap", id: "keys" });
  const shown = h("div", { id: "new-secret" });
  const form = h("form", { class: "panel", id: "key-form", novalidate: true },
    h("h2", { text: "Create a key" }),
    h("div", { class: "row" },
      field("Name", h("input", { name: "name", "data-field": "name", placeholder: "krita-laptop" })),
      field("Scope", select("scope", [["KEY_SCOPE_SUBMIT", "submit: queue and see its own jobs"], ["KEY_SCOPE_ADMIN", "admin: everything"], ["KEY_SCOPE_NODE", "node: a node agent"]], "KEY_SCOPE_SUBMIT"))),
    h("p", { class: "error" }),
    h("button", { type: "submit" }, "Create key"), shown);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const made = await api("POST", "/keys", { name: form.elements.name.value, scope: form.elements.scope.value });
      showError(form, { message: "" });
      const secret = h("code", { class: "mono", id: "secret", text: made.secret });
      shown.replaceChildren(h("div", { class: "secret" },
        h("p", { text: "Copy this key now: it is not shown again." }), secret, " ",
        h("button", { type: "button", class: "quiet", onclick: () => navigator.clipboard?.writeText(made.secret).then(() => toast("Copied")) }, "Copy"),
        h("button", { type: "button", class: "quiet", onclick: () => shown.replaceChildren() }, "Done")));
      form.elements.name.value = "";
      draw();
    } catch (error) { showError(form, error); }
  });
  const draw = async () => {
    const answer = await api("GET", "/keys");
    list.replaceChildren(h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Scope", "Created", "Last used", ""].map((t) => h("th", { text: t })))),
      h("tbody", {}, answer.keys.map((k) => h("tr", { "data-key": k.id },
        h("td", {}, h("strong", { text: k.name }), h("div", { class: "dim mono", text: k.id })),
        h("td", { text: label(k.scope) + (k.node ? ` (${k.node})` : "") }),
        h("td", { class: "small", text: when(k.created_at) }),
        h("td", { class: "small", text: when(k.last_used_at) || "never" }),
        h("td", {}, h("button", { type: "button", class: "danger", onclick: () => {
          if (confirm(`Revoke ${k.name}? Programs using it stop working at once.`)) act(async () => { await api("DELETE", `/keys/${k.id}`); draw(); }, "Revoked");
        } }, "Revoke")))))));
    if (!answer.keys.length) list.append(h("p", { class: "dim", text: "No keys yet." }));
  };
  main.replaceChildren(h("h1", { text: "API keys" }), form, list);
  await act(draw);
}

// ---- pages ----------------------------------------------------------------------------

const PAGES = { generate: pageGenerate, queue: pageQueue, gallery: pageGallery, models: pageModels,
  servers: pageServers, downloads: pageDownloads, keys: pageKeys };

async function route() {
  for (const stop of state.cleanup.splice(0)) stop();
  document.querySelectorAll("dialog:not(#login)").forEach((d) => d.remove());
  const name = location.hash.replace(/^#\/?/, "").split("/")[0] || "generate";
  const page = PAGES[name] || pageGenerate;
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === name));
  main.replaceChildren(h("p", { class: "dim", text: "Loading…" }));
  document.body.dataset.page = name;
  try {
    await page();
  } catch (error) {
    main.replaceChildren(h("h1", { text: "Something went wrong" }), h("p", { class: "error", text: error.message }));
  }
}

addEventListener("hashchange", route);
route();
