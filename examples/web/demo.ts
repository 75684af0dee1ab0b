/**
 * The in-browser photo search demo (examples/web/index.html): pick or drop a folder of photos,
 * embed them with siglip2/web in a Web Worker (SigLIP2Worker, so the page stays responsive),
 * search them by text or by one of the photos. Everything runs in this tab: photos are read with
 * the File API and never uploaded.
 *
 * `?model=URL` picks the checkpoint folder (default `./model/`, a folder served beside the page);
 * `?dtype=int8` loads the int8 towers. State is mirrored on `window.demo` for tests.
 *
 * Built by `npm run build:example-web` (tools/build-example-web.ts) into dist/examples/web/.
 */
import { SigLIP2Worker } from "../../src/web/worker-client.js";
import { dot } from "../../src/tasks/similarity.js";

/** One indexed photo. */
interface Photo {
  name: string;
  file: File;
  embedding: Float32Array;
  url: string;
}

/** A ranked result. */
export interface DemoResult {
  name: string;
  cosine: number;
}

/** What the page exposes for tests and the console. */
interface DemoState {
  ready: boolean;
  busy: boolean;
  indexed: number;
  skipped: { name: string; message: string }[];
  results: DemoResult[];
  error: string | null;
}

const IMAGE_EXT = /\.(png|jpe?g|webp|gif|avif|bmp)$/i;
const BATCH = 8;

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
const modelUrl = new URL(params.get("model") ?? "./model/", location.href).href;
const state: DemoState = { ready: false, busy: false, indexed: 0, skipped: [], results: [], error: null };
(window as unknown as { demo: DemoState }).demo = state;

const photos: Photo[] = [];
let model: SigLIP2Worker | null = null;

function status(text: string): void {
  $("status").textContent = text;
}

function progress(done: number, total: number): void {
  const p = $<HTMLProgressElement>("progress");
  p.hidden = done >= total;
  p.max = Math.max(1, total);
  p.value = done;
}

function fail(e: unknown): void {
  state.error = e instanceof Error ? e.message : String(e);
  status(`Error: ${state.error}`);
}

/** Files of a drop: plain files, and folders walked recursively (webkitGetAsEntry). */
async function droppedFiles(items: DataTransferItemList): Promise<File[]> {
  const out: File[] = [];
  const walk = async (entry: FileSystemEntry): Promise<void> => {
    if (entry.isFile) {
      out.push(await new Promise<File>((res, rej) => (entry as FileSystemFileEntry).file(res, rej)));
    } else if (entry.isDirectory) {
      const reader = (entry as FileSystemDirectoryEntry).createReader();
      for (;;) {
        const batch = await new Promise<FileSystemEntry[]>((res, rej) => reader.readEntries(res, rej));
        if (batch.length === 0) break;
        for (const e of batch) await walk(e);
      }
    }
  };
  const entries = [...items].map((it) => it.webkitGetAsEntry()).filter((e): e is FileSystemEntry => e !== null);
  for (const e of entries) await walk(e);
  return out;
}

function photoName(f: File): string {
  return f.webkitRelativePath || f.name;
}

/** Embed `files` (images only) in batches, with progress; a file that cannot be read is listed, not fatal. */
async function addPhotos(files: File[]): Promise<void> {
  if (!model || state.busy) return;
  const known = new Set(photos.map((p) => p.name));
  const todo = files.filter((f) => (f.type.startsWith("image/") || IMAGE_EXT.test(f.name)) && !known.has(photoName(f)));
  todo.sort((a, b) => (photoName(a) < photoName(b) ? -1 : photoName(a) > photoName(b) ? 1 : 0));
  if (todo.length === 0) return status(`No new images among ${files.length} file(s).`);
  state.busy = true;
  const t0 = performance.now();
  try {
    for (let s = 0; s < todo.length; s += BATCH) {
      const chunk = todo.slice(s, s + BATCH);
      let embs: (Float32Array | null)[];
      try {
        embs = await model.embedImages(chunk);
      } catch {
        // one bad file in the batch: embed them one by one to keep the good ones
        embs = [];
        for (const f of chunk) {
          try {
            embs.push((await model.embedImages([f]))[0]!);
          } catch (e) {
            embs.push(null);
            state.skipped.push({ name: photoName(f), message: e instanceof Error ? e.message : String(e) });
          }
        }
      }
      chunk.forEach((f, i) => {
        const embedding = embs[i];
        if (embedding) photos.push({ name: photoName(f), file: f, embedding, url: URL.createObjectURL(f) });
      });
      state.indexed = photos.length;
      progress(s + chunk.length, todo.length);
      status(`Embedded ${s + chunk.length} / ${todo.length} photos…`);
    }
  } finally {
    state.busy = false;
  }
  const secs = (performance.now() - t0) / 1000;
  status(`${photos.length} photos indexed (${todo.length} in ${secs.toFixed(1)} s, ${model.backend}, ${model.threads} thread(s)). Type a query.`);
  $("skipped").textContent = state.skipped.length > 0 ? `Skipped: ${state.skipped.map((x) => `${x.name} (${x.message})`).join("; ")}` : "";
  ($<HTMLInputElement>("query")).disabled = false;
  ($<HTMLButtonElement>("go")).disabled = false;
}

