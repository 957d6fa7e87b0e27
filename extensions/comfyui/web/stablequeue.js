// StableQueue for ComfyUI: loaded by ComfyUI's frontend (WEB_DIRECTORY).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { register } from "./stablequeue_core.js";

register(app, api);
