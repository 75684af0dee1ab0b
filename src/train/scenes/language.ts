/**
 * Captions, referring expressions and zero-shot labels for scenes in en, de, es, fr, zh.
 *
 * Noun phrases agree in gender:
 * - de: Kreis, Stern masculine; Quadrat, Dreieck neuter. Indefinite "ein roter Kreis" / "ein
 *   grünes Quadrat" (strong adjective endings -er / -es), definite "der rote Kreis" / "das grüne
 *   Quadrat" (weak -e), class names without article "roter Kreis" / "grünes Quadrat".
 * - es: círculo, cuadrado, triángulo masculine; estrella feminine ("una estrella amarilla",
 *   "la estrella roja"; verde and azul do not inflect).
 * - fr: cercle, carré, triangle masculine; étoile feminine ("une étoile verte", "une étoile
 *   bleue"; rouge and jaune do not inflect); definite "le cercle", elided "l'étoile".
 * - zh: "红色的圆", "绿色的正方形", "蓝色的三角形", "黄色的星星" (no article; the definite form is the same).
 * - en: "a red circle" / "the red circle".
 *
 * Captions list the objects (in drawing order) with the indefinite form, joined with the
 * language's "and": "x", "x and y", "x, y and z" (en and / de und / es y / fr et; zh "x和y",
 * "x、y和z"). Referring expressions are the definite forms; they are unique within an image
 * because (colour, shape) pairs are distinct.
 *
 * Zero-shot: class names per language (colour × shape, 16 classes) and one template per
 * language whose "{}" takes the indefinite phrase, keeping the noun phrase in the nominative:
 * en "a photo of {}", de "Auf dem Bild ist {}.", es "una foto de {}", fr "une photo d'{}"
 * (every French phrase starts with un/une), zh "图片里有{}".
 */
import { SCENE_COLOURS, SCENE_SHAPES, type SceneColour, type SceneShape } from "./spec.js";

export const SCENE_LANGUAGES = ["en", "de", "es", "fr", "zh"] as const;
export type SceneLanguage = (typeof SCENE_LANGUAGES)[number];

/** Zero-shot templates; "{}" is replaced by the indefinite noun phrase. */
export const ZERO_SHOT_TEMPLATES: Record<SceneLanguage, string> = {
  en: "a photo of {}",
  de: "Auf dem Bild ist {}.",
  es: "una foto de {}",
  fr: "une photo d'{}",
  zh: "图片里有{}",
};

type Gender = "m" | "f" | "n";
const DE_NOUN: Record<SceneShape, [string, Gender]> = { circle: ["Kreis", "m"], square: ["Quadrat", "n"], triangle: ["Dreieck", "n"], star: ["Stern", "m"] };
const DE_ADJ: Record<SceneColour, string> = { red: "rot", green: "grün", blue: "blau", yellow: "gelb" };
const ES_NOUN: Record<SceneShape, [string, Gender]> = { circle: ["círculo", "m"], square: ["cuadrado", "m"], triangle: ["triángulo", "m"], star: ["estrella", "f"] };
const ES_ADJ: Record<SceneColour, [string, string]> = { red: ["rojo", "roja"], green: ["verde", "verde"], blue: ["azul", "azul"], yellow: ["amarillo", "amarilla"] };
const FR_NOUN: Record<SceneShape, [string, Gender]> = { circle: ["cercle", "m"], square: ["carré", "m"], triangle: ["triangle", "m"], star: ["étoile", "f"] };
const FR_ADJ: Record<SceneColour, [string, string]> = { red: ["rouge", "rouge"], green: ["vert", "verte"], blue: ["bleu", "bleue"], yellow: ["jaune", "jaune"] };
const ZH_NOUN: Record<SceneShape, string> = { circle: "圆", square: "正方形", triangle: "三角形", star: "星星" };
const ZH_ADJ: Record<SceneColour, string> = { red: "红色", green: "绿色", blue: "蓝色", yellow: "黄色" };

type Form = "indefinite" | "definite" | "bare";