/** Rank every photo by cosine to `query` (normalised embeddings: cosine = dot product). */
function rank(query: Float32Array, exclude?: string): DemoResult[] {
  return photos
    .filter((p) => p.name !== exclude)
    .map((p) => ({ name: p.name, cosine: dot(query, p.embedding) }))
    .sort((a, b) => b.cosine - a.cosine || (a.name < b.name ? -1 : 1));
}

function show(results: DemoResult[], label: string): void {
  state.results = results;
  const list = $("results");
  list.replaceChildren();
  for (const r of results) {
    const p = photos.find((x) => x.name === r.name)!;
    const li = document.createElement("li");
    li.dataset["name"] = r.name;
    li.dataset["cosine"] = String(r.cosine);
    const img = document.createElement("img");
    img.src = p.url;
    img.alt = r.name;
    img.loading = "lazy";
    const cap = document.createElement("div");
    cap.textContent = `${r.cosine.toFixed(4)} · ${r.name}`;
    const more = document.createElement("button");
    more.type = "button";
    more.textContent = "Similar photos";
    more.addEventListener("click", () => void similarTo(p));
    li.append(img, cap, more);
    list.append(li);
  }
  status(`${results.length} results for ${label}`);
}

async function searchText(q: string): Promise<void> {
  if (!model || q.trim() === "" || photos.length === 0) return;
  try {
    const [e] = await model.embedTexts([q]);
    show(rank(e!), JSON.stringify(q));
  } catch (e) {
    fail(e);
  }
}

async function similarTo(p: Photo): Promise<void> {
  show(rank(p.embedding, p.name), `photos like ${p.name}`);
}

/** Image → image search with a photo that is not in the index (dropped on the search box). */
async function searchImage(f: File): Promise<void> {
  if (!model || photos.length === 0) return;
  try {
    const [e] = await model.embedImages([f]);
    show(rank(e!), `photos like ${f.name}`);
  } catch (e) {
    fail(e);
  }
}

function wire(): void {
  for (const id of ["folder", "files"]) {
    $<HTMLInputElement>(id).addEventListener("change", (ev) => {
      const input = ev.target as HTMLInputElement;
      void addPhotos([...(input.files ?? [])]).catch(fail);
    });
  }
  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => {
    ev.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    if (ev.dataTransfer) void droppedFiles(ev.dataTransfer.items).then(addPhotos).catch(fail);
  });
  const query = $<HTMLInputElement>("query");
  query.addEventListener("dragover", (ev) => ev.preventDefault());
  query.addEventListener("drop", (ev) => {
    ev.preventDefault();
    const f = ev.dataTransfer?.files[0];
    if (f) void searchImage(f);
  });
  $("search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    void searchText(query.value);
  });
}

async function main(): Promise<void> {
  $("model-url").textContent = modelUrl;
  wire();
  const dtype = params.get("dtype") === "int8" ? "int8" : "fp32";
  model = await SigLIP2Worker.load(modelUrl, {
    dtype,
    onProgress: (p) => status(`Loading the model: ${p.file} ${p.loaded} / ${p.total} bytes${p.cached ? " (cached)" : ""}`),
  });
  // Build the towers now (one tiny text and nothing else), so the first search is quick.
  await model.embedTexts(["warm-up"]);
  state.ready = true;
  status(`Model ready (${model.backend}, ${model.threads} thread(s), ${model.dim}-d). Pick a folder of photos.`);
}

main().catch(fail);
