// The ComfyUI extension's page code against stand-ins of ComfyUI's `app` and `api`
// (the shapes of ComfyUI_frontend's ComfyApp / ComfyApi that it uses).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
    EVENT, Sidebar, queueWorkflow, register, renderJobs,
} from "../../extensions/comfyui/web/stablequeue_core.js";

function standIns(replies = {}) {
    const calls = [];
    const listeners = {};
    const toasts = [];
    const extensions = [];
    const tabs = [];
    const handled = [];
    const api = {
        apiURL: (route) => `/api${route}`,
        addEventListener: (type, cb) => { (listeners[type] ||= []).push(cb); },
        dispatch: (type) => Promise.all((listeners[type] || []).map((cb) => cb({ type }))),
        async fetchApi(route, init = {}) {
            calls.push({ route, method: init.method || "GET", body: init.body ? JSON.parse(init.body) : undefined });
            const [status, body] = replies[route] || [200, {}];
            return {
                ok: status < 400,
                status,
                json: async () => body,
                blob: async () => new Blob([new Uint8Array([137, 80, 78, 71])], { type: "image/png" }),
            };
        },
    };
    const app = {
        graphToPrompt: async () => ({
            output: { 4: { class_type: "CheckpointLoaderSimple", inputs: { ckpt_name: "a.safetensors" } } },
            workflow: { last_node_id: 4, nodes: [{ id: 4 }] },
        }),
        registerExtension: (ext) => extensions.push(ext),
        handleFile: async (file) => handled.push(file),
        extensionManager: {
            toast: { add: (t) => toasts.push(t) },
            registerSidebarTab: (tab) => tabs.push(tab),
        },
    };
    return { app, api, calls, listeners, toasts, extensions, tabs, handled };
}

function element() {
    const handlers = [];
    return {
        innerHTML: "",
        addEventListener: (type, cb) => handlers.push(cb),
        click: (dataset) => Promise.all(handlers.map((cb) => cb({ target: { closest: () => ({ dataset }) } }))),
    };
}

const JOBS = {
    connected: true, error: "", paused: false, version: 3,
    jobs: [
        { id: "aaaaaaaa1111", status: "processing", stage: "generating", reason: "", progress: 0.42,
          has_preview: true, server: "gpu-1", target: "", priority: 0, label: "portrait", summary: "", results: [] },
        { id: "bbbbbbbb2222", status: "completed", stage: "done", reason: "", progress: 1,
          has_preview: false, server: "gpu-2", target: "", priority: 0, label: "", summary: "ComfyUI workflow (5 nodes)",
          results: [{ id: "r1", filename: "ComfyUI_00001_.png", mime: "image/png" }] },
        { id: "cccccccc3333", status: "pending", stage: "waiting_for_server", reason: "gpu-1 does not have <lora>.safetensors",
          progress: 0, has_preview: false, server: "", target: "", priority: 0, label: "", summary: "x", results: [] },
    ],
};

test("each queued job is one graphToPrompt between the widgets' before/afterQueued", async () => {
    const s = standIns({ "/stablequeue/queue": [200, { jobs: ["j1"], models: [] }] });
    // A widget records the callbacks; graphToPrompt sends its current value.
    const order = [];
    const widget = { value: 7, beforeQueued: () => order.push(`before ${widget.value}`), afterQueued: () => { widget.value += 1; order.push("after"); } };
    const node = { id: 4, widgets: [widget] };
    s.app.graph = { nodes: [node], getNodeById: (id) => (id === 4 ? node : null) };
    s.app.graphToPrompt = async () => {
        order.push(`prompt ${widget.value}`);
        return { output: { 4: { class_type: "KSampler", inputs: { seed: widget.value } } }, workflow: { nodes: [{ id: 4 }] } };
    };
    const reply = await queueWorkflow(s.app, s.api, { count: 2, target: "this" });
    assert.deepEqual(reply.jobs, ["j1", "j1"]);
    assert.deepEqual(order, ["before 7", "prompt 7", "after", "before 8", "prompt 8", "after"]);
    assert.deepEqual(s.calls.map((c) => [c.route, c.method, c.body.prompt[4].inputs.seed, c.body.target]),
        [["/stablequeue/queue", "POST", 7, "this"], ["/stablequeue/queue", "POST", 8, "this"]]);
    assert.equal(s.calls[0].body.count, undefined); // one job per request, as ComfyUI's queue
});

test("a second queue while the first is being sent waits for it, as ComfyUI's Queue does", async () => {
    // Seen on a real ComfyUI: the button, then Alt+Enter while the first request was
    // still hashing the checkpoint, sent two jobs with the same "randomize" seed.
    const s = standIns();
    const widget = { value: 7, afterQueued: () => { widget.value += 1; } };
    const node = { id: 4, widgets: [widget] };
    s.app.graph = { nodes: [node], getNodeById: () => node };
    s.app.graphToPrompt = async () => ({
        output: { 4: { class_type: "KSampler", inputs: { seed: widget.value } } }, workflow: { nodes: [{ id: 4 }] },
    });
    const seeds = [];
    const answers = [];
    s.api.fetchApi = (route, init) => {
        seeds.push(JSON.parse(init.body).prompt[4].inputs.seed);
        return new Promise((resolve) => answers.push(() => resolve({ ok: true, status: 200, json: async () => ({ jobs: [`j${seeds.length}`] }) })));
    };
    const first = queueWorkflow(s.app, s.api);
    const second = queueWorkflow(s.app, s.api);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(seeds, [7]); // the second has not read the widgets yet
    answers[0]();
    assert.deepEqual((await first).jobs, ["j1"]);
    while (answers.length < 2) await new Promise((resolve) => setTimeout(resolve, 5)); // a loaded machine
    answers[1]();
    assert.deepEqual((await second).jobs, ["j2"]);
    assert.deepEqual(seeds, [7, 8]);
    assert.equal(widget.value, 9);
});

