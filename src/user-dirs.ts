/**
 * Where this package keeps things on the user's disk, resolved in one place: the user's
 * cache folder, `~` expansion, and every cache folder built on them (the ONNX model cache,
 * the Hugging Face Hub cache shared with Python, the default search database).
 *
 * XDG Base Directory spec: `$XDG_CACHE_HOME` when it is set to an absolute path; an
 * unset, empty or relative value is ignored and `~/.cache` is used instead (a relative
 * value would put the cache under whatever the current directory happens to be).
 * The Hub cache follows `huggingface_hub.constants` (HF_HUB_CACHE, HF_HOME, ...), so that
 * files downloaded by Python are reused here and the other way round.
 */
import { homedir } from "node:os";
import { isAbsolute, join, sep } from "node:path";

/** The environment variables read here, as a plain record (e.g. `process.env`). */
export type Env = Readonly<Record<string, string | undefined>>;

/** A non-empty environment variable, or undefined. */
function envValue(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === "" ? undefined : v;
}

/** `~` and `~/rest` (also `~\rest` on Windows) → under `home`; anything else unchanged (`~user` is not expanded). */
export function expandHome(p: string, home: string = homedir()): string {
  if (p === "~" || p.startsWith("~/") || (sep === "\\" && p.startsWith("~\\"))) return home + p.slice(1);
  return p;
}

/** `os.path.expanduser` + `os.path.expandvars`, as `huggingface_hub` applies them to its paths. */
export function expandPath(p: string, env: Env = process.env, home: string = homedir()): string {
  // $NAME and ${NAME}; unknown variables are left as they are (like Python).
  return expandHome(p, home).replace(/\$(\w+)|\$\{([^}]*)\}/g, (whole, a: string | undefined, b: string | undefined) => {
    const v = env[a ?? b ?? ""];
    return v === undefined ? whole : v;
  });
}

/** `$XDG_CACHE_HOME` if it is an absolute path, else `<home>/.cache`. */
export function userCacheHome(env: Env = process.env, home: string = homedir()): string {
  const xdg = env["XDG_CACHE_HOME"];
  return xdg !== undefined && xdg !== "" && isAbsolute(xdg) ? xdg : join(home, ".cache");
}

/** `HF_HOME`, else `<user cache>/huggingface`. */
export function defaultHfHome(env: Env = process.env, home: string = homedir()): string {
  const hfHome = envValue(env, "HF_HOME");
  if (hfHome !== undefined) return expandPath(hfHome, env, home);
  return expandPath(join(userCacheHome(env, home), "huggingface"), env, home);
}

/**
 * The Hub cache directory, resolved like `huggingface_hub.constants.HF_HUB_CACHE`:
 * `HF_HUB_CACHE`, else the legacy `HUGGINGFACE_HUB_CACHE`, else `<HF_HOME>/hub`.
 * Empty variables count as unset.
 */
export function defaultCacheDir(env: Env = process.env, home: string = homedir()): string {
  const explicit = envValue(env, "HF_HUB_CACHE") ?? envValue(env, "HUGGINGFACE_HUB_CACHE");
  if (explicit !== undefined) return expandPath(explicit, env, home);
  return join(defaultHfHome(env, home), "hub");
}

/** Where `huggingface_hub` stores the login token: `HF_TOKEN_PATH`, else `<HF_HOME>/token`. */
export function defaultTokenPath(env: Env = process.env, home: string = homedir()): string {
  const explicit = envValue(env, "HF_TOKEN_PATH");
  if (explicit !== undefined) return expandPath(explicit, env, home);
  return join(defaultHfHome(env, home), "token");
}

/**
 * Where built ONNX models are cached: `$SIGLIP2_CACHE`, else `<user cache>/siglip2/onnx`.
 * `SIGLIP2_CACHE=off` (or `0`) disables it (null).
 */
export function defaultModelCacheDir(env: Env = process.env): string | null {
  const v = env["SIGLIP2_CACHE"];
  if (v === "off" || v === "0") return null;
  return v !== undefined && v.length > 0 ? v : join(userCacheHome(env), "siglip2", "onnx");
}

/** Default search database folder: `$SIGLIP2_DB`, else `<user cache>/siglip2/db`. */
export function defaultDbPath(env: Env = process.env): string {
  const explicit = env["SIGLIP2_DB"];
  if (explicit !== undefined && explicit !== "") return explicit;
  return join(userCacheHome(env), "siglip2", "db");
}
