/**
 * The web UI of `siglip2 serve --db`: text → image search (any language), image → image
 * search (drop, paste or choose a file), a result viewer, and a zero-shot page. Plain DOM,
 * no framework; index.html holds the markup, this module the behaviour.
 *
 * Keyboard: Tab reaches every control in reading order; Enter in the search box searches;
 * in the result grid the arrow keys (and Home/End) move between results and Enter opens
 * one; Esc closes the viewer (focus returns to the result).
 */
import { ApiError, apiKey, classify, fileAsDataUrl, indexInfo, search, setApiKey, thumbnailUrl, type Hit } from "./api.js";

/** Results asked for per search. */
const K = 24;
/** Thumbnails fetched at once. */
const THUMB_CONCURRENCY = 6;

function $<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
}

const el = {
  navSearch: $<HTMLAnchorElement>("nav-search"),
  navZero: $<HTMLAnchorElement>("nav-zero-shot"),
  info: $("index-info"),
  keyForm: $<HTMLFormElement>("key-form"),
  key: $<HTMLInputElement>("key"),
  pageSearch: $("page-search"),
  pageZero: $("page-zero-shot"),
  searchForm: $<HTMLFormElement>("search-form"),
  q: $<HTMLInputElement>("q"),
  imageButton: $<HTMLButtonElement>("image-button"),
  imageFile: $<HTMLInputElement>("image-file"),
  drop: $("drop-zone"),
  queryImage: $("query-image"),
  queryThumb: $<HTMLImageElement>("query-thumb"),
  queryName: $("query-name"),
  clearImage: $<HTMLButtonElement>("clear-image"),
  status: $("search-status"),
  results: $<HTMLUListElement>("results"),
  viewer: $<HTMLDialogElement>("viewer"),
  viewerTitle: $("viewer-title"),
  viewerImg: $<HTMLImageElement>("viewer-img"),
  viewerPath: $("viewer-path"),
  viewerCosine: $("viewer-cosine"),
  viewerProb: $("viewer-probability"),
  viewerRank: $("viewer-rank"),
  viewerClose: $<HTMLButtonElement>("viewer-close"),
  zsForm: $<HTMLFormElement>("zs-form"),
  zsLabels: $<HTMLTextAreaElement>("zs-labels"),
  zsTemplate: $<HTMLInputElement>("zs-template"),
  zsButton: $<HTMLButtonElement>("zs-image-button"),
  zsFile: $<HTMLInputElement>("zs-file"),
  zsDrop: $("zs-drop"),
  zsPreview: $<HTMLImageElement>("zs-preview"),
  zsName: $("zs-name"),
  zsStatus: $("zs-status"),
  zsTable: $<HTMLTableElement>("zs-table"),
};

// ---------------------------------------------------------------- shared

/** The last part of a path (POSIX or Windows separators). */
function baseName(path: string): string {
  return path.split(/[\\/]/).filter((s) => s.length > 0).pop() ?? path;
}

export function formatCosine(c: number): string {
  return c.toFixed(4);
}

export function formatProbability(p: number | undefined): string {
  if (p === undefined) return "—";
  return p >= 0.001 ? `${(p * 100).toFixed(1)} %` : p.toExponential(1);
}

function showStatus(target: HTMLElement, text: string, error = false): void {
  target.textContent = text;
  target.classList.toggle("error", error);
}

/** Show a failure; a 401 opens the API-key form. */
function showError(target: HTMLElement, e: unknown): void {
  if ((e as Error).name === "AbortError") return;
  const msg = e instanceof Error ? e.message : String(e);
  if (e instanceof ApiError && e.status === 401) {
    el.keyForm.hidden = false;
    showStatus(target, `This server needs an API key: ${msg}`, true);
    el.key.focus();
    return;
  }
  showStatus(target, msg, true);
}

/** The first file of a drop or paste, if any. */
function firstFile(list: FileList | null | undefined): File | null {
  return list && list.length > 0 ? list[0]! : null;
}

/** Make `zone` accept dropped files (highlighted while something is dragged over it). */
function acceptDrops(zone: HTMLElement, onFile: (f: File) => void): void {
  zone.addEventListener("dragover", (ev) => {
    ev.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    zone.classList.remove("dragging");
    const f = firstFile(ev.dataTransfer?.files);
    if (f) onFile(f);
  });
}

