/**
 * The user's cache folder, resolved once for every cache this package keeps (the ONNX
 * model cache, the Hugging Face Hub cache, the default search database).
 *
 * XDG Base Directory spec: `$XDG_CACHE_HOME` when it is set to an absolute path; an
 * unset, empty or relative value is ignored and `~/.cache` is used instead (a relative
 * value would put the cache under whatever the current directory happens to be).
 */
import { homedir } from "node:os";
import { isAbsolute, join } from "node:path";

/** `$XDG_CACHE_HOME` if it is an absolute path, else `<home>/.cache`. */
export function userCacheHome(env: Readonly<Record<string, string | undefined>> = process.env, home: string = homedir()): string {
  const xdg = env["XDG_CACHE_HOME"];
  return xdg !== undefined && xdg !== "" && isAbsolute(xdg) ? xdg : join(home, ".cache");
}
