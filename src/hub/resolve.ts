/**
 * The `--model` argument: a local model directory (`~` expanded) or a Hugging Face Hub
 * id `org/name`. Telling them apart happens here, before any request; a local directory
 * is returned as is once it has a config.json.
 */
import { existsSync } from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { SiglipError } from "../errors.js";
import { expandHome } from "../user-dirs.js";

/** An id used in messages. */
export const EXAMPLE_ID = "google/siglip2-base-patch16-224";

/** True for a Hub model id `org/name` as huggingface_hub accepts it (ASCII word chars, `-`, `.`). */
export function isHubModelId(s: string): boolean {
  const part = "[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?";
  if (!new RegExp(`^${part}/${part}$`).test(s)) return false;
  return !s.includes("--") && !s.includes("..") && !s.endsWith(".git");
}

/**
 * The local directory `model` names (checked to hold config.json), undefined when `model`
 * is a Hub id instead; throws when it is neither (an empty string, a file, a missing path).
 */
export async function localModelDirectory(model: string): Promise<string | undefined> {
  if (model.trim() === "") {
    throw new SiglipError("hub", `empty model: pass a local directory or a Hub id like ${EXAMPLE_ID}`, {
      subject: model,
    });
  }
  const dir = expandHome(model);
  let isDir: boolean | undefined;
  try {
    isDir = (await fsp.stat(dir)).isDirectory();
  } catch {
    isDir = undefined;
  }
  if (isDir === true) {
    if (!existsSync(path.join(dir, "config.json"))) {
      throw new SiglipError(
        "hub",
        `model directory ${dir} has no config.json; a model directory needs config.json and model.safetensors (or model.safetensors.index.json and its shards)`,
        { subject: dir },
      );
    }
    return dir;
  }
  if (isDir === false) {
    throw new SiglipError(
      "hub",
      `${dir} is a file, not a model directory; pass a directory with config.json and model.safetensors, or a Hub id like ${EXAMPLE_ID}`,
      { subject: dir },
    );
  }
  if (isHubModelId(model)) return undefined;
  const looksLikePath =
    path.isAbsolute(model) || model.startsWith(".") || model.startsWith("~") || model.includes("\\") || model.split("/").length > 2;
  if (looksLikePath) {
    throw new SiglipError("hub", `no such model directory: ${dir}`, { subject: dir });
  }
  throw new SiglipError(
    "hub",
    `"${model}" is neither an existing directory nor a Hugging Face model id like ${EXAMPLE_ID}`,
    { subject: model },
  );
}