// ---------------------------------------------------------------- pages

function route(): void {
  const zero = location.hash === "#zero-shot";
  el.pageSearch.hidden = zero;
  el.pageZero.hidden = !zero;
  for (const [a, on] of [[el.navSearch, !zero], [el.navZero, zero]] as const) {
    if (on) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = zero ? "Zero-shot · siglip2" : "Search · siglip2";
}

async function showIndexInfo(): Promise<void> {
  try {
    const i = await indexInfo();
    el.info.textContent = `${i.images} image${i.images === 1 ? "" : "s"} · ${i.model}`;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) el.keyForm.hidden = false;
  }
}

el.keyForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  setApiKey(el.key.value);
  el.key.value = "";
  el.keyForm.hidden = true;
  void showIndexInfo();
  (el.pageSearch.hidden ? el.zsLabels : el.q).focus();
});

// ---------------------------------------------------------------- search

/** Object URLs of the shown results and the query image, revoked when replaced. */
let shownUrls: string[] = [];
let queryUrl: string | null = null;
let searchAbort: AbortController | null = null;
/** The image being searched by, while one is (cleared by typing a new text query). */
let queryFile: File | null = null;

function clearResults(): void {
  for (const u of shownUrls) URL.revokeObjectURL(u);
  shownUrls = [];
  el.results.replaceChildren();
}

/** Fetch the grid's thumbnails, a few at a time; a failed one shows its reason as the tile's text. */
async function loadThumbnails(items: Array<{ img: HTMLImageElement; path: string }>, signal: AbortSignal): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length && !signal.aborted) {
      const { img, path } = items[next++]!;
      try {
        const url = await thumbnailUrl(path, 256, signal);
        if (signal.aborted) {
          URL.revokeObjectURL(url);
          return;
        }
        shownUrls.push(url);
        img.src = url;
      } catch (e) {
        if ((e as Error).name === "AbortError") return;
        img.alt = `${baseName(path)} (no thumbnail: ${e instanceof Error ? e.message : String(e)})`;
        img.classList.add("missing");
      }
    }
  };
  await Promise.all(Array.from({ length: THUMB_CONCURRENCY }, worker));
}

function hitButton(h: Hit): HTMLButtonElement {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "hit";
  b.tabIndex = -1;
  b.dataset["path"] = h.path;
  b.dataset["rank"] = String(h.rank);
  b.dataset["cosine"] = String(h.cosine);
  if (h.probability !== undefined) b.dataset["probability"] = String(h.probability);
  const name = baseName(h.path);
  b.setAttribute("aria-label", `${h.rank}. ${name}, cosine ${formatCosine(h.cosine)}${h.probability !== undefined ? `, probability ${formatProbability(h.probability)}` : ""}`);
  const img = document.createElement("img");
  img.alt = "";
  img.className = "thumb";
  const meta = document.createElement("span");
  meta.className = "meta";
  const n = document.createElement("span");
  n.className = "name";
  n.textContent = name;
  n.title = name;
  const c = document.createElement("span");
  c.className = "cosine";
  c.textContent = `cos ${formatCosine(h.cosine)}`;
  meta.append(n, c);
  if (h.probability !== undefined) {
    const p = document.createElement("span");
    p.className = "probability";
    p.textContent = `p ${formatProbability(h.probability)}`;
    meta.append(p);
  }
  b.append(img, meta);
  b.addEventListener("click", () => openViewer(b));
  return b;
}

async function runSearch(query: { text: string } | { image: string }, label: string): Promise<void> {
  searchAbort?.abort();
  const ac = new AbortController();
  searchAbort = ac;
  showStatus(el.status, `Searching ${label}…`);
  el.results.setAttribute("aria-busy", "true");
  const t0 = performance.now();
  try {
    const hits = await search(query, K, ac.signal);
    if (ac.signal.aborted) return;
    clearResults();
    const items: Array<{ img: HTMLImageElement; path: string }> = [];
    for (const h of hits) {
      const li = document.createElement("li");
      const b = hitButton(h);
      li.append(b);
      el.results.append(li);
      items.push({ img: b.querySelector("img")!, path: h.path });
    }
    const first = el.results.querySelector<HTMLButtonElement>(".hit");
    if (first) first.tabIndex = 0;
    const ms = Math.round(performance.now() - t0);
    showStatus(el.status, hits.length === 0 ? `No images in the index match ${label}.` : `${hits.length} result${hits.length === 1 ? "" : "s"} ${label} (${ms} ms)${"image" in query ? " · cosine only: image queries have no probability" : ""}`);
    await loadThumbnails(items, ac.signal);
  } catch (e) {
    showError(el.status, e);
  } finally {
    if (searchAbort === ac) el.results.removeAttribute("aria-busy");
  }
}

