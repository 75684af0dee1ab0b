/** The checkpoint fingerprint lives in the weights layer now; re-exported here for the index. */
export { checkpointFingerprint } from "../weights/fingerprint.js";
