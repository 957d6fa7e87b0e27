// StableQueue for ComfyUI: the page side, written against ComfyUI's `app` and `api`
// objects passed in (stablequeue.js passes the real ones; tests pass stand-ins).

export const EVENT = "stablequeue.queue";
const ACTIONS = ["cancel", "retry", "delete", "front", "back"];

function escapeHtml(text) {
    return String(text ?? "").replace(/[&<>"']/g, (c) => ({
        "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
    })[c]);
}

async function call(api, route, body) {
    const init = body === undefined
        ? { method: "GET" }
        : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
    const response = await api.fetchApi(route, init);
    let data = {};
    try {
        data = await response.json();
    } catch {
        data = {};
    }
    if (!response.ok) {
        throw new Error(data.error || `StableQueue: HTTP ${response.status}`);
    }
    return data;
}

export function toast(app, severity, summary, detail) {
    const toaster = app.extensionManager?.toast;
    if (toaster?.add) {
        toaster.add({ severity, summary, detail, life: severity === "error" ? 8000 : 4000 });
    } else {
        console[severity === "error" ? "error" : "log"](`${summary}: ${detail}`);
    }
}

// Runs one widget callback ("beforeQueued" / "afterQueued") on every widget of the
// nodes, as ComfyUI's own queue does: that is how "control after generate"
// (randomize, increment, decrement, fixed) moves seeds and other values.
function widgetCallbacks(nodes, name) {
    for (const node of nodes) {
        for (const widget of node?.widgets ?? []) {
            widget[name]?.();
        }
    }
}

function subgraphNodes(graph) {
    const nodes = [];
    for (const subgraph of graph?.subgraphs?.values?.() ?? []) {
        nodes.push(...(subgraph.nodes ?? []));
    }
    return nodes;
}

// The queue actions run one after another, as ComfyUI's own Queue runs its clicks:
// a second click while the first is still being sent (hashing a new checkpoint takes
// seconds) waits, so it reads the widgets after the first's afterQueued — seen on a
// real ComfyUI, both jobs otherwise went with the same "randomize" seed.
let sending = Promise.resolve();

// Sends the canvas's workflow `count` times (default 1), each the way ComfyUI's own
// Queue sends one: widgets' beforeQueued, app.graphToPrompt() (the API-format prompt
// `output` and the UI `workflow` written into the images), then afterQueued on the
// nodes that went, so each job gets the next seed and the widgets end up showing
// what ComfyUI's Queue would have left there. Stops at the first refusal.
export function queueWorkflow(app, api, options = {}) {
    const run = sending.then(() => sendWorkflow(app, api, options));
    sending = run.catch(() => {});
    return run;
}

async function sendWorkflow(app, api, options) {
    const { count = 1, ...rest } = options;
    const jobs = [];
    const models = [];
    for (let i = 0; i < count; i++) {
        widgetCallbacks([...(app.graph?.nodes ?? []), ...subgraphNodes(app.graph)], "beforeQueued");
        const { output, workflow } = await app.graphToPrompt();
        const reply = await call(api, "/stablequeue/queue", { prompt: output, workflow, ...rest });
        jobs.push(...reply.jobs);
        models.push(...(i === 0 ? reply.models ?? [] : []));
        const sent = (workflow?.nodes ?? []).map((n) => app.graph?.getNodeById?.(n.id)).filter(Boolean);
        widgetCallbacks([...sent, ...subgraphNodes(app.graph)], "afterQueued");
        app.canvas?.draw?.(true, true);
    }
    return { jobs, models };
}

export async function queueWithToast(app, api, options = {}) {
    try {
        const reply = await queueWorkflow(app, api, options);
        const n = reply.jobs.length;
        toast(app, "success", "StableQueue", `Queued ${n} job${n === 1 ? "" : "s"}: ${reply.jobs.map((id) => id.slice(0, 8)).join(", ")}`);
        return reply;
    } catch (error) {
        toast(app, "error", "StableQueue", error.message);
        return null;
    }
}