function setQueryImage(f: File | null): void {
  if (queryUrl) URL.revokeObjectURL(queryUrl);
  queryUrl = f ? URL.createObjectURL(f) : null;
  queryFile = f;
  el.queryImage.hidden = f === null;
  if (f) {
    el.queryThumb.src = queryUrl!;
    el.queryName.textContent = f.name || "pasted image";
  } else {
    el.queryThumb.removeAttribute("src");
    el.queryName.textContent = "";
  }
}

async function searchByImage(f: File): Promise<void> {
  setQueryImage(f);
  el.q.value = "";
  try {
    const data = await fileAsDataUrl(f);
    await runSearch({ image: data }, `like ${f.name || "the pasted image"}`);
  } catch (e) {
    showError(el.status, e);
  }
}

el.searchForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = el.q.value;
  if (text.trim() === "") {
    if (queryFile) void searchByImage(queryFile);
    else showStatus(el.status, "Type words to search for (any language), or drop, paste or choose an image.", true);
    return;
  }
  setQueryImage(null);
  void runSearch({ text }, `for “${text}”`);
});
el.imageButton.addEventListener("click", () => el.imageFile.click());
el.imageFile.addEventListener("change", () => {
  const f = firstFile(el.imageFile.files);
  if (f) void searchByImage(f);
  el.imageFile.value = "";
});
el.clearImage.addEventListener("click", () => {
  setQueryImage(null);
  el.q.focus();
});
acceptDrops(el.pageSearch, (f) => void searchByImage(f));
acceptDrops(el.zsDrop, (f) => setZeroShotImage(f));
document.addEventListener("paste", (ev) => {
  const f = firstFile(ev.clipboardData?.files);
  if (!f) return; // text: pasted into the focused field as usual
  ev.preventDefault();
  if (el.pageSearch.hidden) setZeroShotImage(f);
  else void searchByImage(f);
});

/** Arrow keys, Home and End move between results (one tab stop for the whole grid). */
el.results.addEventListener("keydown", (ev) => {
  const hits = [...el.results.querySelectorAll<HTMLButtonElement>(".hit")];
  const i = hits.indexOf(document.activeElement as HTMLButtonElement);
  if (i < 0 || hits.length === 0) return;
  const cols = Math.max(1, getComputedStyle(el.results).gridTemplateColumns.split(" ").filter((s) => s.length > 0).length);
  const to: Record<string, number> = { ArrowRight: i + 1, ArrowLeft: i - 1, ArrowDown: i + cols, ArrowUp: i - cols, Home: 0, End: hits.length - 1 };
  const j = to[ev.key];
  if (j === undefined) return;
  ev.preventDefault();
  const k = Math.min(hits.length - 1, Math.max(0, j));
  hits[i]!.tabIndex = -1;
  hits[k]!.tabIndex = 0;
  hits[k]!.focus();
});

// ---------------------------------------------------------------- viewer

let viewerUrl: string | null = null;
let viewerFrom: HTMLButtonElement | null = null;