test("a refused job stops the run and leaves the widgets as they were", async () => {
    const s = standIns({ "/stablequeue/queue": [400, { error: "prompt: bad" }] });
    const widget = { value: 1, afterQueued: () => { widget.value += 1; } };
    s.app.graph = { nodes: [{ id: 1, widgets: [widget] }], getNodeById: () => ({ widgets: [widget] }) };
    await assert.rejects(queueWorkflow(s.app, s.api, { count: 3 }), /prompt: bad/);
    assert.equal(s.calls.length, 1);
    assert.equal(widget.value, 1);
});

test("register adds a command, a menu entry, an action-bar button and a sidebar tab", async () => {
    const s = standIns({ "/stablequeue/queue": [200, { jobs: ["abcdef123456"], models: [] }], "/stablequeue/jobs": [200, JOBS] });
    register(s.app, s.api);
    const [ext] = s.extensions;
    assert.equal(ext.commands[0].label, "Queue in StableQueue");
    assert.deepEqual(ext.menuCommands[0].path, ["Extensions", "StableQueue"]);
    assert.equal(ext.actionBarButtons[0].tooltip, "Queue in StableQueue");
    assert.deepEqual(ext.keybindings, [{ combo: { key: "Enter", alt: true }, commandId: "StableQueue.Queue" }]);
    await ext.commands[0].function();
    assert.equal(s.calls.at(-1).route, "/stablequeue/queue");
    assert.match(s.toasts.at(-1).detail, /Queued 1 job: abcdef12/);
    await ext.setup();
    assert.equal(s.tabs[0].id, "stablequeue");
    assert.equal(s.tabs[0].type, "custom");
});

test("changed settings go to the extension's settings file, not on the initial load", async () => {
    const s = standIns({ "/stablequeue/settings": [400, { error: "address: expected host:port" }] });
    register(s.app, s.api);
    const address = s.extensions[0].settings.find((e) => e.id === "StableQueue.address");
    await address.onChange("gpu-box:50051", undefined);
    assert.equal(s.calls.length, 0);
    await address.onChange("gpu box", "gpu-box:50051");
    assert.deepEqual(s.calls.at(-1), { route: "/stablequeue/settings", method: "POST", body: { address: "gpu box" } });
    assert.match(s.toasts.at(-1).detail, /address: expected host:port/);
    const priority = s.extensions[0].settings.find((e) => e.id === "StableQueue.priority");
    await priority.onChange("5", 0);
    assert.deepEqual(s.calls.at(-1).body, { priority: 5 });
});

test("a refused queue shows the server's message as an error toast", async () => {
    const s = standIns({ "/stablequeue/queue": [502, { error: "StableQueue coordinator at 127.0.0.1:9 is not reachable" }] });
    register(s.app, s.api);
    await s.extensions[0].commands[0].function();
    assert.equal(s.toasts.at(-1).severity, "error");
    assert.match(s.toasts.at(-1).detail, /127.0.0.1:9 is not reachable/);
});

test("the sidebar renders jobs: progress, preview, reason, thumbnails, actions", () => {
    const s = standIns();
    const html = renderJobs(s.api, JOBS);
    assert.match(html, /1 running · 1 pending/);
    assert.match(html, /width:42%/);
    assert.match(html, /src="\/api\/stablequeue\/jobs\/aaaaaaaa1111\/preview\?p=42"/);
    assert.match(html, /data-action="load" data-result="r1"/);
    assert.match(html, /src="\/api\/stablequeue\/results\/r1"/);
    assert.match(html, /does not have &lt;lora&gt;\.safetensors/); // escaped
    assert.match(html, /data-action="cancel" data-id="cccccccc3333"/);
    assert.match(html, /data-action="front" data-id="cccccccc3333"/);
    assert.doesNotMatch(html, /data-action="delete" data-id="cccccccc3333"/); // cancel first
    // Only what applies: a finished job offers retry and delete, never cancel.
    assert.doesNotMatch(html, /data-action="cancel" data-id="bbbbbbbb2222"/);
    assert.match(html, /data-action="retry" data-id="bbbbbbbb2222"/);
    assert.doesNotMatch(html, /data-action="(retry|delete|front)" data-id="aaaaaaaa1111"/);
    assert.match(renderJobs(s.api, { jobs: [], error: "not reachable", paused: false }), /sq-error">not reachable/);
});

test("the sidebar refreshes on queue events and runs its buttons", async () => {
    const s = standIns({
        "/stablequeue/jobs": [200, JOBS],
        "/stablequeue/jobs/cccccccc3333/cancel": [200, { message: "Cancel: cccccccc done." }],
    });
    const sidebar = new Sidebar(s.app, s.api);
    const el = element();
    await sidebar.render(el);
    assert.match(el.innerHTML, /aaaaaaaa/);
    const before = s.calls.filter((c) => c.route === "/stablequeue/jobs").length;
    await s.api.dispatch(EVENT);
    assert.equal(s.calls.filter((c) => c.route === "/stablequeue/jobs").length, before + 1);

    await el.click({ action: "cancel", id: "cccccccc3333" });
    assert.ok(s.calls.some((c) => c.route === "/stablequeue/jobs/cccccccc3333/cancel" && c.method === "POST"));
    assert.equal(s.toasts.at(-1).detail, "Cancel: cccccccc done.");

    await el.click({ action: "load", result: "r1", name: "ComfyUI_00001_.png" });
    assert.equal(s.handled.length, 1);
    assert.equal(s.handled[0].name, "ComfyUI_00001_.png");
    assert.equal(s.handled[0].type, "image/png");
});