// What can be done to a job in each status (the coordinator refuses the rest).
const APPLIES = {
    pending: ["cancel", "front", "back"],
    processing: ["cancel"],
    completed: ["retry", "delete"],
    failed: ["retry", "delete"],
    cancelled: ["retry", "delete"],
};

function jobHtml(api, job) {
    const percent = Math.round((job.progress || 0) * 100);
    const running = job.status === "processing";
    const bar = running
        ? `<div class="sq-bar"><div style="width:${percent}%"></div></div>`
        : "";
    const preview = running && job.has_preview
        ? `<img class="sq-preview" alt="preview" src="${api.apiURL(`/stablequeue/jobs/${job.id}/preview`)}?p=${percent}">`
        : "";
    const thumbs = (job.results || []).map((r) =>
        `<img class="sq-thumb" alt="${escapeHtml(r.filename)}" data-action="open" data-result="${r.id}" src="${api.apiURL(`/stablequeue/results/${r.id}`)}">`
        + `<button data-action="load" data-result="${r.id}" data-name="${escapeHtml(r.filename)}" title="Load this image's workflow onto the canvas">Load</button>`,
    ).join("");
    const buttons = (APPLIES[job.status] ?? []).map((a) =>
        `<button data-action="${a}" data-id="${job.id}">${a}</button>`).join("");
    const where = job.server || job.target || "any server";
    // Why a job waits or failed stands out; a finished job's note ("1 image(s)") does not.
    const kind = job.status === "completed" ? "sq-note" : "sq-reason";
    const reason = job.reason ? `<div class="${kind}">${escapeHtml(job.reason)}</div>` : "";
    return `<li class="sq-job sq-${job.status}" data-job="${job.id}">`
        + `<div><b>${escapeHtml(job.id.slice(0, 8))}</b> ${escapeHtml(job.status)} · ${escapeHtml(job.stage)} · ${escapeHtml(where)}`
        + `${running ? ` · ${percent}%` : ""}</div>`
        + `<div class="sq-summary">${escapeHtml(job.label || job.summary)}</div>`
        + `${reason}${bar}${preview}<div class="sq-results">${thumbs}</div>`
        + `<div class="sq-actions">${buttons}</div></li>`;
}

// The queue controls: drawn once, so the count being typed survives refreshes.
export const CONTROLS = `<div class="sq-controls"><button data-action="queue">Queue in StableQueue</button>`
    + `×<input class="sq-count" type="number" min="1" max="100" value="1" title="how many jobs, each with the widgets' next values (as ComfyUI's batch count)"></div>`;

export function renderJobs(api, listing) {
    const head = listing.error
        ? `<div class="sq-error">${escapeHtml(listing.error)}</div>`
        : `<div class="sq-head">${listing.jobs.filter((j) => j.status === "processing").length} running · `
          + `${listing.jobs.filter((j) => j.status === "pending").length} pending`
          + `${listing.paused ? " · paused" : ""}</div>`;
    const pause = `<div class="sq-controls"><button data-action="${listing.paused ? "resume" : "pause"}">${listing.paused ? "Resume queue" : "Pause queue"}</button></div>`;
    const items = listing.jobs.map((job) => jobHtml(api, job)).join("");
    return `${pause}${head}<ul class="sq-jobs">${items || "<li>No jobs yet.</li>"}</ul>`;
}

// The sidebar tab: lists jobs, refreshes on the coordinator's queue events (pushed
// by the extension over ComfyUI's websocket), and runs the buttons' actions.
export class Sidebar {
    constructor(app, api) {
        this.app = app;
        this.api = api;
        this.element = null;
        this.list = null;
        this.listing = { jobs: [], error: "", paused: false };
        this.onEvent = () => this.refresh();
        api.addEventListener(EVENT, this.onEvent);
    }

    render(element) {
        this.element = element;
        element.addEventListener("click", (event) => this.click(event));
        element.innerHTML = `${CONTROLS}<div class="sq-list"></div>`;
        this.list = element.querySelector?.(".sq-list") ?? element;
        this.list.innerHTML = renderJobs(this.api, this.listing);
        return this.refresh();
    }