function openViewer(b: HTMLButtonElement): void {
  const path = b.dataset["path"]!;
  const prob = b.dataset["probability"];
  viewerFrom = b;
  for (const h of el.results.querySelectorAll<HTMLButtonElement>(".hit")) h.tabIndex = h === b ? 0 : -1;
  el.viewerTitle.textContent = baseName(path);
  el.viewerPath.textContent = path;
  el.viewerCosine.textContent = formatCosine(Number(b.dataset["cosine"]));
  el.viewerProb.textContent = formatProbability(prob === undefined ? undefined : Number(prob));
  el.viewerRank.textContent = b.dataset["rank"]!;
  // The grid's thumbnail first, the larger one when it arrives.
  const small = b.querySelector("img")!.getAttribute("src");
  if (small) el.viewerImg.src = small;
  else el.viewerImg.removeAttribute("src");
  el.viewerImg.alt = baseName(path);
  el.viewer.showModal();
  thumbnailUrl(path, 1024)
    .then((url) => {
      if (!el.viewer.open || el.viewerPath.textContent !== path) return URL.revokeObjectURL(url);
      if (viewerUrl) URL.revokeObjectURL(viewerUrl);
      viewerUrl = url;
      el.viewerImg.src = url;
      el.viewerImg.dataset["size"] = "1024";
    })
    .catch((e: unknown) => {
      el.viewerImg.alt = `${baseName(path)} (no preview: ${e instanceof Error ? e.message : String(e)})`;
    });
}

el.viewerClose.addEventListener("click", () => el.viewer.close());
el.viewer.addEventListener("close", () => {
  if (viewerUrl) URL.revokeObjectURL(viewerUrl);
  viewerUrl = null;
  el.viewerImg.removeAttribute("src");
  delete el.viewerImg.dataset["size"];
  viewerFrom?.focus();
});
// A click on the backdrop (outside the dialog's box) closes it too.
el.viewer.addEventListener("click", (ev) => {
  if (ev.target === el.viewer) el.viewer.close();
});

// ---------------------------------------------------------------- zero-shot

let zsImage: File | null = null;
let zsUrl: string | null = null;

function setZeroShotImage(f: File): void {
  zsImage = f;
  if (zsUrl) URL.revokeObjectURL(zsUrl);
  zsUrl = URL.createObjectURL(f);
  el.zsPreview.src = zsUrl;
  el.zsPreview.alt = f.name || "pasted image";
  el.zsPreview.hidden = false;
  el.zsName.textContent = f.name || "pasted image";
}

el.zsButton.addEventListener("click", () => el.zsFile.click());
el.zsFile.addEventListener("change", () => {
  const f = firstFile(el.zsFile.files);
  if (f) setZeroShotImage(f);
  el.zsFile.value = "";
});

function scoreRow(s: { label: string; logit: number; probability: number }): HTMLTableRowElement {
  const tr = document.createElement("tr");
  tr.dataset["label"] = s.label;
  tr.dataset["probability"] = String(s.probability);
  tr.dataset["logit"] = String(s.logit);
  const th = document.createElement("th");
  th.scope = "row";
  th.textContent = s.label;
  const p = document.createElement("td");
  const bar = document.createElement("span");
  bar.className = "bar";
  bar.style.width = `${Math.max(0, Math.min(1, s.probability)) * 100}%`;
  const pv = document.createElement("span");
  pv.textContent = formatProbability(s.probability);
  p.append(bar, pv);
  const l = document.createElement("td");
  l.textContent = s.logit.toFixed(3);
  tr.append(th, p, l);
  return tr;
}

el.zsForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const labels = el.zsLabels.value.split("\n").map((l) => l.trim()).filter((l) => l.length > 0);
  if (labels.length === 0) return showStatus(el.zsStatus, "Give at least one label (one per line).", true);
  if (!zsImage) return showStatus(el.zsStatus, "Choose, drop or paste an image first.", true);
  const image = zsImage;
  const template = el.zsTemplate.value.trim() || null;
  showStatus(el.zsStatus, `Scoring ${labels.length} label${labels.length === 1 ? "" : "s"}…`);
  void (async () => {
    try {
      const scores = await classify(await fileAsDataUrl(image), labels, template);
      el.zsTable.tBodies[0]!.replaceChildren(...scores.map(scoreRow));
      el.zsTable.hidden = false;
      showStatus(el.zsStatus, `${image.name || "The image"}: ${scores.length} labels, most likely “${scores[0]!.label}” (sigmoid probabilities, independent per label)`);
    } catch (e) {
      showError(el.zsStatus, e);
    }
  })();
});

// ---------------------------------------------------------------- start

window.addEventListener("hashchange", route);
route();
if (apiKey() === null) el.keyForm.hidden = true;
void showIndexInfo();
document.documentElement.dataset["ready"] = "true";