function phrase(colour: SceneColour, shape: SceneShape, lang: SceneLanguage, form: Form): string {
  switch (lang) {
    case "en": {
      const np = `${colour} ${shape}`;
      return form === "bare" ? np : `${form === "definite" ? "the" : "a"} ${np}`;
    }
    case "de": {
      const [noun, g] = DE_NOUN[shape];
      const adj = DE_ADJ[colour];
      if (form === "definite") return `${g === "m" ? "der" : "das"} ${adj}e ${noun}`;
      const strong = `${adj}${g === "m" ? "er" : "es"} ${noun}`;
      return form === "bare" ? strong : `ein ${strong}`;
    }
    case "es": {
      const [noun, g] = ES_NOUN[shape];
      const np = `${noun} ${ES_ADJ[colour][g === "f" ? 1 : 0]}`;
      if (form === "bare") return np;
      const art = form === "definite" ? (g === "f" ? "la" : "el") : g === "f" ? "una" : "un";
      return `${art} ${np}`;
    }
    case "fr": {
      const [noun, g] = FR_NOUN[shape];
      const np = `${noun} ${FR_ADJ[colour][g === "f" ? 1 : 0]}`;
      if (form === "bare") return np;
      if (form === "indefinite") return `${g === "f" ? "une" : "un"} ${np}`;
      if (/^[aeiouéèêh]/i.test(noun)) return `l'${np}`;
      return `${g === "f" ? "la" : "le"} ${np}`;
    }
    case "zh":
      return `${ZH_ADJ[colour]}的${ZH_NOUN[shape]}`;
  }
}

/** "a red circle", "ein roter Kreis", "un círculo rojo", "un cercle rouge", "红色的圆". */
export function indefinitePhrase(colour: SceneColour, shape: SceneShape, lang: SceneLanguage): string {
  return phrase(colour, shape, lang, "indefinite");
}

/** Referring expression: "the red circle", "der rote Kreis", "el círculo rojo", "le cercle rouge", "红色的圆". */
export function definitePhrase(colour: SceneColour, shape: SceneShape, lang: SceneLanguage): string {
  return phrase(colour, shape, lang, "definite");
}

/** Zero-shot class name: "red circle", "roter Kreis", "círculo rojo", "cercle rouge", "红色的圆". */
export function className(colour: SceneColour, shape: SceneShape, lang: SceneLanguage): string {
  return phrase(colour, shape, lang, "bare");
}

const AND: Record<SceneLanguage, string> = { en: " and ", de: " und ", es: " y ", fr: " et ", zh: "和" };
const LIST_SEP: Record<SceneLanguage, string> = { en: ", ", de: ", ", es: ", ", fr: ", ", zh: "、" };

/** Join phrases: "x", "x and y", "x, y and z" in the language. */
export function joinPhrases(items: readonly string[], lang: SceneLanguage): string {
  if (items.length <= 1) return items[0] ?? "";
  return items.slice(0, -1).join(LIST_SEP[lang]) + AND[lang] + items[items.length - 1]!;
}

/** The caption of a list of objects: indefinite phrases joined with "and". */
export function sceneCaption(objects: readonly { colour: SceneColour; shape: SceneShape }[], lang: SceneLanguage): string {
  return joinPhrases(objects.map((o) => indefinitePhrase(o.colour, o.shape, lang)), lang);
}

/** A zero-shot prompt: the template filled with the indefinite phrase. */
export function zeroShotPrompt(colour: SceneColour, shape: SceneShape, lang: SceneLanguage): string {
  return ZERO_SHOT_TEMPLATES[lang].replace("{}", indefinitePhrase(colour, shape, lang));
}

/** labels.json: the 16 classes (colour-major) and, per language, names, template and prompts. */
export interface SceneLabels {
  classes: { id: string; colour: SceneColour; shape: SceneShape }[];
  languages: Record<string, { template: string; names: string[]; prompts: string[] }>;
}

export function sceneLabels(langs: readonly SceneLanguage[] = SCENE_LANGUAGES): SceneLabels {
  const classes = SCENE_COLOURS.flatMap((colour) => SCENE_SHAPES.map((shape) => ({ id: `${colour}_${shape}`, colour, shape })));
  const languages: SceneLabels["languages"] = {};
  for (const lang of langs) {
    languages[lang] = {
      template: ZERO_SHOT_TEMPLATES[lang],
      names: classes.map((c) => className(c.colour, c.shape, lang)),
      prompts: classes.map((c) => zeroShotPrompt(c.colour, c.shape, lang)),
    };
  }
  return { classes, languages };
}