    async refresh() {
        try {
            this.listing = await call(this.api, "/stablequeue/jobs");
        } catch (error) {
            this.listing = { jobs: [], error: error.message, paused: false };
        }
        if (this.list) {
            this.list.innerHTML = renderJobs(this.api, this.listing);
        }
        return this.listing;
    }

    async click(event) {
        const target = event.target?.closest?.("[data-action]");
        if (!target) return;
        const { action, id, result, name } = target.dataset;
        try {
            if (action === "queue") {
                const input = this.element?.querySelector?.(".sq-count");
                const count = Math.min(100, Math.max(1, Number.parseInt(input?.value ?? "1", 10) || 1));
                await queueWithToast(this.app, this.api, { count });
            } else if (action === "pause" || action === "resume") {
                await call(this.api, `/stablequeue/${action}`, {});
            } else if (ACTIONS.includes(action)) {
                const reply = await call(this.api, `/stablequeue/jobs/${id}/${action}`, {});
                toast(this.app, "info", "StableQueue", reply.message);
            } else if (action === "open") {
                globalThis.open?.(this.api.apiURL(`/stablequeue/results/${result}`), "_blank");
            } else if (action === "load") {
                const response = await this.api.fetchApi(`/stablequeue/results/${result}`);
                const blob = await response.blob();
                // ComfyUI reads the PNG's workflow chunk, as when an image is dropped.
                await this.app.handleFile(new File([blob], name || "stablequeue.png", { type: blob.type || "image/png" }));
            }
        } catch (error) {
            toast(this.app, "error", "StableQueue", error.message);
        }
        await this.refresh();
    }
}

const STYLE = `
.sq-controls button, .sq-actions button, .sq-results button { margin: 2px; font-size: 11px; }
.sq-jobs { list-style: none; padding: 0; margin: 4px 0; }
.sq-job { border-bottom: 1px solid #8884; padding: 4px 0; font-size: 12px; }
.sq-reason { color: #e0a030; } .sq-error { color: #e05050; padding: 4px 0; }
.sq-bar { height: 6px; background: #8884; border-radius: 3px; overflow: hidden; margin: 3px 0; }
.sq-bar > div { height: 100%; background: #3b82f6; }
.sq-preview { max-width: 100%; max-height: 160px; display: block; }
.sq-fallback { display: inline-flex; align-items: center; gap: 4px; margin-left: 6px; padding: 4px 10px;
  border-radius: 6px; border: 1px solid var(--border-color, #555); background: var(--comfy-input-bg, #333);
  color: var(--input-text, #ddd); cursor: pointer; font-size: 13px; height: 32px; }
.sq-fallback:hover { filter: brightness(1.2); }
.sq-count { width: 3.5em; margin: 2px; font-size: 11px; }
.sq-thumb { width: 56px; height: 56px; object-fit: cover; cursor: zoom-in; vertical-align: middle; }
`;

// ComfyUI settings (Settings → StableQueue); changes go to the extension's settings
// file through POST /stablequeue/settings (the API key stays in that file or SQ_API_KEY).
export function settingsEntries(app, api) {
    const entry = (key, name, type, defaultValue, tooltip) => ({
        id: `StableQueue.${key}`,
        category: ["StableQueue", "Coordinator", name],
        name,
        type,
        defaultValue,
        tooltip,
        onChange: async (value, old) => {
            if (old === undefined || value === old) return; // the initial load
            try {
                await call(api, "/stablequeue/settings", { [key]: type === "number" ? Number(value) : value });
            } catch (error) {
                toast(app, "error", "StableQueue settings", error.message);
            }
        },
    });
    return [
        entry("address", "Coordinator address", "text", "", "host:port of the StableQueue coordinator (an active and standbys: comma-separated)"),
        entry("alias", "This server's alias", "text", "", "how StableQueue names this ComfyUI"),
        entry("url", "This server's URL", "text", "", "how the coordinator reaches this ComfyUI, e.g. http://gpu1:8188"),
        entry("priority", "Default priority", "number", 0, "higher runs first"),
    ];
}

// The one-click button: in the action bar where the frontend has `actionBarButtons`
// (1.3x and later), else beside ComfyUI's own queue controls (the Run button group of
// frontend 1.27, or the legacy menu's Queue button). Checked again as the page
// redraws; a fallback is removed once the action bar's own button is there.
export const BUTTON_CLASS = "sq-queue-button";
const ANCHORS = [".queue-button-group", ".comfyui-queue-button", "#queue-button"];

export function ensureQueueButton(doc, queue) {
    const own = [...doc.querySelectorAll(`.${BUTTON_CLASS}`)];
    const fallback = own.filter((b) => b.classList.contains("sq-fallback"));
    if (own.length > fallback.length) {
        fallback.forEach((b) => b.remove());
        return "action bar";
    }
    if (fallback.length) return "fallback";
    const anchor = ANCHORS.map((sel) => doc.querySelector(sel)).find(Boolean);
    if (!anchor) return "none";
    const button = doc.createElement("button");
    button.type = "button";
    button.className = `${BUTTON_CLASS} sq-fallback`;
    button.title = "Queue in StableQueue";
    button.setAttribute("aria-label", "Queue in StableQueue");
    button.innerHTML = `<i class="pi pi-send"></i><span>StableQueue</span>`;
    button.addEventListener("click", () => queue());
    anchor.insertAdjacentElement("afterend", button);
    return "fallback";
}

// Alt+Enter: free in every frontend from 1.27 on (Ctrl+Enter queues, Ctrl+Shift+Enter
// queues at the front and Ctrl+Alt+Enter interrupts in ComfyUI's own bindings).
export const KEYBINDING = { combo: { key: "Enter", alt: true }, commandId: "StableQueue.Queue" };

export function register(app, api) {
    const sidebar = new Sidebar(app, api);
    const queue = () => queueWithToast(app, api);
    app.registerExtension({
        name: "StableQueue.Queue",
        commands: [
            { id: "StableQueue.Queue", label: "Queue in StableQueue", icon: "pi pi-send", function: queue },
            { id: "StableQueue.QueueHere", label: "Queue in StableQueue on this server", icon: "pi pi-send", function: () => queueWithToast(app, api, { target: "this" }) },
        ],
        menuCommands: [{ path: ["Extensions", "StableQueue"], commands: ["StableQueue.Queue", "StableQueue.QueueHere"] }],
        keybindings: [KEYBINDING],
        actionBarButtons: [{ icon: "pi pi-send", label: "StableQueue", tooltip: "Queue in StableQueue", class: BUTTON_CLASS, onClick: queue }],
        settings: settingsEntries(app, api),
        async setup() {
            if (globalThis.document?.head && !document.getElementById("stablequeue-style")) {
                const style = document.createElement("style");
                style.id = "stablequeue-style";
                style.textContent = STYLE;
                document.head.appendChild(style);
            }
            if (globalThis.document?.body) {
                // First after the action bar has had time to draw its buttons.
                const check = () => ensureQueueButton(document, queue);
                globalThis.setInterval?.(check, 1000);
            }
            const manager = app.extensionManager;
            if (manager?.registerSidebarTab) {
                manager.registerSidebarTab({
                    id: "stablequeue",
                    icon: "pi pi-list",
                    title: "StableQueue",
                    tooltip: "StableQueue jobs",
                    type: "custom",
                    render: (element) => { sidebar.render(element); },
                });
            } else if (globalThis.document?.body) {
                // Older frontends: a floating panel with the same content.
                const panel = document.createElement("div");
                panel.id = "stablequeue-panel";
                panel.style.cssText = "position:fixed;right:8px;bottom:8px;width:320px;max-height:60vh;overflow:auto;z-index:1000;background:var(--comfy-menu-bg,#222);padding:6px;";
                document.body.appendChild(panel);
                sidebar.render(panel);
            }
        },
    });
    return sidebar;
}
